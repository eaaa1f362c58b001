"""Tversky loss (Salehi et al. 2017) and its focal variant (Abraham & Khan 2019) on softmax probabilities."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.common import (
    check_class_weights,
    classes_field,
    masked_one_hot,
    masked_probabilities,
    resolve_classes,
    safe_pow,
    valid_pixels,
    weighted_class_mean,
)


class TverskyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.3, ge=0.0, le=10.0, description="Weight of false positives.")
    beta: float = Field(0.7, ge=0.0, le=10.0, description="Weight of false negatives (> alpha: recall).")
    gamma: float = Field(
        1.0,
        gt=0.0,
        le=5.0,
        description="Exponent on 1 - TI; 1: Tversky, 0.75: focal Tversky (Abraham & Khan's 1/gamma).",
    )
    smooth: float = Field(
        1.0, gt=0.0, le=1e4, description="Added to numerator and denominator (> 0: never 0/0)."
    )
    classes: list[int] | None = classes_field()

    @model_validator(mode="after")
    def _penalises_something(self) -> TverskyParams:
        # With both weights 0 the index is 1 whatever the prediction: a loss that never trains.
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("alpha and beta are both 0: the loss would be constant")
        return self


class TverskyLoss(nn.Module):
    """Weighted mean over classes of (1 - TI_c)^gamma, TI_c = (TP + s) / (TP + alpha FP + beta FN + s).

    TP, FP and FN are soft counts summed over every counted pixel of the batch.
    """

    def __init__(
        self,
        params: TverskyParams,
        num_classes: int,
        ignore_index: int | None,
        weights: torch.Tensor | None,
    ):
        super().__init__()
        self.alpha, self.beta = params.alpha, params.beta
        self.gamma, self.smooth = params.gamma, params.smooth
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.classes = resolve_classes(params.classes, num_classes, ignore_index, "tversky")
        weights = check_class_weights(weights, num_classes, "tversky")
        self.register_buffer("weights", None if weights is None else weights[self.classes], persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_pixels(target, self.ignore_index)
        probs = masked_probabilities(logits, valid)[:, self.classes]
        truth = masked_one_hot(target, self.num_classes, valid)[:, self.classes]
        dims = (0, 2, 3)
        tp = (probs * truth).sum(dims)
        # For a 0/1 target sum(p (1 - g)) = sum(p) - TP and sum((1 - p) g) = sum(g) - TP.
        fp = probs.sum(dims) - tp
        fn = truth.sum(dims) - tp
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        # A saturated perfect prediction makes 1 - TI exactly 0, where d/dx x**gamma is infinite (gamma < 1).
        per_class = safe_pow(1 - index, self.gamma)
        return weighted_class_mean(per_class, self.weights)


def build(
    params: TverskyParams,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_weights: torch.Tensor | None,
) -> nn.Module:
    return TverskyLoss(params, num_classes, ignore_index, class_weights)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="tversky",
            summary="Tversky / focal Tversky loss on softmax probabilities (FP and FN weights, exponent)",
            params=TverskyParams,
            build=build,
        )
    ]
