"""Anchors for instance-based architectures (not a plugin: no hooks here): their shapes, their placement
on a feature pyramid, how well they cover a set of instance boxes, and fitting them to those boxes.

A pyramid's anchors are `shapes`, a (levels, A, 2) tensor of (width, height) per level: level l puts each
of its A shapes on every cell of its map, centred on the cell's centre. Sizes and aspect ratios
(`from_sizes_and_ratios`) are one way to make them; `fit_shapes` is another: k-means over the (w, h) of
the training instances with 1 - IoU as the distance (the boxes compared as if centred on one point), the
idea of YOLOv2's dimension clusters and YOLOv5's auto-anchor, so that the anchors have the shapes the
instances have rather than the ones a natural-image detector assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from plugins.architectures.detection import box_iou

# Instance boxes scored against the anchors per chunk: bounds the (boxes, anchors) IoU matrix in memory.
RECALL_CHUNK = 4096
KMEANS_ITERATIONS = 100


def from_sizes_and_ratios(sizes: Sequence[float], ratios: Sequence[float]) -> torch.Tensor:
    """(len(sizes), len(ratios), 2) shapes: level l's anchors have area sizes[l]^2 and height / width r."""
    size = torch.tensor(sizes, dtype=torch.float32)[:, None]
    root = torch.tensor(ratios, dtype=torch.float32).sqrt()[None, :]
    return torch.stack([size / root, size * root], dim=-1)


def place(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    shapes: torch.Tensor,
) -> list[torch.Tensor]:
    """Per level, (h * w * A, 4) anchors ordered (row, column, shape), centred on ((j + 0.5) * stride, ...).

    The order matches a head's (B, A, h, w) output permuted to (B, h, w, A) and flattened.
    """
    levels = []
    device = shapes.device
    for (height, width), stride, level_shapes in zip(feature_sizes, strides, shapes, strict=True):
        half_w, half_h = level_shapes[:, 0].float() / 2, level_shapes[:, 1].float() / 2
        cy = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * stride
        cx = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * stride
        cy, cx = cy[:, None, None], cx[None, :, None]
        corners = [cx - half_w, cy - half_h, cx + half_w, cy + half_h]
        levels.append(torch.stack(torch.broadcast_tensors(*corners), dim=-1).reshape(-1, 4))
    return levels


def make_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    sizes: Sequence[float],
    ratios: Sequence[float],
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """`place` for level l's anchors of size `sizes[l]` (square root of the area) and every ratio."""
    return place(feature_sizes, strides, from_sizes_and_ratios(sizes, ratios).to(device))


def feature_sizes(height: int, width: int, strides: Sequence[int]) -> list[tuple[int, int]]:
    """The map size of each level of an image of (height, width) (each level halves, rounding up)."""
    return [(-(-height // stride), -(-width // stride)) for stride in strides]


def best_ious(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(N,) the best IoU of each (N, 4) box with any of the (M, 4) anchors (0 for no anchors)."""
    if len(anchors) == 0 or len(boxes) == 0:
        return torch.zeros(len(boxes))
    return torch.cat([box_iou(part, anchors).amax(dim=1) for part in boxes.split(RECALL_CHUNK)])


def recall(boxes: torch.Tensor, anchors: torch.Tensor, threshold: float) -> float:
    """Share of the boxes whose best anchor IoU is at least `threshold` (NaN for no boxes)."""
    if len(boxes) == 0:
        return float("nan")
    return float((best_ious(boxes, anchors) >= threshold).float().mean())


def shape_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, K) IoU of (N, 2) and (K, 2) (w, h) shapes centred on one point."""
    overlap = np.minimum(first[:, None, 0], second[None, :, 0]) * np.minimum(
        first[:, None, 1], second[None, :, 1]
    )
    areas = first[:, 0] * first[:, 1]
    return overlap / (areas[:, None] + (second[:, 0] * second[:, 1])[None, :] - overlap)


def kmeans_shapes(shapes: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k (w, h) cluster centres of (N, 2) shapes under the distance 1 - IoU, sorted by area.

    Seeded k-means++ (each next centre drawn with probability proportional to its distance to the
    nearest chosen one), then Lloyd steps: every shape joins its highest-IoU centre and each centre
    moves to its members' median (robust to the few huge terrain regions). Needs at least k distinct
    shapes.
    """
    rng = np.random.default_rng(seed)
    shapes = shapes.astype(np.float64)
    centres = [shapes[rng.integers(len(shapes))]]
    for _ in range(1, k):
        distance = 1 - shape_iou(shapes, np.array(centres)).max(axis=1)
        total = distance.sum()
        pick = rng.choice(len(shapes), p=distance / total) if total > 0 else rng.integers(len(shapes))
        centres.append(shapes[pick])
    centres = np.array(centres)
    assigned = None
    for _ in range(KMEANS_ITERATIONS):
        nearest = shape_iou(shapes, centres).argmax(axis=1)
        if assigned is not None and np.array_equal(nearest, assigned):
            break
        assigned = nearest
        for cluster in range(k):
            members = shapes[nearest == cluster]
            if len(members):  # an emptied cluster keeps its centre
                centres[cluster] = np.median(members, axis=0)
    return centres[np.argsort(centres[:, 0] * centres[:, 1], kind="stable")]


def fit_shapes(boxes: np.ndarray, k: int, seed: int = 0) -> torch.Tensor | None:
    """(k, 2) anchor shapes fitted to (N, 4) boxes by `kmeans_shapes`, smallest first; None with fewer
    than k distinct shapes."""
    shapes = boxes[:, 2:] - boxes[:, :2]
    shapes = shapes[(shapes > 0).all(axis=1)]
    if len(np.unique(shapes, axis=0)) < k:
        return None
    return torch.tensor(kmeans_shapes(shapes, k, seed), dtype=torch.float32)
