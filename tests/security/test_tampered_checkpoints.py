"""Checkpoints that load safely (weights_only) but hold the wrong contents, and planted per-image files: each
is refused in one line naming the file before anything is written, and the stored record never changes.

`report` notes a bad file on its page instead of failing, as it does for unreadable checkpoints.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.training.checkpoints import CHECKPOINT_NAME, LAST_CHECKPOINT_NAME, PER_IMAGE_NAME
from tests_support import TINY_ARGS, assert_refused, digest, query, run_cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A store with one finished 1-epoch run, its best.pt, last.pt and per-image file."""
    store = tmp_path_factory.mktemp("finished") / "runs" / "harness.sqlite"
    assert main(["run", *TINY_ARGS, "--store", str(store)]) == 0
    ((run_id,),) = query(store, "SELECT run_id FROM runs")
    return store, run_id


@pytest.fixture
def copy(finished, tmp_path) -> tuple[Path, str]:
    """A private copy of the finished store to tamper with."""
    store, run_id = finished
    shutil.copytree(store.parent, tmp_path / "runs", ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return tmp_path / "runs" / "harness.sqlite", run_id


def _record(store: Path) -> tuple[list, list]:
    """The run rows and epoch rows: what a refused command must leave exactly as they were."""
    return query(store, "SELECT * FROM runs"), query(store, "SELECT * FROM epochs")


def _tamper(path: Path, change: Callable[[dict], None]) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def _first(state: dict) -> str:
    return next(key for key, value in state.items() if value.is_floating_point())


def _set(key: str, value) -> Callable[[dict], None]:
    return lambda checkpoint: checkpoint.__setitem__(key, value)


def _weights(change: Callable[[dict], None]) -> Callable[[dict], None]:
    return lambda checkpoint: change(checkpoint["state_dict"])


def _nan_weight(state: dict) -> None:
    state[_first(state)].view(-1)[0] = math.nan


def _wrong_shape(state: dict) -> None:
    key = _first(state)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)


# id -> (what is done to best.pt, what the line says)
BEST = {
    "empty state_dict": (_set("state_dict", {}), "do not fit the model"),
    "an extra weight": (_weights(lambda s: s.__setitem__("extra.weight", torch.zeros(1))), "unexpected"),
    "a wrong shape": (_weights(_wrong_shape), "the model needs"),
    "a weight that is not a tensor": (_weights(lambda s: s.__setitem__(_first(s), 5)), "not a tensor"),
    "a NaN weight": (_weights(_nan_weight), "holds NaN or infinite values"),
    "no normalisation": (lambda c: c.pop("normalisation"), "normalisation must be [mean, std]"),
    "normalisation a string": (_set("normalisation", "abc"), "normalisation must be"),
    "normalisation NaN": (_set("normalisation", [math.nan, 1.0]), "normalisation must be"),
    "normalisation std 0": (_set("normalisation", [100.0, 0.0]), "normalisation must be"),
}


@pytest.mark.parametrize("case", sorted(BEST))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_tampered_best_checkpoint_is_refused_naming_the_file(case, command, copy, capsys, tmp_path):
    store, run_id = copy
    best = store.parent / run_id / CHECKPOINT_NAME
    _tamper(best, BEST[case][0])
    before, csv = _record(store), tmp_path / "out.csv"
    extra = ["--out", str(csv)] if command == "predict" else []
    code, out, err = run_cli(capsys, command, run_id, "--data", "synthetic", *extra, "--store", str(store))
    assert_refused(code, err, BEST[case][1])
    assert str(best) in err and out == ""
    assert _record(store) == before
    assert not csv.exists() and not list(tmp_path.glob("out.csv*"))


def test_the_report_notes_a_tampered_best_checkpoint_on_its_page(copy, capsys, tmp_path):
    store, run_id = copy
    _tamper(store.parent / run_id / CHECKPOINT_NAME, _weights(_nan_weight))
    code, _, err = run_cli(capsys, "report", "--out", str(tmp_path / "report"), "--store", str(store))
    assert code == 0, err
    assert "holds NaN or infinite values" in (tmp_path / "report" / "index.html").read_text()


