"""Inference shared by validation, evaluate and predict: normalise, pad, forward, argmax without the ignored
class, and score against a numpy reference of the challenge metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.inference.scoring import (
    Normalisation,
    forward_logits,
    pad_masks,
    pad_to_multiple,
    predict_masks,
    score,
    to_classes,
)

CPU = torch.device("cpu")
K = 4


class NeedsMultiple(nn.Module):
    """A per-pixel linear map of the input to K logits that refuses sizes not divisible by 8."""

    def __init__(self, multiple: int = 8):
        super().__init__()
        self.multiple = multiple
        self.conv = nn.Conv2d(1, K, 1)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of {self.multiple}")
        return self.conv(x)


def test_normalisation_of_and_apply():
    images = torch.tensor([[[0, 100], [200, 100]]], dtype=torch.uint8)
    norm = Normalisation.of(images)
    assert norm.mean == pytest.approx(100.0)
    assert norm.std == pytest.approx(float(torch.tensor([0.0, 100, 200, 100]).std()))
    x = norm.apply(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], (images[0].float() - norm.mean) / norm.std)
    assert norm.apply(torch.ones(3, 4, 4, dtype=torch.uint8), channels_last=True).is_contiguous(
        memory_format=torch.channels_last
    )


def test_normalisation_of_constant_images_never_divides_by_zero():
    assert Normalisation.of(torch.full((2, 3, 3), 7, dtype=torch.uint8)).std == 1.0


@pytest.mark.parametrize(("height", "width"), [(64, 128), (61, 125), (3, 5)])
def test_pad_to_multiple_pads_up_and_returns_the_crop(height, width):
    x = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)
    padded, crop = pad_to_multiple(x, 8)
    assert crop == (height, width)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - height < 8 and padded.shape[-1] - width < 8
    assert torch.equal(padded[..., :height, :width], x)  # the original sits top-left, untouched


def test_pad_masks_pads_like_the_images_with_the_ignored_class():
    masks = torch.randint(1, 5, (2, 80, 120))
    padded = pad_masks(masks, 32, fill=0)
    assert padded.shape == (2, 96, 128) and padded.dtype == masks.dtype
    assert torch.equal(padded[:, :80, :120], masks)
    assert not padded[:, 80:].any() and not padded[:, :, 120:].any()
    assert pad_masks(masks, 32, fill=None)[:, 80:].eq(0).all()
    assert (pad_masks(masks, 32, fill=7)[:, :, 120:] == 7).all()
    assert pad_masks(masks, 40, fill=0) is masks  # already a multiple: untouched


def test_pad_to_multiple_reflects_when_it_can():
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]]).expand(1, 1, 4, 3)
    padded, _ = pad_to_multiple(x, 4)
    assert padded[0, 0, 0].tolist() == [1.0, 2.0, 3.0, 2.0]  # reflect, not zeros or replicate


def test_forward_logits_pads_then_crops_back():
    model = NeedsMultiple()
    x = torch.randn(2, 1, 61, 125)
    out = forward_logits(model, x, 8)
    assert out.shape == (2, K, 61, 125)
    with pytest.raises(ValueError):
        model(x)  # without the padding the model refuses the size
    # A 1x1 conv is per-pixel, so the crop equals the model on the unpadded pixels.
    assert torch.allclose(out, model.conv(x), atol=1e-6)


def test_forward_logits_crops_every_deep_supervision_output():
    class Heads(NeedsMultiple):
        def forward(self, x):
            out = super().forward(x)
            return [out, out * 2]

    outs = forward_logits(Heads(), torch.randn(1, 1, 30, 30), 8)
    assert isinstance(outs, list) and [tuple(o.shape) for o in outs] == [(1, K, 30, 30)] * 2


def test_to_classes_never_predicts_the_ignored_class():
    logits = torch.zeros(2, K, 3, 3)
    logits[:, 0] = 100.0  # background wins every pixel by far
    logits[:, 2] = 1.0
    assert to_classes(logits, 0).unique().tolist() == [2]
    assert to_classes(logits, None).unique().tolist() == [0]
    assert logits[:, 0].eq(100.0).all()  # the caller's logits are not modified


def _reference_miou(preds: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int) -> tuple:
    """The AN2DL metric written out in numpy: one confusion matrix over all non-ignored pixels."""
    keep = truth != ignore
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth[keep], preds[keep]), 1)
    tp = np.diag(matrix)
    denom = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return matrix, float(np.nanmean(iou)), float(np.nanmean(np.delete(iou, ignore)))


def test_score_matches_a_numpy_reference_and_predict_masks():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (5, 20, 36), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, K, (5, 20, 36), generator=generator, dtype=torch.uint8)
    model = NeedsMultiple().eval()
    norm = Normalisation.of(images)
    common = {"norm": norm, "multiple": 8, "ignore_index": 0, "device": CPU, "batch_size": 2}
    preds = predict_masks(model, images, **common)
    assert preds.shape == images.shape and preds.dtype == torch.uint8
    assert 0 not in preds.unique().tolist()
    with torch.no_grad():
        expected = to_classes(model.conv(norm.apply(images)), 0)
    assert torch.equal(preds, expected.to(torch.uint8))

    metrics, loss, per_image = score(model, images, masks, num_classes=K, per_image=True, **common)
    matrix, miou, miou_fg = _reference_miou(preds.numpy(), masks.numpy(), K, 0)
    assert metrics.miou_an2dl == pytest.approx(miou) and metrics.miou_fg == pytest.approx(miou_fg)
    assert metrics.num_pixels == int((masks != 0).sum())
    assert loss is None
    assert per_image.shape == (5, K, K) and np.array_equal(per_image.sum(0).numpy(), matrix)


def test_score_mean_loss_is_per_image_weighted_across_uneven_batches():
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (5, 8, 8), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, K, (5, 8, 8), generator=generator, dtype=torch.uint8)
    model = NeedsMultiple().eval()
    norm = Normalisation.of(images)
    loss_fn = nn.CrossEntropyLoss()
    _, loss, _ = score(
        model, images, masks, norm=norm, multiple=8, num_classes=K, ignore_index=0, device=CPU,
        batch_size=2, loss_fn=loss_fn,
    )  # fmt: skip
    with torch.no_grad():
        whole = loss_fn(model.conv(norm.apply(images)), masks.long())
    assert loss == pytest.approx(float(whole), rel=1e-5)


def test_predict_masks_of_no_images_is_an_empty_mask_stack():
    empty = torch.empty(0, 16, 24, dtype=torch.uint8)
    out = predict_masks(
        NeedsMultiple(), empty, norm=Normalisation(0.0, 1.0), multiple=8, ignore_index=0, device=CPU
    )
    assert out.shape == (0, 16, 24) and out.dtype == torch.uint8
