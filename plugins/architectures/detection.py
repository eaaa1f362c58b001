"""Detection parts for instance-based architectures (not a plugin: no hooks here).

Pure functions, all in plain PyTorch (torchvision's compiled ops do not load with the CPU torch the
harness pins): instances cut from semantic masks, box coding, IoU matching and balanced
sampling, NMS, RoIAlign, and pasting instance masks back into an image.

Conventions. A box is (x1, y1, x2, y2) in pixel-edge coordinates: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), so a one-pixel instance at (0, 0) has the box (0, 0, 1, 1) and area 1, and a
pixel's centre is at (j + 0.5, i + 0.5). Batched functions take a leading image axis with a fixed
number of boxes per image plus a `valid` mask, so one call serves the whole batch without ragged lists.
Box math, NMS, RoIAlign and pasting run in float32 with autocast off: under bf16 autocast a coordinate
near 128 would be rounded to a multiple of 0.5, and IoU thresholds would flip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label

# Decoded widths/heights are capped at exp(this) times the reference box, as in Detectron: an untrained
# regressor can emit huge log-scale deltas whose exp overflows.
MAX_LOG_SCALE = math.log(1000.0 / 16)
# Elements of one IoU matrix chunk in `nms` (2**24 floats = 64 MiB): bounds memory at eval batch sizes.
NMS_CHUNK_ELEMENTS = 2**24


def float32(device: torch.device) -> torch.autocast:
    """A region where autocast is off, so box math and sampling stay in float32."""
    return torch.autocast(device_type=device.type, enabled=False)


@dataclass(frozen=True)
class Instances:
    """The instances of one semantic mask."""

    components: np.ndarray  # (H, W) uint8: 0 where no kept instance, g + 1 on instance g's pixels
    classes: np.ndarray  # (G,) int64: the semantic class of each instance (never the background)
    boxes: np.ndarray  # (G, 4) float32: x1, y1, x2, y2 in pixel-edge coordinates


def instances_from_mask(
    mask: np.ndarray, *, min_area: int, max_instances: int, background: int = 0
) -> Instances:
    """Connected components of each non-background class, as instances (largest first).

    Components are 8-connected regions of one class (`skimage.measure.label` on the whole mask labels
    equal-valued regions, so one call covers every class), as the copy-paste balancer cuts them.
    Components smaller than `min_area` pixels are dropped, then at most `max_instances` of the largest
    are kept (ties in label order): a noisy mask can hold thousands of specks that no detector should
    chase. `max_instances` is at most 255 (instance ids are stored as uint8).
    """
    if max_instances > 255:
        raise ValueError(f"max_instances is {max_instances}; instance ids are uint8, so at most 255")
    regions = label(mask, background=background, connectivity=2)
    count = int(regions.max())
    areas = np.bincount(regions.ravel(), minlength=count + 1)
    areas[0] = 0  # label 0 is the background, never an instance
    candidates = np.flatnonzero(areas >= max(min_area, 1))
    kept = candidates[np.argsort(-areas[candidates], kind="stable")][:max_instances]
    lookup = np.zeros(count + 1, dtype=np.uint8)
    lookup[kept] = np.arange(1, len(kept) + 1)
    components = lookup[regions]
    region_class = np.zeros(count + 1, dtype=np.int64)
    region_class[regions.ravel()] = mask.ravel()  # every pixel of a region has the region's class
    return Instances(components, region_class[kept], _component_boxes(components, len(kept)))


def _component_boxes(components: np.ndarray, count: int) -> np.ndarray:
    """(count, 4) pixel-edge boxes of instance ids 1..count."""
    if count == 0:
        return np.zeros((0, 4), dtype=np.float32)
    one_hot = components[None] == np.arange(1, count + 1, dtype=components.dtype)[:, None, None]
    rows, cols = one_hot.any(axis=2), one_hot.any(axis=1)
    height, width = components.shape
    y1, x1 = rows.argmax(axis=1), cols.argmax(axis=1)
    y2, x2 = height - rows[:, ::-1].argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (...); a degenerate box has area 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def box_iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """IoU of (..., N, 4) with (..., M, 4) -> (..., N, M); 0 where both boxes are empty."""
    with float32(first.device):
        first, second = first.float()[..., :, None, :], second.float()[..., None, :, :]
        overlap = _overlap(first, second, axis=0) * _overlap(first, second, axis=1)
        union = box_area(first) + box_area(second) - overlap
        return overlap / union.clamp_min(1e-9)


def _overlap(first: torch.Tensor, second: torch.Tensor, axis: int) -> torch.Tensor:
    """Length of the intersection of the boxes' extents along x (axis 0) or y (axis 1)."""
    low = torch.maximum(first[..., axis], second[..., axis])
    return (torch.minimum(first[..., axis + 2], second[..., axis + 2]) - low).clamp_min(0)


