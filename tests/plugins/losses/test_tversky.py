"""Tversky and focal Tversky losses: closed forms, MONAI's TverskyLoss as a reference, ignored pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from plugins.losses import dice, tversky

SPEC = tversky.harness_losses()[0]


def _loss(num_classes=5, ignore_index=0, weights=None, spec=SPEC, **params):
    parsed = spec.parse_params(params)
    return spec.build(parsed, num_classes=num_classes, ignore_index=ignore_index, class_weights=weights)


def _inputs(seed=0, low=0, shape=(2, 5, 16, 32)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator) * 2
    target = torch.randint(low, shape[1], (shape[0], *shape[2:]), generator=generator)
    return logits, target


def _monai(logits, target, include_background, alpha=0.3, beta=0.7, smooth=1.0, **kwargs):
    monai_losses = pytest.importorskip("monai.losses")
    loss = monai_losses.TverskyLoss(
        softmax=True, to_onehot_y=True, include_background=include_background, batch=True,
        alpha=alpha, beta=beta, smooth_nr=smooth, smooth_dr=smooth, **kwargs,
    )  # fmt: skip
    return loss(logits, target.unsqueeze(1))


def test_defaults():
    defaults = {"alpha": 0.3, "beta": 0.7, "gamma": 1.0, "smooth": 1.0, "classes": None}
    assert SPEC.parse_params().model_dump() == defaults


@pytest.mark.parametrize("gamma", [1.0, 0.75])
def test_perfect_prediction_is_zero_with_finite_gradients(gamma):
    _, target = _inputs()
    # exp(-200) underflows in float32: FP = FN = 0 exactly, where d/dx x**0.75 is infinite.
    logits = (F.one_hot(target, 5).movedim(-1, 1).float() * 200).requires_grad_(True)
    value = _loss(gamma=gamma)(logits, target)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [1.0, 0.75, 2.0])
def test_uniform_logits_closed_form(gamma):
    _, target = _inputs()
    total = (target != 0).sum().item()
    expected = []
    for c in range(1, 5):
        count = (target == c).sum().item()
        tp, fp, fn = count / 5, (total - count) / 5, count * 4 / 5  # every counted pixel has p_c = 1/5
        expected.append((1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)) ** gamma)
    value = _loss(gamma=gamma)(torch.zeros(2, 5, 16, 32), target)
    assert value.item() == pytest.approx(sum(expected) / 4, rel=1e-5)


def test_two_pixel_hand_case():
    # p = (0.75, 0.25) on a class-0 pixel and (0.5, 0.5) on a class-1 pixel; alpha 0.3, beta 0.7, smooth 1.
    # class 0: TP 0.75, FP 0.5, FN 0.25; class 1: TP 0.5, FP 0.25, FN 0.5.
    logits = torch.tensor([[[[3.0, 1.0]], [[1.0, 1.0]]]]).log()  # (1, K=2, 1, 2), class-major
    target = torch.tensor([[[0, 1]]])
    index_0 = 1.75 / (1.75 + 0.3 * 0.5 + 0.7 * 0.25)
    index_1 = 1.5 / (1.5 + 0.3 * 0.25 + 0.7 * 0.5)
    value = _loss(num_classes=2, ignore_index=None, gamma=2.0)(logits, target)
    assert value.item() == pytest.approx(((1 - index_0) ** 2 + (1 - index_1) ** 2) / 2, rel=1e-6)


# The definitions meet with no ignored pixels, MONAI's smooth_nr = smooth_dr = our smooth, batch=True
# (we sum over the whole batch) and reduction "mean" (over classes); include_background=False is our
# default class set with ignore_index=0 (target drawn from 1..4), True ours with ignore_index=None.
# MONAI has no focal exponent: for gamma != 1 we raise its per-class terms (reduction="none").
@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
@pytest.mark.parametrize("ignore_index", [0, None])
def test_matches_monai_without_ignored_pixels(alpha, beta, ignore_index):
    logits, target = _inputs(seed=1, low=0 if ignore_index is None else 1)
    reference = _monai(logits, target, ignore_index is None, alpha=alpha, beta=beta, smooth=0.5)
    ours = _loss(ignore_index=ignore_index, alpha=alpha, beta=beta, smooth=0.5)(logits, target)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.75, 2.0])
def test_focal_exponent_matches_monai_terms(gamma):
    logits, target = _inputs(seed=2, low=1)
    terms = _monai(logits, target, False, reduction="none")
    ours = _loss(gamma=gamma)(logits, target)
    assert ours.item() == pytest.approx((terms**gamma).mean().item(), rel=1e-5)


def test_matches_monai_with_ignored_pixels():
    # MONAI's own ignore_index zeroes ignored pixels in both tensors before the sums, as we do.
    logits, target = _inputs(seed=3)
    reference = _monai(logits, target, False, ignore_index=0)
    assert _loss()(logits, target).item() == pytest.approx(reference.item(), rel=1e-5)


def test_equal_weights_are_dice_with_twice_the_smoothing():
    # alpha = beta = 1/2: (TP + s) / (TP + (FP + FN) / 2 + s) = (2 TP + 2 s) / (sum p + sum g + 2 s).
    logits, target = _inputs(seed=4)
    dice_value = _loss(spec=dice.harness_losses()[0], smooth=0.6)(logits, target)
    ours = _loss(alpha=0.5, beta=0.5, smooth=0.3)(logits, target)
    assert ours.item() == pytest.approx(dice_value.item(), rel=1e-5)


def test_classes_and_class_weights():
    logits, target = _inputs(seed=5)
    terms = [_loss(classes=[c], gamma=0.75)(logits, target) for c in (1, 2, 3, 4)]
    subset = _loss(classes=[4, 2], gamma=0.75)(logits, target)
    assert subset.item() == pytest.approx(((terms[1] + terms[3]) / 2).item(), rel=1e-5)
    weights = torch.tensor([9.0, 1.0, 0.0, 2.0, 5.0])  # class 0 is ignored: its weight must not count
    weighted = _loss(weights=weights, gamma=0.75)(logits, target)
    expected = (terms[0] * 1 + terms[2] * 2 + terms[3] * 5) / 8
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ignored_pixels_are_as_if_cropped_away():
    logits, target = _inputs(seed=6)
    cropped = _loss(gamma=0.75)(logits[..., :20], target[..., :20])
    target[..., 20:] = 0
    logits[..., 20:] = 1e4 * torch.randn_like(logits[..., 20:])
    assert _loss(gamma=0.75)(logits, target).item() == pytest.approx(cropped.item(), rel=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 0.75, 2.0])
def test_gradients_when_all_ignored_or_a_class_absent(gamma):
    logits, target = _inputs(seed=7)
    logits.requires_grad_(True)
    value = _loss(gamma=gamma)(logits, torch.zeros_like(target))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    logits.grad = None
    target[target == 4] = 2
    _loss(gamma=gamma)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_computes_in_float32_under_bf16():
    logits, target = _inputs(seed=8)
    low = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _loss()(low, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_loss()(low.float(), target).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"alpha": 0.0, "beta": 0.0}, "constant"), ({"classes": [0]}, "ignored class"), ({"gamma": 0}, "gamma")],
)
def test_bad_params_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        _loss(**params)
