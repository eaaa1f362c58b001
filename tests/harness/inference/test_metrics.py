import json
import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from harness.inference.metrics import (
    ConfusionMatrix,
    SegmentationMetrics,
    confusion_matrix,
    metrics_from_confusion,
    per_image_confusion,
)

# Truth (0 = background) and prediction for the hand-computed case; K = 4.
#   kept pixels (truth, pred): (1,1) (1,2) (2,2) (2,0) (3,3); the (0,1) pixel is dropped.
#   class 0: TP 0 FP 1 FN 0 -> IoU 0,   Dice 0
#   class 1: TP 1 FP 0 FN 1 -> IoU 1/2, Dice 2/3
#   class 2: TP 1 FP 1 FN 1 -> IoU 1/3, Dice 1/2
#   class 3: TP 1 FP 0 FN 0 -> IoU 1,   Dice 1
HAND_TARGET = torch.tensor([[0, 1, 1], [2, 2, 3]])
HAND_PREDS = torch.tensor([[1, 1, 2], [2, 0, 3]])


def _random_masks(seed: int, shape=(3, 16, 20), k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, shape, generator=g)
    # Mostly-right predictions, so that IoUs are neither all ~0 nor all 1.
    noise = torch.randint(0, k, shape, generator=g)
    preds = torch.where(torch.rand(shape, generator=g) < 0.6, target, noise)
    return preds, target


def test_hand_computed_matrix_and_metrics():
    m = confusion_matrix(HAND_PREDS, HAND_TARGET, 4)
    expected = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1]])
    assert torch.equal(m, expected)
    assert m.dtype == torch.int64

    r = metrics_from_confusion(m)
    assert r.iou == pytest.approx((0.0, 1 / 2, 1 / 3, 1.0))
    assert r.dice == pytest.approx((0.0, 2 / 3, 1 / 2, 1.0))
    assert r.miou_an2dl == pytest.approx(11 / 24)
    assert r.miou_fg == pytest.approx(11 / 18)
    assert r.pixel_accuracy == pytest.approx(3 / 5)
    assert r.num_pixels == 5
    assert r.miou("an2dl") == r.miou_an2dl
    assert r.miou("fg") == r.miou_fg


def test_predicting_background_on_terrain_costs_a_whole_class():
    target = torch.tensor([[1, 1, 2], [2, 3, 3]])
    preds = torch.tensor([[1, 1, 2], [2, 3, 0]])
    r = metrics_from_confusion(confusion_matrix(preds, target, 4))
    # IoU 1, 1, 1/2 on terrain; class 0 enters the mean with TP 0, FP 1.
    assert r.iou == pytest.approx((0.0, 1.0, 1.0, 0.5))
    assert r.miou_an2dl == pytest.approx(0.625)
    assert r.miou_fg == pytest.approx(2.5 / 3)
    assert r.miou_an2dl < r.miou_fg

    # The same error against a terrain class keeps class 0 undefined, so both means agree.
    wrong_terrain = torch.tensor([[1, 1, 2], [2, 3, 1]])
    r2 = metrics_from_confusion(confusion_matrix(wrong_terrain, target, 4))
    assert math.isnan(r2.iou[0])
    assert r2.miou_an2dl == pytest.approx(13 / 18)
    assert r2.miou_fg == pytest.approx(13 / 18)


def test_background_truth_never_counts_whatever_is_predicted():
    preds, target = _random_masks(0)
    target[:, :8] = 0
    reference = confusion_matrix(preds, target, 5)
    assert reference[0].sum() == 0
    for seed in range(3):
        other = preds.clone()
        g = torch.Generator().manual_seed(seed)
        other[:, :8] = torch.randint(0, 5, other[:, :8].shape, generator=g)
        assert torch.equal(confusion_matrix(other, target, 5), reference)
    assert confusion_matrix(preds, torch.zeros_like(target), 5).sum() == 0


def test_absent_class_is_left_out_of_the_means():
    target = torch.tensor([[0, 1, 2], [3, 3, 1]])
    r = metrics_from_confusion(confusion_matrix(target.clone(), target, 5))
    # Class 4 is in neither mask and class 0 is never predicted: both NaN, neither counted.
    assert math.isnan(r.iou[4]) and math.isnan(r.dice[4]) and math.isnan(r.iou[0])
    assert r.iou[1:4] == (1.0, 1.0, 1.0)
    assert r.miou_fg == 1.0
    assert r.miou_an2dl == 1.0


