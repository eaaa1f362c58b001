"""K-fold partitions and group-aware splits: which images a run trains on and which it validates on.

`fold_assignment` gives every labelled image a fold in 0..K-1, seeded, so that (a) no group ever has
images in two folds and (b) every fold holds its share of the images containing the rarest present
foreground class. It is scikit-learn's `StratifiedGroupKFold` (shuffled, seeded) with one label per
image: whether it holds the rarest class. Without groups every image is its own group, which makes it a
stratified K-fold. One rare class and not an iterative multilabel stratification: on AN2DL the classes
other than big rock are in most images, so the rarest one is the only class a random fold can miss, and a
single binary label is what StratifiedGroupKFold stratifies exactly while keeping groups whole.

`run_split` is what a run uses: the val_fraction split (`harness.data.splits.split`) when there are
neither folds nor groups, otherwise the fold (with groups and no folds: fold 0 of round(1/val_fraction)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.data.dataset import SegmentationData
from harness.data.splits import class_presence, split
from harness.errors import DataError


def rare_class(presence: np.ndarray) -> tuple[int | None, np.ndarray]:
    """(class id, (N,) bool) of the foreground class present in the fewest images (None: no foreground)."""
    counts = presence[:, 1:].sum(axis=0)
    present = np.flatnonzero(counts > 0)
    if not len(present):
        return None, np.zeros(len(presence), dtype=bool)
    cls = int(present[np.argmin(counts[present])]) + 1
    return cls, presence[:, cls]


def group_ids(groups: np.ndarray | None, total: int) -> np.ndarray:
    """(N,) int64 group number per image: the given labels renumbered, or one group per image."""
    if groups is None:
        return np.arange(total, dtype=np.int64)
    return np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64).reshape(-1)


def fold_assignment(
    masks: torch.Tensor | np.ndarray,
    folds: int,
    seed: int,
    num_classes: int,
    groups: np.ndarray | None = None,
    source: str = "the data",
) -> np.ndarray:
    """(N,) int64: the fold of every image, stratified on the rarest class, never splitting a group.

    Refuses (one-line `DataError`) fewer than 2 folds, more folds than images, groups or images holding
    the rarest class, and a partition that leaves a fold empty.
    """
    total = len(masks)
    if folds < 2:
        raise DataError(f"folds must be at least 2 (one fold validates, the others train), got {folds}")
    if folds > total:
        raise DataError(f"{source}: {folds} folds need at least {folds} images, it has {total}")
    presence = class_presence(masks, num_classes)
    cls, rare = rare_class(presence)
    gid = group_ids(groups, total)
    n_groups = int(gid.max()) + 1 if total else 0
    if folds > n_groups:
        raise DataError(
            f"{source}: {folds} folds need at least {folds} groups, it has {n_groups}: a fold would be empty"
        )
    if cls is not None and 0 < rare.sum() < folds:
        raise DataError(
            f"{source}: {folds} folds but only {int(rare.sum())} images hold the rarest class {cls}; "
            f"use at most --folds {int(rare.sum())} so that every fold can hold it"
        )
    # Imported here: sklearn.model_selection takes ~0.75 s and pulls pandas in, which only fold runs need.
    from sklearn.model_selection import StratifiedGroupKFold

    # Folds of the rare-class label, groups kept whole; the split only reads the labels, not the images.
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    assignment = np.empty(total, dtype=np.int64)
    for fold, (_, val_rows) in enumerate(splitter.split(np.zeros((total, 1)), rare.astype(np.int64), gid)):
        assignment[val_rows] = fold
    empty = [f for f in range(folds) if not (assignment == f).any()]
    if empty:
        raise DataError(f"{source}: the groups leave fold {empty[0]} of {folds} empty; use fewer folds")
    return assignment


def fold_split(assignment: np.ndarray, fold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, validation rows) of `fold`: sorted int64 tensors, validation = the fold's images."""
    is_val = assignment == fold
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))


def run_split(data: SegmentationData, cfg: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, validation) rows a run with data settings `cfg` (a `DataConfig`) and `seed` uses."""
    folds = getattr(cfg, "folds", None)  # settings older than folds and groups: the val_fraction split
    groups = run_groups(data, getattr(cfg, "groups", "file"))
    if folds is None and groups is None:
        return split(data.masks, cfg.val_fraction, seed, data.num_classes)
    if folds is not None and cfg.fold is None:
        raise DataError(
            f"data.folds = {cfg.folds} needs data.fold (0..{cfg.folds - 1}): which fold to validate on"
        )
    assignment = fold_assignment(
        data.masks, folds or max(2, round(1 / cfg.val_fraction)), seed, data.num_classes, groups, data.source
    )
    return fold_split(assignment, cfg.fold if folds is not None else 0)


def run_groups(data: SegmentationData, mode: str) -> np.ndarray | None:
    """The groups a run honours: none, the file's (`file`), or those joined with neighbour pairs (`auto`)."""
    if mode == "none":
        return None
    if mode == "file":
        return data.groups
    from harness.data.neighbours import groups_with_pairs, neighbour_pairs

    return groups_with_pairs(data.groups, len(data), neighbour_pairs(data.images))
