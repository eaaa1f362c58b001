"""Anchors: shapes from sizes and ratios, their placement on a pyramid, recall, and the k-means fit with
1 - IoU as the distance (wide boxes get wide anchors)."""

from __future__ import annotations

import numpy as np
import torch

from plugins.architectures import anchors
from plugins.architectures.anchors import make_anchors


def test_anchors_tile_each_level_with_every_ratio():
    levels = make_anchors([(4, 8), (2, 4)], strides=[4, 8], sizes=[8, 16], ratios=[0.5, 1.0, 2.0])
    assert [tuple(level.shape) for level in levels] == [(4 * 8 * 3, 4), (2 * 4 * 3, 4)]
    first = levels[0].view(4, 8, 3, 4)
    centres = (first[..., :2] + first[..., 2:]) / 2
    assert torch.allclose(centres[1, 2, 0], torch.tensor([2.5 * 4, 1.5 * 4]))  # (row 1, column 2) cell centre
    width, height = first[..., 2] - first[..., 0], first[..., 3] - first[..., 1]
    assert torch.allclose(width * height, torch.full_like(width, 64.0))
    assert torch.allclose(height / width, torch.tensor([0.5, 1.0, 2.0]).expand_as(width))
    assert torch.allclose(levels[1][:3, 2] - levels[1][:3, 0], 16 / torch.tensor([0.5, 1.0, 2.0]).sqrt())


def test_feature_sizes_round_up_each_stride():
    assert anchors.feature_sizes(64, 128, (4, 8, 64)) == [(16, 32), (8, 16), (1, 2)]
    assert anchors.feature_sizes(80, 120, (32,)) == [(3, 4)]


def test_shape_iou_compares_centred_shapes():
    iou = anchors.shape_iou(np.array([[4.0, 2.0]]), np.array([[4.0, 2.0], [2.0, 4.0], [8.0, 2.0]]))
    assert np.allclose(iou, [[1.0, 4 / 12, 0.5]])


def test_recall_is_the_share_of_boxes_with_an_anchor_at_the_threshold():
    grid = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 5.0]])
    assert torch.allclose(anchors.best_ious(boxes, grid), torch.tensor([1.0, 0.8, 0.5]))
    assert abs(anchors.recall(boxes, grid, 0.7) - 2 / 3) < 1e-6
    assert np.isnan(anchors.recall(boxes[:0], grid, 0.7))


def _wide_boxes(count: int = 300, seed: int = 0) -> np.ndarray:
    """Boxes 4 to 8 times wider than high, anywhere in a 64x128 image."""
    rng = np.random.default_rng(seed)
    height = rng.uniform(6, 14, count)
    width = height * rng.uniform(4, 8, count)
    x1, y1 = rng.uniform(0, 128 - width), rng.uniform(0, 64 - height)
    return np.stack([x1, y1, x1 + width, y1 + height], axis=1).astype(np.float32)


def test_kmeans_on_wide_boxes_gives_wide_anchors_that_cover_them():
    boxes = _wide_boxes()
    fitted = anchors.fit_shapes(boxes, k=15)
    assert fitted.shape == (15, 2)
    assert bool((fitted[:, 0] > 2.5 * fitted[:, 1]).all())  # every anchor is wide, none square or tall
    areas = fitted[:, 0] * fitted[:, 1]
    assert bool((areas[1:] >= areas[:-1]).all())  # smallest first
    # Every shape on the finest levels, as maskrcnn places fitted anchors: most boxes reach IoU 0.7.
    strides = (4, 8)
    shapes = fitted[None].repeat(len(strides), 1, 1)
    grid = torch.cat(anchors.place(anchors.feature_sizes(64, 128, strides), strides, shapes))
    assert anchors.recall(torch.from_numpy(boxes), grid, 0.7) >= 0.9
    default = torch.cat(make_anchors(anchors.feature_sizes(64, 128, strides), strides, [8, 16], [0.5, 1, 2]))
    assert anchors.recall(torch.from_numpy(boxes), default, 0.7) < 0.2


def test_kmeans_is_seeded_and_needs_enough_distinct_shapes():
    boxes = _wide_boxes()
    shapes = boxes[:, 2:] - boxes[:, :2]
    assert np.array_equal(anchors.kmeans_shapes(shapes, 5, seed=1), anchors.kmeans_shapes(shapes, 5, seed=1))
    assert anchors.fit_shapes(np.repeat(boxes[:3], 10, axis=0), k=5) is None
