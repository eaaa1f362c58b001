"""Decompression bombs: an npz whose members would inflate past `HARNESS_MAX_DATA_BYTES`, or inflate more
than a hundredfold to a large size, is refused from its zip directory alone, before anything is inflated:
one line, exit 2, under a memory limit that inflating it would break."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.data.dataset import MAX_DATA_BYTES_ENV, load_npz
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parents[2]
H, W = 64, 128
BOMB_IMAGES = 19_200  # 315 MB of zeros once inflated, about 1.4 MB on disk


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A valid-looking npz: a (19200, 2, 64, 128) uint8 training_set of zeros, deflated."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    header = {"descr": "|u1", "fortran_order": False, "shape": (BOMB_IMAGES, 2, H, W)}
    chunk = bytes(2**20)
    remaining = BOMB_IMAGES * 2 * H * W
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("training_set.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        while remaining:
            member.write(chunk[: min(len(chunk), remaining)])
            remaining -= min(len(chunk), remaining)
    return path


def test_a_bomb_is_refused_by_its_ratio_before_inflating(bomb):
    assert bomb.stat().st_size < 3_000_000
    with pytest.raises(HarnessError, match="a decompression bomb; refused before inflating") as caught:
        load_npz(bomb)
    assert str(caught.value).startswith(f"{bomb}: member 'training_set.npy' would inflate")


def test_a_file_beyond_the_size_limit_is_refused_and_the_limit_is_documented(tmp_path, monkeypatch):
    path = tmp_path / "small.npz"
    np.savez(path, training_set=np.zeros((4, 2, H, W), np.uint8))
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, "10000")
    with pytest.raises(HarnessError, match=f"above the limit of 10,000 \\(raise {MAX_DATA_BYTES_ENV}"):
        load_npz(path)
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, "lots")
    with pytest.raises(HarnessError, match=f"{MAX_DATA_BYTES_ENV} must be a whole number of bytes"):
        load_npz(path)
    monkeypatch.delenv(MAX_DATA_BYTES_ENV)
    assert len(load_npz(path)) == 4
    assert MAX_DATA_BYTES_ENV in (ROOT / "README.md").read_text()


def _memory_limit() -> None:
    # 1.1 GB of address space: a tiny run (torch, every plugin) fits; the bomb, once inflated and copied
    # into images and masks, does not (without the check it ends in MemoryError).
    resource.setrlimit(resource.RLIMIT_AS, (1_100 * 2**20, 1_100 * 2**20))


def _harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_memory_limit,
    )


@pytest.mark.parametrize(
    "command", [["data", "inspect"], ["run", "--epochs", "1", "--no-progress", "--data"]]
)
def test_under_a_memory_limit_a_bomb_is_one_line_and_exit_2(bomb, command, tmp_path):
    store = tmp_path / "runs" / "harness.sqlite"
    done = _harness(*command, str(bomb), "--store", str(store), env={MAX_DATA_BYTES_ENV: "100000000"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "would inflate to 314,572,928 bytes, above the limit of 100,000,000" in lines[0]
    )
    assert not store.parent.exists()


def test_under_the_same_limit_a_genuine_file_trains(tmp_path):
    path = tmp_path / "genuine.npz"
    rng = np.random.default_rng(0)
    data = np.stack([rng.integers(0, 256, (24, H, W)), rng.integers(0, 5, (24, H, W))], axis=1)
    np.savez_compressed(path, training_set=data.astype(np.uint8))
    store = tmp_path / "runs" / "harness.sqlite"
    argv = ["run", "--data", str(path), "--arch-param", "width=4", "--epochs", "1", "--no-progress"]
    done = _harness(*argv, "--store", str(store), env={MAX_DATA_BYTES_ENV: "100000000"})
    assert done.returncode == 0, done.stderr
