"""harness.data.neighbours: the two halves of one photograph and near-duplicates are found, unrelated
images are not, and pairs become groups (`data.groups = auto`)."""

from __future__ import annotations

import numpy as np

from harness.data.folds import run_groups
from harness.data.neighbours import (
    edge_pairs,
    groups_with_pairs,
    hash_pairs,
    neighbour_pairs,
    neighbour_report,
)
from harness.data.synthetic import synthetic


def _photos(count: int = 6, seed: int = 0) -> np.ndarray:
    """`count` smooth random 32x32 photographs (row to row they change slowly, like a real picture)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (count, 32 + 16, 32))
    tall, wide = np.ones(9) / 9, np.ones(3) / 3  # smooth down the columns, textured along the rows
    smooth = np.apply_along_axis(lambda r: np.convolve(r, tall, "same"), 1, noise)
    smooth = np.apply_along_axis(lambda r: np.convolve(r, wide, "same"), 2, smooth)[:, 8:-8]
    scaled = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return scaled.astype(np.uint8)


def test_the_two_halves_of_one_photograph_pair_up():
    photos = _photos()
    top, bottom = photos[:, :16], photos[:, 16:]
    images = np.concatenate([bottom[3:], top, bottom[:3]])  # halves shuffled apart: top i at 3 + i
    found = set(edge_pairs(images))
    halves = {(3 + i, (i - 3) % 6 if i >= 3 else 9 + i) for i in range(6)}
    assert halves <= found, (halves, found)
    assert len(found) <= len(halves) + 1  # next to nothing else


def test_near_duplicates_pair_and_distinct_images_do_not():
    photos = _photos(8, seed=1)
    copy = np.clip(photos[2].astype(int) + 2, 0, 255).astype(np.uint8)  # re-encoded: slightly brighter
    images = np.concatenate([photos, copy[None]])
    assert hash_pairs(images) == [(2, 8)]
    assert (2, 8) in neighbour_pairs(images)


def test_pairs_and_file_groups_become_connected_groups():
    groups = groups_with_pairs(np.array(["a", "b", "a", "c", "d"]), 5, [(1, 3)])
    assert groups[0] == groups[2] and groups[1] == groups[3] and len(set(groups.tolist())) == 3


def test_auto_groups_join_neighbours_and_the_report_counts_them():
    data = synthetic(n=12, test_n=0, height=16, width=32)
    photos = _photos(2, seed=3)
    data.images[:2] = torch_from(photos[:, :16])
    data.images[2:4] = torch_from(photos[:, 16:])
    groups = run_groups(data, "auto")
    assert groups[0] == groups[2] and groups[1] == groups[3]
    assert run_groups(data, "file") is None and run_groups(data, "none") is None
    report = neighbour_report(data.images)
    assert report["edge_pairs"] >= 2 and report["groups"] >= 2 and report["largest_group"] >= 2


def torch_from(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))
