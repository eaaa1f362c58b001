"""Multiclass focal loss (Lin et al. 2017): cross-entropy down-weighted on well-classified pixels."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.errors import ConfigError
from harness.specs import LossSpec
from plugins.losses.common import check_class_weights, masked_log_probabilities, safe_pow, valid_pixels


class FocalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gamma: float = Field(
        2.0, ge=0.0, le=10.0, description="Focusing exponent on (1 - p_t); 0 gives weighted cross-entropy."
    )
    alpha: list[Annotated[float, Field(ge=0.0)]] | None = Field(
        None, min_length=1, description="Per-class alpha (one per class); default: the balancer's weights."
    )


class FocalLoss(nn.Module):
    """-alpha_t (1 - p_t)^gamma log p_t, averaged over counted pixels (a plain mean, as in Lin et al.).

    alpha scales a pixel's term by its true class's weight; the mean still divides by the pixel count,
    not by the sum of the weights. All pixels ignored gives 0 with zero gradient.
    """

    def __init__(self, gamma: float, ignore_index: int | None, alpha: torch.Tensor | None):
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.register_buffer("alpha", alpha, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_pixels(target, self.ignore_index)
        labels = torch.where(valid, target, 0)
        log_pt = masked_log_probabilities(logits, valid).gather(1, labels.unsqueeze(1)).squeeze(1)
        # -expm1 keeps 1 - p_t accurate when p_t is close to 1, where the focal factor matters most.
        per_pixel = -safe_pow(-torch.expm1(log_pt), self.gamma) * log_pt
        if self.alpha is not None:
            per_pixel = per_pixel * self.alpha[labels]
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1)


def build(
    params: FocalParams,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_weights: torch.Tensor | None,
) -> nn.Module:
    alpha = check_class_weights(class_weights, num_classes, "focal")
    if params.alpha is not None:
        if len(params.alpha) != num_classes:
            raise ConfigError(
                f"loss 'focal': alpha has {len(params.alpha)} values; expected {num_classes} (one per class)"
            )
        alpha = torch.tensor(params.alpha, dtype=torch.float32)
    return FocalLoss(params.gamma, ignore_index, alpha)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="focal",
            summary="Multiclass focal loss over non-ignored pixels (gamma, per-class alpha)",
            params=FocalParams,
            build=build,
        )
    ]
