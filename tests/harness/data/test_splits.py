"""harness.data.splits: the seeded, rare-class-stratified train/validation split and class presence."""

from __future__ import annotations

import pytest
import torch

from harness.data.splits import class_presence, split
from harness.errors import DataError


def _masks_with_rare_class(total: int = 100, rare_rows=range(10)) -> torch.Tensor:
    masks = torch.zeros((total, 4, 4), dtype=torch.uint8)
    masks[:, 0, 0] = 1
    masks[::2, 1, 1] = 2
    masks[::3, 2, 2] = 3
    masks[list(rare_rows), 3, 3] = 4
    return masks


def test_split_is_disjoint_covering_sorted_and_sized():
    train, val = split(_masks_with_rare_class(), 0.2, seed=0, num_classes=5)
    assert train.dtype == val.dtype == torch.int64
    assert len(val) == 20 and len(train) == 80
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(100))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_is_deterministic_per_seed():
    masks = _masks_with_rare_class()
    first = split(masks, 0.2, seed=3, num_classes=5)
    again = split(masks, 0.2, seed=3, num_classes=5)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], split(masks, 0.2, seed=4, num_classes=5)[1])


@pytest.mark.parametrize("seed", range(5))
def test_split_stratifies_the_rarest_class(seed):
    train, val = split(_masks_with_rare_class(rare_rows=range(50, 60)), 0.2, seed=seed, num_classes=5)
    rare = set(range(50, 60))
    assert len(rare & set(val.tolist())) == 2 and len(rare & set(train.tolist())) == 8


@pytest.mark.parametrize("seed", range(5))
def test_split_puts_two_rare_images_on_both_sides(seed):
    train, val = split(_masks_with_rare_class(total=30, rare_rows=[7, 21]), 0.1, seed=seed, num_classes=5)
    assert len({7, 21} & set(val.tolist())) == 1 and len({7, 21} & set(train.tolist())) == 1


def test_split_finds_the_rarest_class_from_the_masks():
    masks = _masks_with_rare_class(rare_rows=range(40))
    masks[:, 2, 2] = 1
    masks[[5, 60, 90], 2, 2] = 3  # sand is now rarer than big rock
    for seed in range(5):
        train, val = split(masks, 0.3, seed=seed, num_classes=5)
        assert len({5, 60, 90} & set(val.tolist())) == 1
        assert len({5, 60, 90} & set(train.tolist())) == 2


def test_split_of_tiny_sets():
    train, val = split(_masks_with_rare_class(total=2, rare_rows=[0, 1]), 0.9, seed=0, num_classes=5)
    assert len(train) == len(val) == 1


@pytest.mark.parametrize(
    ("total", "fraction"), [(1, 0.2), (10, 0.0), (10, 1.0), (10, -0.1), (10, float("nan"))]
)
def test_split_refuses_bad_inputs(total, fraction):
    with pytest.raises(DataError):
        split(torch.zeros((total, 4, 4), dtype=torch.uint8), fraction, seed=0, num_classes=5)


def test_class_presence():
    masks = torch.zeros((2, 3, 3), dtype=torch.uint8)
    masks[1, 0, 0] = 2
    assert class_presence(masks, 3).tolist() == [[True, False, False], [True, False, True]]
