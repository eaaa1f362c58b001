"""Out-of-fold scoring: a configuration trained on all K folds, scored once over every labelled image, each
image predicted by the fold model that did not train on it — the challenge metric on the whole training
set, from one confusion matrix.

Nothing is predicted again: each fold run's best-epoch per-image confusions (``val_per_image.npz``, the
loop's `save_per_image`) are its predictions on its own fold, so the out-of-fold confusion is their sum.
"""

from __future__ import annotations

import numpy as np

from harness.analysis.compare import PerImage, miou_batch, run_fold
from harness.errors import HarnessError


def oof_confusion(parts: list[PerImage]) -> np.ndarray:
    """(K, K) sum of the per-image confusions of the folds; refuses folds that validated an image twice."""
    indices = np.concatenate([part.indices for part in parts])
    if len(np.unique(indices)) != len(indices):
        raise HarnessError("the fold runs validated some image more than once: they are not one partition")
    return sum(part.confusion.sum(axis=0) for part in parts)


def complete_folds(runs: list[dict]) -> dict[int, list[dict]]:
    """seed -> its runs of folds 0..K-1, for the seeds whose every fold finished (K = data.folds)."""
    by_seed: dict[int, dict[int, dict]] = {}
    folds = None
    for run in runs:
        fold = run_fold(run)
        data = (run.get("config") or {}).get("data") or {}
        if fold is None or not data.get("folds"):
            continue
        folds = int(data["folds"])
        by_seed.setdefault(int(run["seed"]), {}).setdefault(fold, run)
    return {
        seed: [members[f] for f in range(folds)]
        for seed, members in by_seed.items()
        if folds is not None and set(members) == set(range(folds))
    }


def oof_miou(runs: list[dict], load, metric: str = "an2dl") -> float | None:
    """Mean over seeds of the out-of-fold mIoU of `runs` (one configuration's finished runs; `load(run)`
    gives a run's `PerImage`); None when no seed has every fold."""
    scores = []
    for members in complete_folds(runs).values():
        ignore = ((members[0].get("config") or {}).get("data") or {}).get("ignore_index", 0)
        matrix = oof_confusion([load(run) for run in members])
        scores.append(float(miou_batch(matrix, ignore, metric)))
    return float(np.mean(scores)) if scores else None