def test_nothing_counted_gives_nan_and_json_none():
    r = metrics_from_confusion(
        confusion_matrix(torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 3)
    )
    assert math.isnan(r.miou_an2dl) and math.isnan(r.miou_fg) and math.isnan(r.pixel_accuracy)
    assert r.num_pixels == 0
    d = r.to_dict()
    assert d["miou_an2dl"] is None and d["iou"] == {"0": None, "1": None, "2": None}
    json.dumps(d, allow_nan=False)


def test_to_dict_names_and_nan():
    r = metrics_from_confusion(confusion_matrix(HAND_PREDS, HAND_TARGET, 5))
    d = r.to_dict(["bg", "soil", "bedrock", "sand", "rock"])
    assert set(d) >= {"miou_an2dl", "miou_fg", "pixel_accuracy", "iou", "dice"}
    assert d["iou"]["bedrock"] == pytest.approx(1 / 3)
    assert d["iou"]["rock"] is None and d["dice"]["rock"] is None
    assert d["miou_fg"] == pytest.approx(11 / 18)
    json.dumps(d, allow_nan=False)
    assert list(r.to_dict()["iou"]) == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="class names"):
        r.to_dict(["a", "b"])


def test_unknown_miou_kind():
    r = metrics_from_confusion(confusion_matrix(HAND_PREDS, HAND_TARGET, 4))
    with pytest.raises(ValueError, match="kind"):
        r.miou("macro")


def test_metrics_from_confusion_drops_ignored_row():
    full = confusion_matrix(HAND_PREDS, HAND_TARGET, 4, ignore_index=None)
    assert full[0].sum() == 1
    assert metrics_from_confusion(full) == metrics_from_confusion(
        confusion_matrix(HAND_PREDS, HAND_TARGET, 4)
    )


def test_accumulation_equals_one_shot():
    batches = [_random_masks(seed, shape=(2, 8, 9)) for seed in range(4)]
    cm = ConfusionMatrix(5)
    assert torch.equal(cm.matrix, torch.zeros(5, 5, dtype=torch.int64))
    for preds, target in batches:
        cm.update(preds, target)
    all_preds = torch.cat([p for p, _ in batches])
    all_target = torch.cat([t for _, t in batches])
    one_shot = confusion_matrix(all_preds, all_target, 5)
    assert torch.equal(cm.matrix, one_shot)
    assert cm.compute() == metrics_from_confusion(one_shot)

    cm.reset()
    assert cm.matrix.sum() == 0
    cm.update(*batches[0])
    assert torch.equal(cm.matrix, confusion_matrix(*batches[0], 5))


def test_matrix_is_a_snapshot():
    cm = ConfusionMatrix(4)
    cm.update(HAND_PREDS, HAND_TARGET)
    before = cm.matrix
    cm.update(HAND_PREDS, HAND_TARGET)
    assert before.sum() == 5 and cm.matrix.sum() == 10


def test_per_image_confusion_sums_to_the_whole():
    preds, target = _random_masks(7, shape=(4, 10, 11))
    per = per_image_confusion(preds, target, 5)
    assert per.shape == (4, 5, 5) and per.dtype == torch.int64
    assert torch.equal(per.sum(0), confusion_matrix(preds, target, 5))
    for i in range(4):
        assert torch.equal(per[i], confusion_matrix(preds[i], target[i], 5))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_agrees_with_torchmetrics(seed):
    k = 6
    preds, target = _random_masks(seed, shape=(2, 24, 24), k=k)
    if seed % 2:
        # Leave one class out of both masks so that the undefined case is exercised too.
        target[target == 5] = 1
        preds[preds == 5] = 2
    tm_iou = MulticlassJaccardIndex(num_classes=k, average="none", ignore_index=0)(preds, target).double()
    tm_macro = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=0)(preds, target)
    r = metrics_from_confusion(confusion_matrix(preds, target, k))

    ours = torch.tensor(r.iou, dtype=torch.float64)
    defined = ~ours.isnan()
    assert defined[1:].sum() >= k - 2
    # torchmetrics returns 0 (its zero_division) where TP+FP+FN == 0; elsewhere the two must agree.
    assert torch.allclose(ours[defined], tm_iou[defined], atol=1e-6)
    assert torch.all(tm_iou[~defined] == 0)
    assert r.miou_fg == pytest.approx(float(ours[1:][defined[1:]].mean()))
    assert r.miou_fg == pytest.approx(float(tm_macro), abs=1e-6)


