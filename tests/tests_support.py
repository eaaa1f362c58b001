"""Constants and helpers shared by tests (conftest.py holds the fixtures)."""

from __future__ import annotations

import copy
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from harness.cli import main
from harness.training.checkpoints import PER_IMAGE_NAME, save_per_image

# A model and dataset small enough for a 1-epoch run in a few seconds.
TINY_ARGS = [
    "--arch-param", "width=4",
    "--arch-param", "depth=2",
    "--data-param", "n=24",
    "--data-param", "test_n=3",
    "--set", "train.batch_size=8",
    "--set", "train.eval_batch_size=16",
    "--epochs", "1",
    "--no-progress",
]  # fmt: skip

TINY_CONFIG = {
    "arch": {"name": "unet", "params": {"width": 4, "depth": 2}},
    "data": {"params": {"n": 24, "test_n": 3}},
    "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16},
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`harness ARGV...` in this process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys, store_path, *argv, match):
    """`harness ARGV... --store STORE` refuses in one line naming `match`, exit 2, and writes no store."""
    code, out, err = run_cli(capsys, *argv, "--store", str(store_path))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert match in lines[0]
    assert not store_path.exists() and not store_path.parent.exists()


def tiny(**train):
    """TINY_CONFIG with some train settings changed."""
    config = copy.deepcopy(TINY_CONFIG)
    config["train"].update(train)
    return config


def query(store_path: Path, sql: str, *params) -> list[tuple]:
    """Rows from the store as another process sees them; [] while it does not exist yet."""
    if not store_path.exists():
        return []
    try:
        with closing(sqlite3.connect(store_path, timeout=10)) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.Error:  # created but not yet initialised
        return []


def integrity(store_path: Path) -> str:
    return query(store_path, "PRAGMA integrity_check")[0][0]


# The compare tests (the bootstrap and the command) build stores of runs with per-image matrices.
K = 5
CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]


def per_image(accuracy: float, n: int = 120, seed: int = 0) -> np.ndarray:
    """(n, K, K) confusion matrices: each foreground pixel right with probability `accuracy`, else spread."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, K, K), dtype=np.int64)
    for i in range(n):
        for truth in range(1, K):
            pixels = int(rng.integers(0, 400))
            wrong = [c for c in range(1, K) if c != truth]
            shares = [accuracy] + [(1 - accuracy) / len(wrong)] * len(wrong)
            counts = rng.multinomial(pixels, shares)
            out[i, truth, truth] = counts[0]
            out[i, truth, wrong] = counts[1:]
    return out


def add_run(
    store,
    run_id: str,
    confusion,
    *,
    seed=0,
    config_hash="cfg-a",
    indices=None,
    status="finished",
    config=None,
    fold=None,
    miou=0.5,
) -> None:
    """A recorded run with its per-image validation file (as training writes it); `confusion` None: none."""
    store.start_run(
        run_id=run_id,
        config=config or {"data": {"ignore_index": 0}},
        config_hash=config_hash,
        seed=seed,
        arch="unet",
        loss="ce",
        balancer="none",
        dataset_id="synthetic",
        device="cpu",
        torch_version=torch.__version__,
        params=1,
        gflops=None,
        class_names=CLASSES,
        fold=fold,
    )
    store.finish_run(run_id, status=status, metrics={"miou_an2dl": miou, "miou_fg": miou})
    if confusion is not None:
        folder = store.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        rows = torch.arange(len(confusion)) * 3 if indices is None else torch.as_tensor(indices)
        save_per_image(folder / PER_IMAGE_NAME, rows, torch.as_tensor(confusion))


def start_fields(run_id: str, **changes) -> dict:
    """`RunStore.start_run` arguments for a bare run record (its config hash is its id unless changed)."""
    fields = dict(
        run_id=run_id,
        config={},
        config_hash=run_id,
        seed=0,
        arch="unet",
        loss="ce",
        balancer="none",
        dataset_id="d",
        device="cpu",
        torch_version="2",
        params=1,
        gflops=None,
        class_names=["a"],
    )
    return {**fields, **changes}


def assert_refused(code: int, err: str, match: str) -> None:
    """Exit code 2 and one `harness: error:` line containing `match`."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert match in lines[0], lines[0]


def digest(path: Path) -> str:
    """sha256 of a file's bytes: equal before and after means the file was not touched."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
