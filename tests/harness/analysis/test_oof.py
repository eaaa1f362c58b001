"""harness.analysis.oof: the out-of-fold confusion is the sum of the fold confusions, and only a seed whose
every fold finished gets a score."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.compare import PerImage, miou_batch
from harness.analysis.oof import complete_folds, oof_confusion, oof_miou
from harness.errors import HarnessError
from tests_support import per_image


def _fold_runs(folds: int = 3, seed: int = 0) -> tuple[list[dict], dict[str, PerImage]]:
    runs, files = [], {}
    for fold in range(folds):
        run_id = f"s{seed}-f{fold}"
        runs.append({"run_id": run_id, "seed": seed, "fold": fold, "config": {"data": {"folds": folds}}})
        indices = np.arange(fold, 30, folds)  # fold f validated images f, f+K, f+2K, ...
        files[run_id] = PerImage(indices, per_image(0.5 + 0.1 * fold, n=len(indices), seed=fold))
    return runs, files


def test_the_out_of_fold_confusion_is_the_sum_of_the_fold_confusions():
    runs, files = _fold_runs()
    parts = [files[r["run_id"]] for r in runs]
    total = oof_confusion(parts)
    assert np.array_equal(total, sum(p.confusion.sum(0) for p in parts))
    assert total.shape == (5, 5)
    expected = float(miou_batch(total, 0))
    assert oof_miou(runs, lambda run: files[run["run_id"]]) == pytest.approx(expected)
    # one confusion over every image is not the mean of the fold scores
    mean_of_folds = np.mean([miou_batch(p.confusion.sum(0), 0) for p in parts])
    assert expected != pytest.approx(mean_of_folds, abs=1e-6)


def test_a_seed_missing_a_fold_gets_no_score_and_other_seeds_average():
    runs, files = _fold_runs(seed=0)
    more, more_files = _fold_runs(seed=1)
    files.update(more_files)
    assert oof_miou(runs[:2], lambda run: files[run["run_id"]]) is None
    assert sorted(complete_folds(runs + more[:2])) == [0]
    both = oof_miou(runs + more, lambda run: files[run["run_id"]])
    one = oof_miou(runs, lambda run: files[run["run_id"]])
    assert both == pytest.approx(one)  # the same fold files for both seeds
    assert oof_miou([{"run_id": "x", "seed": 0, "config": {"data": {}}}], files.get) is None  # no folds


def test_folds_that_validated_an_image_twice_are_refused():
    runs, files = _fold_runs()
    files["s0-f1"] = files["s0-f0"]
    with pytest.raises(HarnessError, match="more than once"):
        oof_miou(runs, lambda run: files[run["run_id"]])