def test_ignore_index_none_counts_everything():
    m = confusion_matrix(HAND_PREDS, HAND_TARGET, 4, ignore_index=None)
    r = metrics_from_confusion(m, ignore_index=None)
    # The background pixel (truth 0, pred 1) now counts: IoU 0, 1/3, 1/3, 1.
    assert r.iou == pytest.approx((0.0, 1 / 3, 1 / 3, 1.0))
    assert r.miou_an2dl == pytest.approx(5 / 12)
    assert r.miou_fg == r.miou_an2dl
    assert r.pixel_accuracy == pytest.approx(0.5)
    assert r.num_pixels == 6

    preds, target = _random_masks(11, k=4)
    r = metrics_from_confusion(confusion_matrix(preds, target, 4, ignore_index=None), ignore_index=None)
    tm = MulticlassJaccardIndex(num_classes=4, average="macro", ignore_index=None)(preds, target)
    assert r.miou_an2dl == r.miou_fg == pytest.approx(float(tm), abs=1e-6)

    cm = ConfusionMatrix(4, ignore_index=None)
    cm.update(preds, target)
    assert cm.compute().num_pixels == target.numel()


def test_ignore_index_outside_class_range():
    target = HAND_TARGET.clone()
    target[0, 0] = 255
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(HAND_PREDS, target)
    r = cm.compute()
    assert r.num_pixels == 5
    # No class is excluded, so the two means coincide.
    assert r.miou_fg == r.miou_an2dl == pytest.approx(11 / 24)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_bhw_integer_dtypes(dtype):
    preds, target = _random_masks(3, shape=(2, 5, 7))
    expected = confusion_matrix(preds, target, 5)
    assert torch.equal(confusion_matrix(preds.to(dtype), target.to(dtype), 5), expected)
    assert torch.equal(per_image_confusion(preds.to(dtype), target.to(dtype), 5).sum(0), expected)
    cm = ConfusionMatrix(5)
    cm.update(preds.to(dtype), target.to(dtype))
    assert torch.equal(cm.matrix, expected)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 4, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="shapes differ"):
        per_image_confusion(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="shapes differ"):
        ConfusionMatrix(3).update(torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class labels"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_out_of_range_labels_are_reported():
    preds = HAND_PREDS.clone()
    preds[1, 2] = 7
    # The bad pixel is not counted anywhere...
    assert confusion_matrix(preds, HAND_TARGET, 4).sum() == 4
    cm = ConfusionMatrix(4)
    cm.update(preds, HAND_TARGET)
    # ...and the accumulator refuses to report a score built on it.
    with pytest.raises(ValueError, match="outside"):
        cm.compute()

    target = HAND_TARGET.clone()
    target[0, 1] = -1
    cm = ConfusionMatrix(4)
    cm.update(HAND_PREDS, target)
    with pytest.raises(ValueError, match="1 pixels"):
        cm.compute()


def test_metrics_is_frozen():
    r = metrics_from_confusion(confusion_matrix(HAND_PREDS, HAND_TARGET, 4))
    assert isinstance(r, SegmentationMetrics)
    with pytest.raises(AttributeError):
        r.miou_fg = 0.0  # type: ignore[misc]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_update_does_not_sync():
    preds, target = (x.cuda() for x in _random_masks(5))
    cm = ConfusionMatrix(5)
    cm.update(preds, target)  # the first update allocates; keep it outside the checked region
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        cm.update(preds, target)
        per = per_image_confusion(preds, target, 5)
        one = confusion_matrix(preds, target, 5)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert cm.matrix.device.type == "cuda"
    assert torch.equal(cm.matrix.cpu(), 2 * one.cpu())
    assert torch.equal(per.sum(0).cpu(), one.cpu())
    assert torch.equal(one.cpu(), confusion_matrix(preds.cpu(), target.cpu(), 5))
