"""Which images `harness evaluate` scores: a run knows its split, so on its own data it leaves out the
images it trained on (unless asked to include them), and it says which ones it scored.

A run's own data is recognised by content, not by name: the rows the run held (after its `data.clean`
and `data.limit`) must hash to the run's recorded `dataset_id`. Its split is then the very one training
made (`harness.data.folds.run_split`: the run's seed, `val_fraction` or fold, and groups); images the
run never held (beyond its limit, or cleaned away) were never trained on, so they are scored too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.dataset import SegmentationData, content_id
from harness.data.folds import run_split
from harness.data.inspect import inspect as inspect_data
from harness.errors import HarnessError


@dataclass(frozen=True)
class Selection:
    """The rows of a dataset to score, and one line saying which they are."""

    rows: np.ndarray
    note: str
    trained_on: int  # how many of the dataset's images the run trained on (0: not its data)
    included_training: bool


def run_rows(
    data: SegmentationData, dataset_id: str | None, clean: str, limit: int | None
) -> np.ndarray | None:
    """The dataset rows the run held, in its order, or None when `data` is not the run's data."""
    if not dataset_id:
        return None
    rows = np.arange(len(data))
    if clean == "outliers":
        outliers = set(int(i) for i in inspect_data(data)["outliers"])
        rows = np.array([i for i in rows if i not in outliers], dtype=np.int64)
    if limit is not None:
        rows = rows[:limit]
    if len(rows) == 0:
        return None
    held = content_id(data.images[rows].numpy(), data.masks[rows].numpy())
    return rows if held == dataset_id else None


def select(
    data: SegmentationData,
    runs: list[tuple[dict, Any]],
    *,
    include_training: bool = False,
    limit: int | None = None,
) -> Selection:
    """The rows `evaluate` scores for `runs` ((record, config) of each run scored together, an ensemble's
    members): by default all but the images any of them trained on; `include_training`: all; `limit`: at
    most that many of them (the first ones)."""
    if limit is not None and limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    total = len(data)
    training = np.zeros(total, dtype=bool)
    for record, cfg in runs:
        held = run_rows(data, record.get("dataset_id"), cfg.data.clean, cfg.data.limit)
        if held is not None:
            train_idx, _ = run_split(data.subset(held), cfg.data, cfg.seed)
            training[held[train_idx.numpy()]] = True
    trained = int(training.sum())
    who = "this run" if len(runs) == 1 else f"any of the {len(runs)} runs"
    if not trained:
        rows = np.arange(total)
        note = (
            f"all {total} images (not the data {'this run' if len(runs) == 1 else 'these runs'} trained on)"
        )
    elif include_training:
        rows = np.arange(total)
        note = f"all {total} images, including the {trained} {who} trained on (--all)"
    else:
        rows = np.flatnonzero(~training)
        note = (
            f"{len(rows)} of {total} images: the {trained} {who} trained on are left out "
            "(its validation split and any it never held; --all scores every image)"
        )
    if not len(rows):
        who = "the run" if len(runs) == 1 else "the runs (the folds of a configuration, say) between them"
        raise HarnessError(
            f"{data.source}: no images left to score ({who} trained on all of them); pass --all, or read "
            "a fold-trained configuration's out-of-fold score (the leaderboard's oof)"
        )
    if limit is not None and limit < len(rows):
        rows = rows[:limit]
        note += f"; the first {limit} of them (--limit)"
    return Selection(rows=rows, note=note, trained_on=trained, included_training=include_training)
