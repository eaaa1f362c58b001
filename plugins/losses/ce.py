"""Pixel-wise cross-entropy with ignored class, class weights and label smoothing."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.errors import ConfigError
from harness.specs import LossSpec


class CrossEntropyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Mass moved from the true class.")
    ohem: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Online hard example mining: average only the hardest fraction of the batch's pixels.",
    )
    # A negative or NaN weight would reward the wrong class: refused when the parameters are parsed.
    weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, description="Manual per-class weights (one per class); default: the balancer's, if any."
    )


class CrossEntropy(nn.Module):
    """Mean over non-ignored pixels, weighted; all pixels ignored gives 0 with zero gradient, not NaN."""

    def __init__(self, params: CrossEntropyParams, ignore_index: int | None, weights: torch.Tensor | None):
        super().__init__()
        self.label_smoothing, self.ohem = params.label_smoothing, params.ohem
        self.ignore_index = -100 if ignore_index is None else ignore_index
        self.register_buffer("weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(
            logits.float(),
            target,
            weight=self.weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        valid = target != self.ignore_index
        if self.weights is None:
            pixel_weight = valid.float()
        else:
            pixel_weight = self.weights[target.clamp(0, len(self.weights) - 1)] * valid
        if self.ohem is not None:
            # k from the batch size, not from the valid count, keeps shapes static (no host sync);
            # ignored pixels have loss 0, so they are the last to be picked.
            k = max(1, int(self.ohem * per_pixel.numel()))
            per_pixel, index = per_pixel.flatten().topk(k)
            pixel_weight = pixel_weight.flatten()[index]
        return per_pixel.sum() / pixel_weight.sum().clamp_min(1e-8)


def build(
    params: CrossEntropyParams,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_weights: torch.Tensor | None,
) -> nn.Module:
    weights = class_weights
    if params.weights is not None:
        if len(params.weights) != num_classes:
            raise ConfigError(
                f"loss 'ce': weights has {len(params.weights)} values; expected {num_classes} (one per class)"
            )
        weights = torch.tensor(params.weights, dtype=torch.float32)
    return CrossEntropy(params, ignore_index, weights)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="ce",
            summary="Cross-entropy over non-ignored pixels (class weights, label smoothing)",
            params=CrossEntropyParams,
            build=build,
        )
    ]
