"""Dice loss: closed-form cases, MONAI's DiceLoss as a reference, ignored pixels, gradients."""

from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from plugins.losses import dice

SPEC = dice.harness_losses()[0]


def _loss(num_classes=5, ignore_index=0, weights=None, **params):
    parsed = SPEC.parse_params(params)
    return SPEC.build(parsed, num_classes=num_classes, ignore_index=ignore_index, class_weights=weights)


def _inputs(seed=0, low=0, shape=(2, 5, 16, 32)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator) * 2
    target = torch.randint(low, shape[1], (shape[0], *shape[2:]), generator=generator)
    return logits, target


def _one_hot_logits(target, num_classes=5, scale=50.0):
    return torch.nn.functional.one_hot(target, num_classes).movedim(-1, 1).float() * scale


def test_defaults():
    defaults = {"smooth": 1.0, "squared": False, "classes": None, "batch": True}
    assert SPEC.parse_params().model_dump() == defaults


@pytest.mark.parametrize("params", [{}, {"squared": True}, {"batch": False}, {"smooth": 1e-5}])
def test_perfect_prediction_is_zero(params):
    _, target = _inputs()
    assert _loss(**params)(_one_hot_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("squared", [False, True])
def test_uniform_logits_closed_form(squared):
    _, target = _inputs()
    valid = target != 0
    total = valid.sum().item()
    expected = []
    for c in range(1, 5):
        count = (target == c).sum().item()
        predicted = total / (25 if squared else 5)  # every counted pixel has p_c = 1/5
        expected.append(1 - (2 * count / 5 + 1) / (predicted + count + 1))
    value = _loss(squared=squared)(torch.zeros(2, 5, 16, 32), target)
    assert value.item() == pytest.approx(sum(expected) / 4, rel=1e-5)


@pytest.mark.parametrize(
    ("squared", "dice_0", "dice_1"),
    # p = (0.75, 0.25) on a class-0 pixel and (0.5, 0.5) on a class-1 pixel, smooth 1:
    # class 0: I = 0.75, sum p = 1.25 (squared: 0.8125), sum g = 1; class 1: I = 0.5, sum p = 0.75 (0.3125).
    [(False, 2.5 / 3.25, 2 / 2.75), (True, 2.5 / 2.8125, 2 / 2.3125)],
)
def test_two_pixel_hand_case(squared, dice_0, dice_1):
    logits = torch.tensor([[[[3.0, 1.0]], [[1.0, 1.0]]]]).log()  # (1, K=2, 1, 2), class-major
    target = torch.tensor([[[0, 1]]])
    value = _loss(num_classes=2, ignore_index=None, squared=squared)(logits, target)
    assert value.item() == pytest.approx(1 - (dice_0 + dice_1) / 2, rel=1e-6)


# The definitions meet when no pixel is ignored: MONAI's smooth_nr = smooth_dr = our smooth,
# squared_pred = squared, batch = batch, and include_background=False is our default class set
# with ignore_index=0 (target drawn from 1..4), include_background=True ours with ignore_index=None.
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("ignore_index", [0, None])
def test_matches_monai_without_ignored_pixels(squared, batch, ignore_index):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _inputs(seed=1, low=0 if ignore_index is None else 1)
    reference = monai_losses.DiceLoss(
        softmax=True,
        to_onehot_y=True,
        include_background=ignore_index is None,
        squared_pred=squared,
        smooth_nr=0.5,
        smooth_dr=0.5,
        batch=batch,
    )(logits, target.unsqueeze(1))
    ours = _loss(ignore_index=ignore_index, smooth=0.5, squared=squared, batch=batch)(logits, target)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_matches_monai_with_ignored_pixels():
    # MONAI's own ignore_index zeroes ignored pixels in both tensors, as we do (batch-wise sums only:
    # per image, MONAI would also count a fully ignored image as a 0).
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _inputs(seed=2)
    reference = monai_losses.DiceLoss(
        softmax=True,
        to_onehot_y=True,
        include_background=False,
        smooth_nr=1.0,
        smooth_dr=1.0,
        batch=True,
        ignore_index=0,
    )(logits, target.unsqueeze(1))
    assert _loss()(logits, target).item() == pytest.approx(reference.item(), rel=1e-5)


def test_class_subset_matches_monai_channels():
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _inputs(seed=3, low=1)
    per_class = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, smooth_nr=1.0, smooth_dr=1.0, batch=True, reduction="none"
    )(logits, target.unsqueeze(1)).flatten()
    ours = _loss(classes=[3, 1])(logits, target)
    assert ours.item() == pytest.approx(per_class[[1, 3]].mean().item(), rel=1e-5)


def test_class_weights_give_a_weighted_mean_of_class_terms():
    logits, target = _inputs(seed=4)
    weights = torch.tensor([9.0, 1.0, 0.0, 2.0, 5.0])  # class 0 is ignored: its weight must not count
    terms = [_loss(classes=[c])(logits, target) for c in (1, 2, 3, 4)]
    expected = (terms[0] * 1 + terms[2] * 2 + terms[3] * 5) / 8
    assert _loss(weights=weights)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("params", [{}, {"batch": False, "squared": True}])
def test_ignored_pixels_are_as_if_cropped_away(params):
    logits, target = _inputs(seed=5)
    cropped = _loss(**params)(logits[..., :20], target[..., :20])
    target[..., 20:] = 0
    logits[..., 20:] = 1e4 * torch.randn_like(logits[..., 20:])
    assert _loss(**params)(logits, target).item() == pytest.approx(cropped.item(), rel=1e-6)


def test_per_image_mean_skips_a_fully_ignored_image():
    logits, target = _inputs(seed=6)
    alone = _loss(batch=False)(logits[:1], target[:1])
    target[1] = 0
    assert _loss(batch=False)(logits, target).item() == pytest.approx(alone.item(), rel=1e-6)


@pytest.mark.parametrize("params", [{}, {"batch": False}, {"squared": True}])
def test_gradients_when_all_ignored_or_a_class_absent(params):
    logits, target = _inputs(seed=7)
    logits.requires_grad_(True)
    value = _loss(**params)(logits, torch.zeros_like(target))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    logits.grad = None
    target[target == 4] = 2
    _loss(**params)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_computes_in_float32_under_bf16():
    logits, target = _inputs(seed=8)
    low = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _loss()(low, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_loss()(low.float(), target).item(), rel=1e-6)


@pytest.mark.parametrize(("classes", "message"), [([1, 5], "out of range"), ([0, 2], "ignored class")])
def test_bad_classes_are_config_errors(classes, message):
    with pytest.raises(ConfigError, match=message):
        _loss(classes=classes)
