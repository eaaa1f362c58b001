"""Helpers shared by the dice, focal, tversky and lovasz losses: masking, one-hot targets, class means.

Every loss here works in float32 on softmax probabilities and treats ignored pixels the same way: their
logits are replaced before the softmax and their probabilities and targets are zeroed, so they add
nothing to any sum and get exactly zero gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from harness.errors import ConfigError

EPS = 1e-8


def classes_field() -> Any:
    """The `classes` field of dice and tversky (a function so each params model gets its own Field)."""
    return Field(
        None,
        min_length=1,
        description="Classes averaged into the loss; default: every class except ignore_index.",
    )


def resolve_classes(
    classes: list[int] | None, num_classes: int, ignore_index: int | None, loss: str
) -> list[int]:
    """The sorted class indices a loss averages over; ConfigError for out-of-range or ignored ones."""
    if classes is None:
        return [c for c in range(num_classes) if c != ignore_index]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"loss '{loss}': classes {bad} out of range; expected 0..{num_classes - 1}")
    if ignore_index in classes:
        # Its pixels never count, so the term would only push its probability down everywhere.
        raise ConfigError(f"loss '{loss}': classes contains the ignored class {ignore_index}")
    return sorted(set(classes))


def check_class_weights(weights: torch.Tensor | None, num_classes: int, loss: str) -> torch.Tensor | None:
    """`weights` as a float32 (K,) tensor, or None; ConfigError when its length is not K."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.shape != (num_classes,):
        raise ConfigError(
            f"loss '{loss}': class weights have shape {tuple(weights.shape)}; expected ({num_classes},)"
        )
    return weights


def valid_pixels(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """(B, H, W) bool: True where the pixel counts."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def masked_log_probabilities(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """float32 log-softmax over classes; ignored pixels see zero logits (uniform), never their own."""
    # Replacing the logits, not only masking the output, keeps the gradient at ignored pixels exactly
    # zero even where padding or a diverging model left inf/NaN there (0 * NaN would still be NaN).
    logits = torch.where(valid.unsqueeze(1), logits.float(), 0.0)
    return logits.log_softmax(dim=1)


def masked_probabilities(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) float32 softmax probabilities, zero at ignored pixels."""
    logits = torch.where(valid.unsqueeze(1), logits.float(), 0.0)
    return logits.softmax(dim=1) * valid.unsqueeze(1)


def masked_one_hot(target: torch.Tensor, num_classes: int, valid: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) float32 one-hot target, zero at ignored pixels (whatever their label)."""
    # The ignored label may lie outside 0..K-1 (255, -100); one_hot must never see it.
    labels = torch.where(valid, target, 0)
    return F.one_hot(labels, num_classes).movedim(-1, 1).float() * valid.unsqueeze(1)


def weighted_class_mean(
    per_class: torch.Tensor, weights: torch.Tensor | None, counted: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of (..., C) per-class losses over the last axis, weighted by (C,) `weights`.

    `counted` (bool, shaped like `per_class`) leaves classes out; with nothing counted (or all weights 0)
    the result is 0, not NaN.
    """
    w = torch.ones_like(per_class) if weights is None else weights.to(per_class).expand_as(per_class)
    if counted is not None:
        w = w * counted
    return (per_class * w).sum(-1) / w.sum(-1).clamp_min(EPS)


def mean_over_images(per_image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) per-image losses over the images with at least one counted pixel (0 if none)."""
    # A fully ignored image says nothing about the model; counting it as a 0 would dilute the others.
    has_pixels = valid.flatten(1).any(dim=1).to(per_image)
    return (per_image * has_pixels).sum() / has_pixels.sum().clamp_min(1.0)


def safe_pow(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """base ** exponent for base >= 0, with zero gradient (not inf or NaN) where base == 0."""
    if exponent == 1.0:
        return base
    # d/dx x**g is infinite at 0 for g < 1 and NaN for g == 0; the double `where` keeps it out of autograd.
    positive = base > 0
    safe_base = torch.where(positive, base, 1.0)
    return torch.where(positive, safe_base.pow(exponent), 0.0 if exponent > 0 else 1.0)
