"""harness.data.folds: the K-fold partition (every image validated once, groups never split, the rare class
in every fold) and the split a run uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import RunConfig
from harness.data.folds import fold_assignment, fold_split, run_split
from harness.data.synthetic import synthetic
from harness.errors import DataError


def _masks(total: int = 60, rare_rows=range(0, 60, 6)) -> torch.Tensor:
    masks = torch.zeros((total, 4, 4), dtype=torch.uint8)
    masks[:, 0, 0] = 1
    masks[::2, 1, 1] = 2
    masks[list(rare_rows), 3, 3] = 4
    return masks


@pytest.mark.parametrize("folds", [2, 5, 7])
def test_every_image_is_validated_exactly_once(folds):
    assignment = fold_assignment(_masks(), folds, seed=1, num_classes=5)
    validated = torch.cat([fold_split(assignment, f)[1] for f in range(folds)])
    assert torch.equal(validated.sort().values, torch.arange(60))
    for f in range(folds):
        train, val = fold_split(assignment, f)
        assert not set(train.tolist()) & set(val.tolist()) and len(train) + len(val) == 60


def test_a_group_never_straddles_two_folds():
    groups = np.repeat(np.arange(20), 3)  # images 3g, 3g+1, 3g+2 are one photograph
    assignment = fold_assignment(_masks(), 5, seed=0, num_classes=5, groups=groups)
    for g in range(20):
        assert len(set(assignment[groups == g].tolist())) == 1
    named = np.array([f"site-{g}" for g in groups])  # string ids work the same way
    by_name = fold_assignment(_masks(), 5, seed=0, num_classes=5, groups=named)
    assert all(len(set(by_name[groups == g].tolist())) == 1 for g in range(20))


@pytest.mark.parametrize("seed", range(4))
def test_every_fold_holds_the_rare_class_when_k_images_have_it(seed):
    rare = [3, 17, 29, 41, 58]  # exactly K = 5 images hold class 4
    assignment = fold_assignment(_masks(rare_rows=rare), 5, seed=seed, num_classes=5)
    assert sorted(assignment[rare].tolist()) == [0, 1, 2, 3, 4]


def test_folds_are_seeded_and_sized_evenly():
    first = fold_assignment(_masks(), 5, seed=3, num_classes=5)
    assert np.array_equal(first, fold_assignment(_masks(), 5, seed=3, num_classes=5))
    assert not np.array_equal(first, fold_assignment(_masks(), 5, seed=4, num_classes=5))
    assert np.bincount(first).tolist() == [12] * 5


@pytest.mark.parametrize(
    ("folds", "groups", "match"),
    [
        (1, None, "at least 2"),
        (61, None, "need at least 61 images"),
        (11, None, "only 10 images hold the rarest class 4"),
        (4, np.repeat(np.arange(3), 20), "need at least 4 groups, it has 3: a fold would be empty"),
    ],
)
def test_folds_that_cannot_be_made_are_refused(folds, groups, match):
    with pytest.raises(DataError, match=match):
        fold_assignment(_masks(), folds, seed=0, num_classes=5, groups=groups)


def test_one_huge_group_still_leaves_no_fold_empty():
    groups = np.array([0] * 58 + [1, 2])
    assignment = fold_assignment(_masks(rare_rows=[58, 59, 0]), 3, seed=0, num_classes=5, groups=groups)
    assert sorted(np.bincount(assignment).tolist()) == [1, 1, 58]


def test_run_split_uses_val_fraction_folds_and_groups():
    data = synthetic(n=40, test_n=0, height=16, width=16)
    plain = RunConfig().data
    train, val = run_split(data, plain, seed=0)
    assert len(val) == 8  # val_fraction 0.2, the split of old runs
    folded = plain.model_copy(update={"folds": 4, "fold": 1})
    assignment = fold_assignment(data.masks, 4, 0, data.num_classes, None, data.source)
    assert torch.equal(run_split(data, folded, seed=0)[1], fold_split(assignment, 1)[1])
    with pytest.raises(DataError, match="needs data.fold"):
        run_split(data, plain.model_copy(update={"folds": 4}), seed=0)
    data.groups = np.arange(40) // 2  # with groups and no folds: fold 0 of round(1 / 0.2) = 5
    _, grouped = run_split(data, plain, seed=0)
    pairs = {int(i) // 2 for i in grouped}
    assert all({2 * p, 2 * p + 1} <= set(grouped.tolist()) for p in pairs)
    assert len(run_split(data, plain.model_copy(update={"groups": "none"}), seed=0)[1]) == 8
