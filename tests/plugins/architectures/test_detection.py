"""Detection parts: instances from masks, box coding, matching, NMS, RoIAlign and pasting.

NMS is checked against a brute-force greedy loop and RoIAlign against a direct NumPy implementation,
both written here from the definitions, on random inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins.architectures import detection
from plugins.architectures.detection import (
    batched_nms,
    box_iou,
    decode_boxes,
    detections_to_scores,
    encode_boxes,
    instances_from_mask,
    match_boxes,
    multilevel_roi_align,
    nms,
    paste_masks,
    roi_align,
    sample_balanced,
)

# --- instances -----------------------------------------------------------------------------------------


def test_each_connected_component_of_a_class_is_an_instance_with_its_box():
    mask = np.zeros((8, 12), dtype=np.uint8)
    mask[1:3, 1:4] = 4  # a rock: 2 x 3
    mask[5:8, 8:12] = 4  # another rock of the same class, apart
    mask[0:4, 6:10] = 2  # bedrock touching neither
    found = instances_from_mask(mask, min_area=1, max_instances=10)
    assert sorted(found.classes.tolist()) == [2, 4, 4]
    by_box = {tuple(box): cls for box, cls in zip(found.boxes.tolist(), found.classes.tolist(), strict=True)}
    assert by_box == {(1, 1, 4, 3): 4, (8, 5, 12, 8): 4, (6, 0, 10, 4): 2}
    for index, box in enumerate(found.boxes.astype(int)):
        x1, y1, x2, y2 = box
        pixels = found.components == index + 1
        assert (
            pixels.sum() == (mask[y1:y2, x1:x2] == found.classes[index]).sum() == pixels[y1:y2, x1:x2].sum()
        )


def test_components_are_eight_connected_and_background_is_never_an_instance():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 3  # a diagonal line: one 8-connected component
    found = instances_from_mask(mask, min_area=1, max_instances=10)
    assert found.classes.tolist() == [3]
    assert found.boxes.tolist() == [[1, 1, 4, 4]]
    assert (found.components > 0).sum() == 3


def test_tiny_components_are_dropped_and_the_cap_keeps_the_largest():
    mask = np.zeros((10, 20), dtype=np.uint8)
    mask[0, 0] = 1  # 1 pixel
    mask[3:5, 3:5] = 2  # 4 pixels
    mask[6:9, 10:13] = 3  # 9 pixels
    mask[0:2, 15:20] = 4  # 10 pixels
    assert sorted(instances_from_mask(mask, min_area=4, max_instances=10).classes.tolist()) == [2, 3, 4]
    capped = instances_from_mask(mask, min_area=1, max_instances=2)
    assert capped.classes.tolist() == [4, 3]  # largest first
    assert set(np.unique(capped.components).tolist()) == {0, 1, 2}


def test_a_mask_without_instances_gives_empty_arrays():
    specks = np.zeros((4, 8), dtype=np.uint8)
    specks[::2, ::2] = 1  # isolated pixels, even 8-connected
    for mask in (np.zeros((4, 8), dtype=np.uint8), specks):
        found = instances_from_mask(mask, min_area=2, max_instances=5)
        assert found.classes.shape == (0,) and found.boxes.shape == (0, 4)
        assert not found.components.any()


def test_random_noise_masks_give_few_instances():
    mask = np.random.default_rng(0).integers(0, 5, (64, 128)).astype(np.uint8)
    found = instances_from_mask(mask, min_area=8, max_instances=32)
    assert len(found.classes) <= 32 and (found.classes > 0).all()
    areas = np.bincount(found.components.ravel())[1:]
    assert (areas >= 8).all()


# --- anchors and box coding ----------------------------------------------------------------------------


def _random_boxes(count: int, seed: int, spread: float = 100.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * spread
    size = torch.rand(count, 2, generator=generator) * spread / 3 + 0.5
    return torch.cat([corner, corner + size], dim=1)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_encoding_round_trips(weights):
    reference, target = _random_boxes(50, 1), _random_boxes(50, 2)
    deltas = encode_boxes(reference, target, weights)
    assert torch.allclose(decode_boxes(reference, deltas, weights), target, atol=1e-3)
    assert torch.allclose(encode_boxes(target, target, weights), torch.zeros(50, 4), atol=1e-6)


def test_box_decoding_moves_and_scales_as_documented():
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    deltas = torch.tensor([[0.1, -0.5, math.log(2.0), 0.0]])
    assert torch.allclose(
        decode_boxes(reference, deltas, (1, 1, 1, 1)), torch.tensor([[-4.0, -10.0, 16.0, 10.0]])
    )
    huge = decode_boxes(reference, torch.tensor([[0.0, 0.0, 100.0, 100.0]]), (1, 1, 1, 1))
    assert torch.isfinite(huge).all()  # the scale cap keeps an untrained regressor finite


def test_box_iou_known_values():
    first = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    second = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(box_iou(first, second), expected)


def test_matching_labels_by_thresholds_and_keeps_each_truths_best():
    truth = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 52.0, 52.0], [0.0, 0.0, 0.0, 0.0]]])
    boxes = torch.tensor(
        [[[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 5.0], [30.0, 30.0, 40.0, 40.0], [49.0, 49.0, 53.0, 53.0]]]
    )
    valid = torch.tensor([[True, True, False]])
    matched, labels = match_boxes(box_iou(boxes, truth), valid, high=0.7, low=0.3, keep_best=False)
    assert labels.tolist() == [[1, -1, 0, 0]] and matched[0, 0] == 0
    matched, labels = match_boxes(box_iou(boxes, truth), valid, high=0.7, low=0.3, keep_best=True)
    assert labels.tolist() == [[1, -1, 0, 1]] and matched[0, 3] == 1  # the small truth's best box
    _, labels = match_boxes(box_iou(boxes, truth), torch.zeros_like(valid), high=0.7, low=0.3, keep_best=True)
    assert labels.tolist() == [[0, 0, 0, 0]]  # no truth: every box is a negative


def test_balanced_sampling_respects_the_fraction_and_puts_positives_first():
    torch.manual_seed(0)
    labels = torch.tensor([[1] * 30 + [0] * 50 + [-1] * 20, [1] * 2 + [0] * 3 + [-1] * 95])
    index, valid = sample_balanced(labels, count=16, positive_fraction=0.25)
    picked = labels.gather(1, index)
    assert picked[0].tolist() == [1] * 4 + [0] * 12 and valid[0].all()
    assert picked[1, :5].tolist() == [1, 1, 0, 0, 0] and valid[1].tolist() == [True] * 5 + [False] * 11
    assert len(set(index[0].tolist())) == 16  # no box twice
    index, valid = sample_balanced(labels[:, :8], count=16, positive_fraction=0.5)  # fewer boxes than slots
    assert index.max() < 8 and valid[0].sum() == 8


# --- NMS -----------------------------------------------------------------------------------------------


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, valid: np.ndarray) -> set[int]:
    def iou(a, b):
        overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
        return overlap / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(np.flatnonzero(valid), key=lambda i: (-scores[i], i)):
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return set(kept)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, threshold):
    boxes = _random_boxes(3 * 60, seed, spread=40.0).view(3, 60, 4)  # crowded: long suppression chains
    generator = torch.Generator().manual_seed(seed + 100)
    scores = torch.rand(3, 60, generator=generator)
    scores[:, :10] = scores[:, 10:20]  # ties
    valid = torch.rand(3, 60, generator=generator) > 0.2
    keep = nms(boxes, scores, threshold, valid)
    for image in range(3):
        expected = _greedy_nms(
            boxes[image].double().numpy(), scores[image].numpy(), threshold, valid[image].numpy()
        )
        assert set(torch.nonzero(keep[image]).flatten().tolist()) == expected


def test_nms_chunks_large_batches_the_same(monkeypatch):
    boxes, scores = _random_boxes(8 * 30, 5, spread=30.0).view(8, 30, 4), torch.rand(8, 30)
    whole = nms(boxes, scores, 0.5)
    monkeypatch.setattr(detection, "NMS_CHUNK_ELEMENTS", 30 * 30 * 3)  # 3 images per chunk
    assert torch.equal(nms(boxes, scores, 0.5), whole)


def test_batched_nms_suppresses_only_within_a_group():
    boxes = _random_boxes(80, 7, spread=30.0)
    scores, groups = torch.rand(80), torch.randint(1, 4, (80,))
    keep = batched_nms(boxes, scores, groups, 0.5)
    for group in range(1, 4):
        members = torch.nonzero(groups == group).flatten()
        expected = _greedy_nms(
            boxes[members].double().numpy(), scores[members].numpy(), 0.5, np.ones(len(members), bool)
        )
        assert set(torch.nonzero(keep[members]).flatten().tolist()) == expected


def test_nms_stays_in_float32_under_autocast():
    boxes, scores = _random_boxes(40, 3, spread=120.0), torch.rand(40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(nms(boxes, scores, 0.5), nms(boxes.double().float(), scores, 0.5))


# --- RoIAlign ------------------------------------------------------------------------------------------


def _bilinear(feature: np.ndarray, y: float, x: float) -> np.ndarray:
    height, width = feature.shape[-2:]
    y, x = min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    dy, dx = y - y0, x - x0
    return (
        feature[:, y0, x0] * (1 - dy) * (1 - dx)
        + feature[:, y0, x1] * (1 - dy) * dx
        + feature[:, y1, x0] * dy * (1 - dx)
        + feature[:, y1, x1] * dy * dx
    )


def _roi_align_reference(feature: np.ndarray, box, size: int, scale: float, ratio: int) -> np.ndarray:
    """RoIAlign from its definition: feature pixel j covers [j, j+1), samples at regular bin positions."""
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    bin_w, bin_h = (x2 - x1) / size, (y2 - y1) / size
    out = np.zeros((feature.shape[0], size, size))
    for row in range(size):
        for col in range(size):
            for i in range(ratio):
                for j in range(ratio):
                    y = y1 + (row + (i + 0.5) / ratio) * bin_h
                    x = x1 + (col + (j + 0.5) / ratio) * bin_w
                    out[:, row, col] += _bilinear(feature, y - 0.5, x - 0.5)
    return out / ratio**2


@pytest.mark.parametrize(("scale", "ratio"), [(1.0, 1), (0.25, 2), (0.125, 3)])
def test_roi_align_matches_numpy_reference(scale, ratio):
    generator = torch.Generator().manual_seed(int(ratio))
    features = torch.randn(2, 3, 9, 13, generator=generator)
    boxes = _random_boxes(2 * 5, ratio, spread=1 / scale * 12).view(2, 5, 4)
    boxes[0, 0] = torch.tensor([-3.0, -2.0, 5.0, 3.0]) / scale  # partly outside the map
    out = roi_align(features, boxes, output_size=4, spatial_scale=scale, sampling_ratio=ratio)
    assert out.shape == (2, 5, 3, 4, 4)
    for image in range(2):
        for roi in range(5):
            expected = _roi_align_reference(
                features[image].double().numpy(), boxes[image, roi], 4, scale, ratio
            )
            np.testing.assert_allclose(out[image, roi].numpy(), expected, atol=1e-5)


def test_roi_align_known_values_on_axis_aligned_boxes():
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    features = torch.stack([rows, cols, torch.ones_like(rows)])[None]  # value = pixel index: linear
    pixel = roi_align(features, torch.tensor([[[3.0, 2.0, 4.0, 3.0]]]), 1, 1.0, 2)
    assert torch.allclose(pixel[0, 0, :, 0, 0], torch.tensor([2.0, 3.0, 1.0]))  # exactly pixel (2, 3)
    # A 4x2 box from (2, 1): bilinear samples of a linear map average to the value at each bin centre.
    out = roi_align(features, torch.tensor([[[2.0, 1.0, 6.0, 3.0]]]), 2, 1.0, 2)[0, 0]
    assert torch.allclose(out[0], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))  # bin centres 1.5, 2.5 - 0.5
    assert torch.allclose(out[1], torch.tensor([[2.5, 4.5], [2.5, 4.5]]))  # bin centres 3, 5 - 0.5
    assert torch.allclose(out[2], torch.ones(2, 2))


def test_multilevel_roi_align_pools_each_box_from_its_level():
    generator = torch.Generator().manual_seed(3)
    levels = [torch.randn(2, 4, 16, 32, generator=generator), torch.randn(2, 4, 8, 16, generator=generator)]
    boxes = _random_boxes(2 * 6, 9, spread=60.0).view(2, 6, 4)
    assignment = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0]])
    out = multilevel_roi_align(levels, boxes, assignment, [1 / 4, 1 / 8], 3, 2)
    single = [
        roi_align(level, boxes, 3, scale, 2) for level, scale in zip(levels, [1 / 4, 1 / 8], strict=True)
    ]
    for image in range(2):
        for roi in range(6):
            expected = single[int(assignment[image, roi])][image, roi]
            assert torch.allclose(out[image, roi], expected, atol=1e-5)


def test_roi_align_passes_gradients_to_the_features_under_autocast():
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_align(features.to(torch.bfloat16), torch.tensor([[[1.0, 1.0, 6.0, 5.0]]]), 2, 1.0, 2)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def _grid_sample_multilevel_roi_align(features, boxes, levels, spatial_scales, output_size, sampling_ratio):
    """The former implementation, kept as a reference: levels packed into one atlas, one grid_sample.

    The levels are stacked vertically (zero-padded to the widest); each sample is clamped inside its own
    level's region, read bilinearly by `grid_sample`, and each bin's s x s samples are average-pooled.
    """
    widest = max(level.shape[-1] for level in features)
    atlas = torch.cat([F.pad(level.float(), (0, widest - level.shape[-1])) for level in features], dim=2)
    heights = torch.tensor([level.shape[-2] for level in features], dtype=torch.float32)
    widths = torch.tensor([level.shape[-1] for level in features], dtype=torch.float32)
    offsets = torch.cumsum(heights, dim=0) - heights
    scale = torch.tensor(spatial_scales, dtype=torch.float32)[levels]
    side = output_size * sampling_ratio
    fraction = (torch.arange(side, dtype=torch.float32) + 0.5) / side

    def positions(start, end):
        start, end = start.float() * scale, end.float() * scale
        return start[..., None] + fraction * (end - start)[..., None]

    xs = positions(boxes[..., 0], boxes[..., 2])
    ys = positions(boxes[..., 1], boxes[..., 3])
    xs = (xs - 0.5).clamp_min(0).minimum((widths[levels] - 1)[..., None])
    ys = (ys - 0.5).clamp_min(0).minimum((heights[levels] - 1)[..., None]) + offsets[levels][..., None]
    atlas_h, atlas_w = atlas.shape[-2:]
    gx, gy = (2 * xs + 1) / atlas_w - 1, (2 * ys + 1) / atlas_h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[..., None, :], gy[..., :, None]), dim=-1)
    batch, rois = boxes.shape[:2]
    samples = F.grid_sample(
        atlas, grid.reshape(batch, rois, side * side, 2), mode="bilinear", align_corners=False
    )
    channels = atlas.shape[1]
    bins = F.avg_pool2d(samples.view(batch, channels * rois, side, side), sampling_ratio)
    return bins.view(batch, channels, rois, output_size, output_size).permute(0, 2, 1, 3, 4)


FPN_SHAPES = [(16, 32), (8, 16), (4, 8), (2, 4)]


@pytest.mark.parametrize(
    ("shapes", "assign", "ratio"),
    [
        (FPN_SHAPES + [(5, 3)], "random", 1),  # mixed: the last level is taller than wide
        (FPN_SHAPES + [(5, 3)], "random", 2),
        (FPN_SHAPES + [(5, 3)], "random", 3),
        ([(w, h) for h, w in FPN_SHAPES], "random", 2),  # every level taller than wide
        (FPN_SHAPES, "one", 2),  # every box on one level
    ],
)
def test_multilevel_roi_align_matches_the_grid_sample_reference_with_gradients(shapes, assign, ratio):
    generator = torch.Generator().manual_seed(10 + ratio)
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 16][: len(shapes)]
    features = [torch.randn(3, 5, h, w, generator=generator, requires_grad=True) for h, w in shapes]
    boxes = _random_boxes(3 * 20, ratio, spread=140.0).view(3, 20, 4) - 10  # some past the top/left
    boxes[0, 0] = torch.tensor([-30.0, -20.0, 200.0, 90.0])  # beyond every edge
    boxes[0, 1] = torch.tensor([120.0, 50.0, 190.0, 80.0])  # entirely past the right and bottom
    boxes[1, 0] = torch.tensor([33.3, 17.1, 33.4, 17.15])  # tiny, inside one pixel
    boxes[1, 1] = torch.tensor([40.0, 20.0, 40.0, 20.0])  # empty
    boxes[2, 0] = torch.tensor([8.0, 8.0, 3.0, 2.0])  # inverted
    if assign == "random":
        levels = torch.randint(0, len(shapes), (3, 20), generator=generator)
    else:
        levels = torch.ones(3, 20, dtype=torch.long)
    out = multilevel_roi_align(features, boxes, levels, scales, 4, ratio)
    expected = _grid_sample_multilevel_roi_align(features, boxes, levels, scales, 4, ratio)
    assert out.shape == expected.shape == (3, 20, 5, 4, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn(out.shape, generator=generator)
    grads = torch.autograd.grad((out * weights).sum(), features, allow_unused=True)
    expected_grads = torch.autograd.grad((expected * weights).sum(), features)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        if grad is None:  # a level with no box: the reference's gradient is zero there
            assert not expected_grad.any()
        else:
            torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_multilevel_roi_align_takes_no_box_gradient_and_handles_no_boxes():
    features = [torch.randn(2, 3, 8, 16, requires_grad=True), torch.randn(2, 3, 4, 8, requires_grad=True)]
    boxes = torch.tensor([[[1.0, 2.0, 20.0, 18.0]], [[0.0, 0.0, 40.0, 30.0]]], requires_grad=True)
    out = multilevel_roi_align(features, boxes, torch.tensor([[0], [1]]), [1 / 4, 1 / 8], 3, 2)
    out.sum().backward()
    assert boxes.grad is None
    assert features[0].grad.abs().sum() > 0 and features[1].grad.abs().sum() > 0
    empty = multilevel_roi_align(features, boxes[:, :0], torch.zeros(2, 0, dtype=torch.long), [1, 1], 3, 2)
    assert empty.shape == (2, 0, 3, 3, 3)


# --- pasting -------------------------------------------------------------------------------------------


def test_a_full_mask_pastes_exactly_onto_its_box():
    boxes = torch.tensor([[2.0, 1.0, 7.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
    pasted = paste_masks(torch.ones(2, 28, 28), boxes, 6, 10)
    expected = torch.zeros(2, 6, 10)
    expected[0, 1:4, 2:7] = 1
    expected[1, 0, 0] = 1
    assert torch.allclose(pasted, expected)


def test_pasting_inverts_roi_align_on_a_blob():
    mask = torch.zeros(32, 48)
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
    mask[((rows - 15) / 10) ** 2 + ((cols - 20) / 14) ** 2 <= 1] = 1
    box = torch.tensor([[6.0, 5.0, 35.0, 26.0]])
    cut = roi_align(mask[None, None], box[None], 28, 1.0, 2)[0, 0, 0]
    back = paste_masks(cut[None], box, 32, 48)[0] >= 0.5
    intersection = (back & (mask > 0)).sum()
    union = (back | (mask > 0)).sum()
    assert intersection / union > 0.95


def test_detection_scores_take_the_per_class_maximum_inside_each_binary_mask():
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [2.0, 0.0, 8.0, 4.0], [0.0, 0.0, 8.0, 4.0]]])
    masks = torch.ones(1, 3, 28, 28)
    masks[0, 1, :, :14] = 0.3  # the left half of detection 1 is below the mask threshold
    scores, classes = torch.tensor([[0.9, 0.6, 0.99]]), torch.tensor([[4, 2, 4]])
    valid = torch.tensor([[True, True, False]])  # the third is padding: ignored
    out = detections_to_scores(
        boxes, masks, scores, classes, valid, num_classes=5, size=(4, 8), mask_threshold=0.5
    )
    assert out.shape == (1, 5, 4, 8)
    assert torch.allclose(out[0, 4, :, :4], torch.full((4, 4), 0.9)) and not out[0, 4, :, 4:].any()
    assert torch.allclose(out[0, 2, :, 5:], torch.full((4, 3), 0.6)) and not out[0, 2, :, :5].any()
    assert not out[0, [0, 1, 3]].any()