def encode_boxes(reference: torch.Tensor, target: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Deltas (dx, dy, dw, dh) that move `reference` boxes onto `target` boxes (R-CNN's parametrisation)."""
    with float32(reference.device):
        reference, target = reference.float(), target.float()
        ref_w, ref_h = _sides(reference)
        tgt_w, tgt_h = _sides(target)
        wx, wy, ww, wh = weights
        return torch.stack(
            [
                wx * (_centre(target, 0) - _centre(reference, 0)) / ref_w,
                wy * (_centre(target, 1) - _centre(reference, 1)) / ref_h,
                ww * torch.log(tgt_w / ref_w),
                wh * torch.log(tgt_h / ref_h),
            ],
            dim=-1,
        )


def decode_boxes(reference: torch.Tensor, deltas: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """The inverse of `encode_boxes`, with the scale deltas capped at MAX_LOG_SCALE."""
    with float32(reference.device):
        reference, deltas = reference.float(), deltas.float()
        ref_w, ref_h = _sides(reference)
        wx, wy, ww, wh = weights
        cx = _centre(reference, 0) + deltas[..., 0] / wx * ref_w
        cy = _centre(reference, 1) + deltas[..., 1] / wy * ref_h
        half_w = torch.exp((deltas[..., 2] / ww).clamp(max=MAX_LOG_SCALE)) * ref_w / 2
        half_h = torch.exp((deltas[..., 3] / wh).clamp(max=MAX_LOG_SCALE)) * ref_h / 2
        return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def _sides(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Clamped so a degenerate (padding) box never divides by zero or takes log(0).
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(1e-3), (boxes[..., 3] - boxes[..., 1]).clamp_min(1e-3)


def _centre(boxes: torch.Tensor, axis: int) -> torch.Tensor:
    return (boxes[..., axis] + boxes[..., axis + 2]) / 2


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes cut to the image [0, width] x [0, height]."""
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp_min(0), limits)


def match_boxes(
    iou: torch.Tensor, truth_valid: torch.Tensor, *, high: float, low: float, keep_best: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label (B, N) boxes against (B, G) ground truths from their (B, N, G) IoU.

    Returns (matched truth index, label): 1 where the best IoU is >= `high`, 0 where it is < `low`,
    -1 (ignored) in between. With `keep_best`, each truth's best-overlapping boxes (ties included) are
    positive too, so a small instance that no anchor covers at `high` still gets one (Faster R-CNN's
    rule). An image without truths labels every box 0.
    """
    if iou.shape[-1] == 0:
        zeros = torch.zeros(iou.shape[:2], dtype=torch.long, device=iou.device)
        return zeros, zeros
    iou = iou.masked_fill(~truth_valid[:, None, :], -1.0)
    best, matched = iou.max(dim=-1)
    labels = torch.full_like(matched, -1)
    labels[best < low] = 0
    labels[best >= high] = 1
    if keep_best:
        best_per_truth = iou.max(dim=1, keepdim=True).values
        is_best = (iou == best_per_truth) & (best_per_truth > 0) & truth_valid[:, None, :]
        labels[is_best.any(dim=-1)] = 1
    return matched, labels


def sample_balanced(
    labels: torch.Tensor, count: int, positive_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `count` slots per image from (B, N) labels (1 positive, 0 negative, -1 never).

    At most `count * positive_fraction` positives, drawn at random, then negatives fill the rest.
    Returns (index (B, count) into N, valid (B, count)); chosen positives come first, then chosen
    negatives, then invalid filler, so a caller that wants positives only can slice the first slots.
    """
    batch, total = labels.shape
    if total < count:  # pad with never-chosen entries so topk below has enough candidates
        labels = F.pad(labels, (0, count - total), value=-1)
    positive, negative = labels == 1, labels == 0
    wanted_positive = positive.sum(dim=1).clamp(max=int(count * positive_fraction))
    wanted_negative = negative.sum(dim=1).clamp(max=count - wanted_positive)
    noise = torch.rand(labels.shape, device=labels.device)
    chosen_positive = positive & (_random_rank(noise, positive) < wanted_positive[:, None])
    chosen_negative = negative & (_random_rank(noise, negative) < wanted_negative[:, None])
    priority = 2 * chosen_positive.long() + chosen_negative.long()
    index = priority.topk(count, dim=1).indices
    valid = (chosen_positive | chosen_negative).gather(1, index)
    return index.clamp(max=total - 1), valid


def _random_rank(noise: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Each member's rank among the members by its noise (non-members rank after every member)."""
    keys = torch.where(members, noise, 2.0)
    return keys.argsort(dim=1).argsort(dim=1)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, threshold: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy non-maximum suppression over (..., N) boxes; returns the (..., N) keep mask.

    Exactly greedy NMS (visit boxes by decreasing score, ties in index order; keep a box unless a kept,
    higher-ranked box overlaps it with IoU > threshold), computed without a Python loop over boxes:
    keep = valid & no kept suppressor is a triangular system, and iterating it from "keep every valid
    box" fixes one more rank per pass, so it reaches the unique solution after as many passes as the
    longest chain of suppressions (usually a handful), each a batched matrix-vector product. Invalid
    boxes are never kept and never suppress. Leading axes are independent (e.g. images).
    """
    with float32(boxes.device):
        shape = scores.shape
        boxes, scores = boxes.reshape(-1, shape[-1], 4).float(), scores.reshape(-1, shape[-1]).float()
        valid = torch.ones_like(scores, dtype=torch.bool) if valid is None else valid.reshape(scores.shape)
        order = torch.where(valid, scores, -math.inf).argsort(dim=1, descending=True, stable=True)
        ranked_boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        ranked_valid = valid.gather(1, order)
        chunk = max(1, NMS_CHUNK_ELEMENTS // max(shape[-1] ** 2, 1))
        kept_ranked = ranked_valid.clone()
        for first in range(0, len(scores), chunk):
            part = slice(first, first + chunk)
            kept_ranked[part] = _nms_ranked(ranked_boxes[part], ranked_valid[part], threshold)
        keep = torch.zeros_like(valid).scatter(1, order, kept_ranked)
        return keep.reshape(shape)


def _nms_ranked(boxes: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """`nms` on (B, N, 4) boxes already sorted by decreasing score."""
    count = boxes.shape[1]
    ranks_before = torch.ones(count, count, dtype=torch.bool, device=boxes.device).tril(diagonal=-1)
    suppressors = ((box_iou(boxes, boxes) > threshold) & ranks_before & valid[:, None, :]).float()
    keep = valid
    for _ in range(count + 1):  # the fixed point is reached within count + 1 passes (see `nms`)
        blocked = torch.bmm(suppressors, keep.float()[..., None])[..., 0] > 0
        updated = valid & ~blocked
        if torch.equal(updated, keep):
            break
        keep = updated
    return keep


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    threshold: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """`nms` run independently within each group (e.g. class) along the last axis.

    Boxes are shifted by group * (largest coordinate + 1) on both axes, so boxes of different groups
    never overlap and one `nms` call does every group.
    """
    with float32(boxes.device):
        boxes = boxes.float()
        span = boxes.abs().amax() + 1 if boxes.numel() else boxes.new_tensor(1.0)
        shifted = boxes + (groups.to(boxes.dtype) * span)[..., None]
        return nms(shifted, scores, threshold, valid)


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """RoIAlign (He et al. 2017) of (B, R, 4) image-space boxes on (B, C, H, W) features -> (B, R, C, P, P).

    Each box is cut into P x P bins; each bin averages `sampling_ratio`^2 bilinear samples at regular
    positions inside it, with no rounding of the box to the feature grid ("aligned": a box edge at x
    maps to x * spatial_scale in feature coordinates, where feature pixel j covers [j, j + 1)). Samples
    beyond the map take the nearest edge value.
    """
    levels = torch.zeros(boxes.shape[:2], dtype=torch.long, device=boxes.device)
    return multilevel_roi_align([features], boxes, levels, [spatial_scale], output_size, sampling_ratio)


def multilevel_roi_align(
    features: Sequence[torch.Tensor],
    boxes: torch.Tensor,
    levels: torch.Tensor,
    spatial_scales: Sequence[float],
    output_size: int,
    sampling_ratio: int,
) -> torch.Tensor:
    """`roi_align` where box (b, r) is pooled from `features[levels[b, r]]` (an FPN's per-box level).

    Bilinear sampling on a regular grid is separable and averaging is linear, so the P x P bins of a box
    on an (H, W) map are `rows @ map @ cols^T` per channel: `rows` (P, H) holds, for each bin row, the
    1-D linear-interpolation weights of its s sample rows, averaged (`cols` (P, W) likewise). Each level
    pools only its own boxes, through two batched matrix products: per image, that level's boxes padded
    to the most any image has there (the padding with all-zero weights, so it pools nothing); then the
    levels' results are merged back into box order. Neither pass gathers or scatters single samples.
    The per-level box counts are read on the host (one device sync). Gradients reach the features, not
    the boxes.
    """
    device = boxes.device
    with float32(device):
        boxes = boxes.detach().float()
        batch, rois = boxes.shape[:2]
        # Each image's boxes grouped by level (stably), where each level's group starts and its length.
        order = torch.argsort(levels, dim=1, stable=True)
        counts = (levels[..., None] == torch.arange(len(features), device=device)).sum(1)  # (B, L)
        starts = counts.cumsum(1) - counts
        widths = counts.amax(0).tolist() if batch else [0] * len(features)
        image = torch.arange(batch, device=device)[:, None]
        pooled, targets = [], []
        for index, (level, scale) in enumerate(zip(features, spatial_scales, strict=True)):
            width = widths[index]
            if width == 0 and (pooled or any(widths[index + 1 :])):
                continue  # no box on this level (with no box anywhere, level 0 still runs, for the shape)
            rank = torch.arange(width, device=device)
            chosen = order.gather(1, (starts[:, index, None] + rank).clamp(max=max(rois - 1, 0)))
            valid = rank < counts[:, index, None]  # (B, width): the rest pads this level to `width`
            picked = boxes.gather(1, chosen[..., None].expand(-1, -1, 4))
            height, span = level.shape[-2:]
            rows = _bin_weights(picked[..., 1], picked[..., 3], scale, height, output_size, sampling_ratio)
            cols = _bin_weights(picked[..., 0], picked[..., 2], scale, span, output_size, sampling_ratio)
            pooled.append(_separable_pool(level.float(), rows * valid[..., None, None], cols))
            targets.append(torch.where(valid, image * rois + chosen, batch * rois).flatten())
        if len(pooled) == 1 and pooled[0].shape[1] == rois:
            return pooled[0]  # every box on one level, in box order already
        return _Unpad.apply(batch * rois, targets, *pooled).unflatten(0, (batch, rois))


class _Unpad(torch.autograd.Function):
    """The levels' padded (B, width, C, P, P) results merged into box order: (count, C, P, P), contiguous.

    `targets[l]` holds, for each of level l's B * width slots, its box's flat index b * R + r, or
    `count` (= B R) for padding. Forward copies each slot once into its row (padding onto a spare row
    past the end, dropped), in the memory order `_separable_pool` left it in; backward gathers each
    slot's gradient back in that order, padding slots taking row 0's rather than zeros (their weights
    are all zero, so none of it reaches the features). Neither pass is a scatter-add.
    """

    @staticmethod
    def forward(ctx, count: int, targets: list[torch.Tensor], *pooled: torch.Tensor) -> torch.Tensor:
        first = pooled[0]
        merged = first.new_empty((count + 1, *first.shape[2:]))
        ctx.layouts, ctx.widths = [], []
        for target, part in zip(targets, pooled, strict=True):
            # Copied in the part's own memory order (both sides permuted alike), not as (C, P, P).
            layout = [0, *sorted(range(1, 4), key=lambda axis: -part.stride(axis + 1))]
            merged.permute(layout).index_copy_(0, target, part.flatten(0, 1).permute(layout))
            ctx.layouts.append(layout)
            ctx.widths.append(part.shape[:2])
        ctx.save_for_backward(*(target.where(target < count, 0) for target in targets))
        return merged[:count]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grads = []
        for source, layout, width in zip(ctx.saved_tensors, ctx.layouts, ctx.widths, strict=True):
            # Gathered into the part's memory order, so the products' backward needs no copy.
            picked = grad.permute(layout).index_select(0, source)
            grads.append(picked.permute([layout.index(axis) for axis in range(4)]).unflatten(0, width))
        return None, None, *grads


def _bin_weights(start, end, scale: float, size: int, output_size: int, sampling_ratio: int) -> torch.Tensor:
    """(B, R, P, size) weights of each bin along one axis: its samples' bilinear weights, averaged.

    Feature coordinate u sits at continuous index u - 0.5 (pixel centres on integers), clamped to
    [0, size - 1] (samples beyond the map take the edge value); the weight of index j is then the
    linear-interpolation kernel max(0, 1 - |index - j|).
    """
    positions = _sample_positions(start, end, scale, output_size, sampling_ratio)
    positions = (positions - 0.5).clamp_(0, size - 1)
    grid = torch.arange(size, dtype=torch.float32, device=positions.device)
    taps = (positions[..., None] - grid).abs_().neg_().add_(1).clamp_(min=0)  # (B, R, P * s, size)
    taps = taps.unflatten(-2, (output_size, sampling_ratio))
    weights = taps[..., 0, :].clone()
    for sample in range(1, sampling_ratio):
        weights += taps[..., sample, :]
    return weights.div_(sampling_ratio)


def _separable_pool(features: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(B, R, C, P, P) = rows @ features @ cols^T per box and channel, as two batched matrix products.

    `features` is (B, C, H, W), `rows` (B, R, P, H) and `cols` (B, R, P, W). The longer axis is
    contracted first (per image, every box at once), so the second product (per box) is the cheaper.
    The result is a view of a (B, R, P_x, C, P_y) tensor, (B, R, P_y, C, P_x) when H > W: the layouts
    whose gradients flow back through both products without transposing copies.
    """
    batch, channels, height, width = features.shape
    rois, size = rows.shape[1:3]
    boxes = batch * rois
    if width >= height:
        # (B, R P_x, W) @ (B, W, C H) -> (B, R, P_x, C, H); per box, (P_x C, H) @ (H, P_y).
        first = cols.reshape(batch, rois * size, width) @ features.reshape(batch, channels * height, width).mT
        second = first.view(boxes, size * channels, height) @ rows.reshape(boxes, size, height).mT
        return second.view(batch, rois, size, channels, size).permute(0, 1, 3, 4, 2)
    # (B, R P_y, H) @ (B, H, C W) -> (B, R, P_y, C, W); per box, (P_y C, W) @ (W, P_x).
    flipped = features.mT.reshape(batch, channels * width, height)
    first = rows.reshape(batch, rois * size, height) @ flipped.mT
    second = first.view(boxes, size * channels, width) @ cols.reshape(boxes, size, width).mT
    return second.view(batch, rois, size, channels, size).permute(0, 1, 3, 2, 4)


def _sample_positions(start, end, scale, output_size: int, sampling_ratio: int) -> torch.Tensor:
    """(B, R, P * s) feature-space positions of the regular samples along one axis, bin-major."""
    step = torch.arange(output_size * sampling_ratio, dtype=torch.float32, device=start.device)
    # Bin p, sample i sits at (p + (i + 0.5) / s) / P of the box: with k = p * s + i, (k + 0.5) / (P s).
    fraction = (step + 0.5) / (output_size * sampling_ratio)
    start, end = start.float() * scale, end.float() * scale
    return start[..., None] + fraction * (end - start)[..., None]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Paste (N, M, M) mask probabilities into their (N, 4) boxes on an (N, height, width) canvas.

    Pixel (i, j) inside the box (its centre in [x1, x2) x [y1, y2)) reads the mask bilinearly at the
    matching position (mask pixel k covering [k, k + 1) of the box's M steps; nearest edge value past
    the outer mask centres); pixels outside get 0. Bilinear sampling on a grid is separable, so this is
    two batched matrix products with (N, height, M) and (N, M, width) weights instead of a grid_sample
    over every canvas pixel.
    """
    with float32(masks.device):
        size = masks.shape[-1]
        rows = _paste_weights(boxes[:, 1], boxes[:, 3], height, size)
        cols = _paste_weights(boxes[:, 0], boxes[:, 2], width, size)
        return rows @ masks.float() @ cols.transpose(1, 2)


def _paste_weights(start: torch.Tensor, end: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """(N, length, size) bilinear weights of each canvas pixel along one axis onto the mask's pixels."""
    centres = torch.arange(length, dtype=torch.float32, device=start.device) + 0.5
    start, end = start.float()[:, None], end.float()[:, None]
    relative = (centres - start) / (end - start).clamp_min(1e-6)
    inside = (relative >= 0) & (relative < 1)
    position = (relative * size - 0.5).clamp(0, size - 1)
    low = position.floor()
    upper_share = position - low
    low = low.long()
    high = (low + 1).clamp(max=size - 1)
    weights = (
        F.one_hot(low, size) * (1 - upper_share)[..., None] + F.one_hot(high, size) * upper_share[..., None]
    )
    return weights * inside[..., None]


def detections_to_scores(
    boxes: torch.Tensor,
    masks: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    valid: torch.Tensor,
    *,
    num_classes: int,
    size: tuple[int, int],
    mask_threshold: float,
    chunk: int = 16,
) -> torch.Tensor:
    """Per-class score maps (B, K, H, W) from (B, D) detections with (B, D, M, M) mask probabilities.

    Each mask is pasted into its box; its pixels at or above `mask_threshold` (the instance's binary
    mask) take detection score x mask probability, others 0; each class map is the maximum over that
    class's detections. Channel 0 (background, never detected) stays 0. Images are done `chunk` at a
    time so the (images, D, H, W) pasted stack stays small at eval batch sizes.
    """
    height, width = size
    batch, count = scores.shape
    out = torch.zeros(batch, num_classes, height, width, device=scores.device)
    if count == 0:
        return out
    with float32(scores.device):
        for start in range(0, batch, chunk):
            part = slice(start, start + chunk)
            pasted = paste_masks(masks[part].flatten(0, 1), boxes[part].flatten(0, 1), height, width)
            pasted = pasted.view(-1, count, height, width)
            weight = (scores[part].float() * valid[part])[..., None, None]
            value = torch.where(pasted >= mask_threshold, pasted * weight, 0.0)
            index = classes[part][..., None, None].expand_as(value)
            out[part].scatter_reduce_(1, index, value, reduce="amax")
        out[:, 0] = 0.0  # background is never detected (an invalid slot may carry class 0, value 0)
    return out
