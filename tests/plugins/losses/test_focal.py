"""Focal loss: closed-form cases, MONAI's FocalLoss and cross-entropy as references, ignored pixels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from plugins.losses import focal

SPEC = focal.harness_losses()[0]


def _loss(num_classes=5, ignore_index=0, weights=None, **params):
    parsed = SPEC.parse_params(params)
    return SPEC.build(parsed, num_classes=num_classes, ignore_index=ignore_index, class_weights=weights)


def _inputs(seed=0, shape=(2, 5, 16, 32)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator) * 2
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    return logits, target


def test_defaults():
    assert SPEC.parse_params().model_dump() == {"gamma": 2.0, "alpha": None}


def test_perfect_prediction_is_zero():
    _, target = _inputs()
    logits = F.one_hot(target, 5).movedim(-1, 1).float() * 30
    assert _loss()(logits, target).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_uniform_logits_closed_form(gamma):
    _, target = _inputs()
    value = _loss(gamma=gamma)(torch.zeros(2, 5, 16, 32), target)
    assert value.item() == pytest.approx((1 - 1 / 5) ** gamma * math.log(5), rel=1e-6)


def test_two_pixel_hand_case():
    # Pixel 1: class 0 with p_t = 0.75; pixel 2: class 1 with p_t = 0.5; alpha = (2, 3), gamma = 2.
    logits = torch.tensor([[[[3.0, 1.0]], [[1.0, 1.0]]]]).log()  # (1, K=2, 1, 2), class-major
    target = torch.tensor([[[0, 1]]])
    expected = (2 * 0.25**2 * -math.log(0.75) + 3 * 0.5**2 * -math.log(0.5)) / 2
    value = _loss(num_classes=2, ignore_index=None, alpha=[2.0, 3.0])(logits, target)
    assert value.item() == pytest.approx(expected, rel=1e-6)


# The definitions meet with include_background=True (MONAI's softmax then spans every class; with
# False it would drop channel 0 before the softmax) and no ignored pixels. MONAI's "mean" divides by
# B*K*H*W although only the true class's channel is non-zero, so ours equals K times it; alpha as a
# list is a per-class factor on the true class in both.
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, [0.1, 0.2, 0.3, 0.4, 2.0]])
def test_matches_monai_without_ignored_pixels(gamma, alpha):
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _inputs(seed=1)
    reference = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=gamma, alpha=alpha)(
        logits, target.unsqueeze(1)
    )
    ours = _loss(ignore_index=None, gamma=gamma, alpha=alpha)(logits, target)
    assert ours.item() == pytest.approx(5 * reference.item(), rel=1e-5)


def test_matches_monai_with_ignored_pixels():
    # With ignore_index MONAI divides by the counted pixels instead, so no factor K is left.
    monai_losses = pytest.importorskip("monai.losses")
    logits, target = _inputs(seed=2)
    reference = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, ignore_index=0)(
        logits, target.unsqueeze(1)
    )
    assert _loss()(logits, target).item() == pytest.approx(reference.item(), rel=1e-5)


def test_gamma_zero_is_cross_entropy():
    logits, target = _inputs(seed=3)
    expected = F.cross_entropy(logits, target, ignore_index=0)
    assert _loss(gamma=0.0)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weights_act_as_alpha_and_alpha_overrides_them():
    logits, target = _inputs(seed=4)
    weights = torch.tensor([0.0, 1.0, 2.0, 1.0, 4.0])
    as_alpha = _loss(alpha=weights.tolist())(logits, target)
    assert _loss(weights=weights)(logits, target).item() == pytest.approx(as_alpha.item(), rel=1e-6)
    assert _loss(weights=weights, alpha=[1.0] * 5)(logits, target).item() == pytest.approx(
        _loss()(logits, target).item(), rel=1e-6
    )
    assert as_alpha.item() != pytest.approx(_loss()(logits, target).item(), rel=1e-3)


def test_ignored_pixels_are_as_if_cropped_away():
    logits, target = _inputs(seed=5)
    cropped = _loss()(logits[..., :20], target[..., :20])
    target[..., 20:] = 0
    logits[..., 20:] = 1e4 * torch.randn_like(logits[..., 20:])
    assert _loss()(logits, target).item() == pytest.approx(cropped.item(), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradients_when_all_ignored_saturated_or_a_class_absent(gamma):
    logits, target = _inputs(seed=6)
    logits.requires_grad_(True)
    value = _loss(gamma=gamma)(logits, torch.zeros_like(target))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    # p_t == 1 exactly in float32, where d/dx x**gamma is infinite for gamma < 1.
    saturated = (F.one_hot(target, 5).movedim(-1, 1).float() * 200).requires_grad_(True)
    _loss(gamma=gamma)(saturated, target).backward()
    assert torch.isfinite(saturated.grad).all()
    logits.grad = None
    target[target == 4] = 2
    _loss(gamma=gamma)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_computes_in_float32_under_bf16():
    logits, target = _inputs(seed=7)
    low = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _loss()(low, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_loss()(low.float(), target).item(), rel=1e-6)


def test_alpha_of_the_wrong_length_is_a_config_error():
    with pytest.raises(ConfigError, match="expected 5"):
        _loss(alpha=[1.0, 2.0])
