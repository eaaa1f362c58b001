"""Lovász-softmax: 1 - IoU on hard predictions, a set-based reference, ignored pixels, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plugins.losses import lovasz

SPEC = lovasz.harness_losses()[0]


def _loss(num_classes=5, ignore_index=0, weights=None, **params):
    parsed = SPEC.parse_params(params)
    return SPEC.build(parsed, num_classes=num_classes, ignore_index=ignore_index, class_weights=weights)


def _inputs(seed=0, shape=(2, 5, 8, 8)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator) * 2
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    return logits, target


def _hard_logits(labels, num_classes=5):
    # exp(-200) underflows in float32, so the softmax is exactly 0 or 1.
    return F.one_hot(labels, num_classes).movedim(-1, 1).float() * 200 - 100


def _reference_term(errors: list[float], truth: list[bool]) -> float:
    """Lovász extension as a Choquet integral: sum_k (e_(k) - e_(k+1)) * JaccardLoss(first k pixels wrong).

    Written with sets and no cumulative sums, independently of the plugin's gradient formula.
    """
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    foreground = {i for i, t in enumerate(truth) if t}
    levels = [errors[i] for i in order] + [0.0]
    total = 0.0
    for k in range(len(order)):
        wrong = set(order[: k + 1])
        total += (levels[k] - levels[k + 1]) * len(wrong) / len(foreground | wrong)
    return total


def _reference_terms(logits, target, ignore_index=0):
    """{class: term} over the counted pixels, for every class but the ignored one."""
    valid = target != ignore_index
    probs = logits.softmax(1).movedim(1, -1)[valid]
    labels = target[valid]
    terms = {}
    for c in range(logits.shape[1]):
        if c != ignore_index:
            truth = (labels == c).tolist()
            errors = [abs(float(t) - p) for t, p in zip(truth, probs[:, c].tolist(), strict=True)]
            terms[c] = (_reference_term(errors, truth), any(truth))
    return terms


def test_defaults():
    assert SPEC.parse_params().model_dump() == {"classes": "present", "per_image": False}


@pytest.mark.parametrize("classes", ["present", "all"])
def test_binary_hard_probabilities_give_one_minus_iou(classes):
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (2, 8, 8), generator=generator)
    predicted = torch.randint(0, 2, (2, 8, 8), generator=generator)
    iou = [
        ((predicted == c) & (target == c)).sum() / ((predicted == c) | (target == c)).sum() for c in (0, 1)
    ]
    value = _loss(num_classes=2, ignore_index=None, classes=classes)(_hard_logits(predicted, 2), target)
    assert value.item() == pytest.approx(1 - (iou[0] + iou[1]).item() / 2, rel=1e-6)


def test_hard_probabilities_with_ignored_pixels_give_mean_one_minus_iou_of_present_classes():
    logits, target = _inputs(seed=1)
    target[target == 3] = 1  # absent: left out of the mean under "present"
    predicted = logits.argmax(1)
    valid = target != 0
    losses = []
    for c in (1, 2, 4):
        hit, truth = (predicted == c) & valid, (target == c) & valid
        losses.append(1 - ((hit & truth).sum() / (hit | truth).sum()).item())
    value = _loss()(_hard_logits(predicted), target)
    assert value.item() == pytest.approx(sum(losses) / 3, rel=1e-6)


def test_perfect_prediction_is_zero():
    _, target = _inputs()
    assert _loss(classes="all")(_hard_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_uniform_logits_closed_form():
    # Every foreground error (0.8) outranks every background one (0.2), so a present class scores
    # 0.8 exactly; an absent class's term is its largest error, 0.2.
    _, target = _inputs()
    target[target == 4] = 1
    logits = torch.zeros(2, 5, 8, 8)
    assert _loss()(logits, target).item() == pytest.approx(0.8, rel=1e-6)
    assert _loss(classes="all")(logits, target).item() == pytest.approx((3 * 0.8 + 0.2) / 4, rel=1e-6)


def test_two_pixel_hand_case():
    # p_1 = (0.9, 0.4), targets (1, 0). Class 1: errors (0.1, 0.4), sorted background pixel first,
    # Jaccard gradient (1/2, 1/2) -> 0.25. Class 0: errors (0.1, 0.4), foreground first, (1, 0) -> 0.4.
    logits = torch.tensor([[[[1.0, 6.0]], [[9.0, 4.0]]]]).log()  # (1, K=2, 1, 2), class-major
    target = torch.tensor([[[1, 0]]])
    value = _loss(num_classes=2, ignore_index=None)(logits, target)
    assert value.item() == pytest.approx((0.25 + 0.4) / 2, rel=1e-6)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_matches_the_set_based_reference(classes):
    logits, target = _inputs(seed=2)
    target[target == 2] = 0  # ignored pixels, and class 2 absent
    terms = _reference_terms(logits, target)
    counted = [term for term, present in terms.values() if present or classes == "all"]
    value = _loss(classes=classes)(logits, target)
    assert value.item() == pytest.approx(sum(counted) / len(counted), rel=1e-5)


def test_class_weights_give_a_weighted_mean_of_present_classes():
    logits, target = _inputs(seed=3)
    target[target == 3] = 1  # absent: its weight 2 must not count
    terms = _reference_terms(logits, target)
    weights = torch.tensor([9.0, 1.0, 3.0, 2.0, 5.0])  # class 0 is ignored: its weight must not count
    expected = (terms[1][0] * 1 + terms[2][0] * 3 + terms[4][0] * 5) / 9
    assert _loss(weights=weights)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_per_image_is_the_mean_over_images_with_counted_pixels():
    logits, target = _inputs(seed=4, shape=(3, 5, 8, 8))
    target[2] = 0  # a fully ignored image says nothing and is left out
    singles = [_loss()(logits[i : i + 1], target[i : i + 1]) for i in (0, 1)]
    value = _loss(per_image=True)(logits, target)
    assert value.item() == pytest.approx(((singles[0] + singles[1]) / 2).item(), rel=1e-6)
    assert value.item() != pytest.approx(_loss()(logits, target).item(), rel=1e-4)


@pytest.mark.parametrize("per_image", [False, True])
def test_ignored_pixels_are_as_if_cropped_away(per_image):
    logits, target = _inputs(seed=5)
    cropped = _loss(per_image=per_image)(logits[..., :5], target[..., :5])
    target[..., 5:] = 0
    logits[..., 5:] = 1e4 * torch.randn_like(logits[..., 5:])
    assert _loss(per_image=per_image)(logits, target).item() == pytest.approx(cropped.item(), rel=1e-6)


@pytest.mark.parametrize("params", [{}, {"classes": "all"}, {"per_image": True}])
def test_gradients_when_all_ignored_or_a_class_absent(params):
    logits, target = _inputs(seed=6)
    logits.requires_grad_(True)
    value = _loss(**params)(logits, torch.zeros_like(target))
    value.backward()
    assert value.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    logits.grad = None
    target[target == 4] = 2
    _loss(**params)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_computes_in_float32_under_bf16():
    logits, target = _inputs(seed=7)
    low = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = _loss()(low, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_loss()(low.float(), target).item(), rel=1e-6)