# --- last.pt under --resume -----------------------------------------------------------------------------


def _loop(change: Callable[[dict], None]) -> Callable[[dict], None]:
    return lambda checkpoint: change(checkpoint["loop"])


def _bad_moments(checkpoint: dict) -> None:
    state = checkpoint["optimizer"]["state"]
    first = next(iter(state))
    state[first]["exp_avg"] = torch.zeros(3, 3, 3, 3, 3)


LAST = {
    "epoch -5": (lambda c: c.update(epoch=-5, loop={**c["loop"], "epochs": -5}), "epoch must be a whole"),
    "epoch true": (lambda c: c.update(epoch=True), "epoch must be a whole"),
    "epoch beyond the history": (
        lambda c: c.update(epoch=50, loop={**c["loop"], "epochs": 50}),
        "its epoch 50 is beyond the epochs the store has",
    ),
    "loop epochs disagree": (_loop(lambda loop: loop.update(epochs=7)), "loop state"),
    "loop with an unknown key": (_loop(lambda loop: loop.update(history=[1])), "loop state"),
    "negative images seen": (_loop(lambda loop: loop.update(images_seen=-1)), "loop counters"),
    "schedule a string": (_set("schedule", "x"), "schedule state"),
    "optimizer empty": (_set("optimizer", {}), "optimizer state"),
    "optimizer moments of another shape": (_bad_moments, "cannot continue from"),
    "rng garbage": (_set("rng", {"torch": torch.zeros(3, dtype=torch.uint8)}), "cannot continue from"),
    "rng not a tensor": (_set("rng", {"torch": [1, 2]}), "RNG state"),
    "wrong weights": (_weights(_wrong_shape), "the model needs"),
    "NaN weights": (_weights(_nan_weight), "holds NaN or infinite values"),
    "NaN normalisation": (_set("normalisation", [math.nan, 1.0]), "normalisation must be"),
}


@pytest.mark.parametrize("case", sorted(LAST))
def test_a_tampered_last_checkpoint_is_refused_and_the_run_record_is_unchanged(case, copy, capsys):
    store, run_id = copy
    last = store.parent / run_id / LAST_CHECKPOINT_NAME
    _tamper(last, LAST[case][0])
    before, files = _record(store), digest(last)
    code, _, err = run_cli(capsys, "run", "--resume", run_id, "--epochs", "3", "--store", str(store))
    assert_refused(code, err, LAST[case][1])
    assert str(last) in err or f"run {run_id}" in err
    assert _record(store) == before  # status, config hash, epochs: all as they were
    assert digest(last) == files


# --- planted per-image results --------------------------------------------------------------------------


PER_IMAGE = {
    "negative indices": (lambda i, c: (i - 100, c), "non-negative integers"),
    "repeated indices": (lambda i, c: (np.zeros_like(i), c), "repeat a validation image"),
    "a 3000x3000 confusion": (
        lambda i, c: (i[:1], np.zeros((1, 3000, 3000), np.int32)),
        "3000x3000 for 5 classes",
    ),
    "NaN counts": (lambda i, c: (i, np.where(c > 0, np.nan, 0.0)), "NaN, infinite or non-numeric"),
    "negative counts": (lambda i, c: (i, -c - 1), "negative or fractional"),
}


@pytest.mark.parametrize("case", sorted(PER_IMAGE))
def test_the_report_notes_a_planted_per_image_file_on_its_page(case, copy, capsys, tmp_path):
    store, run_id = copy
    path = store.parent / run_id / PER_IMAGE_NAME
    with np.load(path) as data:
        indices, confusion = PER_IMAGE[case][0](data["indices"], data["confusion"])
    np.savez(path, indices=indices, confusion=confusion)
    before = _record(store)
    code, _, err = run_cli(capsys, "report", "--out", str(tmp_path / "report"), "--store", str(store))
    assert code == 0, err
    page = (tmp_path / "report" / "index.html").read_text()
    assert PER_IMAGE_NAME in page and PER_IMAGE[case][1] in page
    assert _record(store) == before
    code, _, err = run_cli(capsys, "compare", run_id, run_id, "--store", str(store))
    assert_refused(code, err, PER_IMAGE[case][1])
