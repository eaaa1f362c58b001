"""Soft multiclass Dice loss (Milletari et al. 2016) on softmax probabilities, ignored pixels left out."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.common import (
    check_class_weights,
    classes_field,
    masked_one_hot,
    masked_probabilities,
    mean_over_images,
    resolve_classes,
    valid_pixels,
    weighted_class_mean,
)


class DiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smooth: float = Field(
        1.0, gt=0.0, le=1e4, description="Added to numerator and denominator (> 0: never 0/0)."
    )
    squared: bool = Field(False, description="Square the probabilities in the denominator (V-Net style).")
    classes: list[int] | None = classes_field()
    batch: bool = Field(
        True, description="One Dice per class over the whole batch; False: one per image, then the mean."
    )


class DiceLoss(nn.Module):
    """Weighted mean over classes of 1 - (2 sum(p g) + s) / (sum(p) + sum(g) + s), over counted pixels.

    With `batch=False` each image gets its own Dice and the loss is the mean over the images that have
    at least one counted pixel; a fully ignored batch gives 0 with zero gradient.
    """

    def __init__(
        self,
        params: DiceParams,
        num_classes: int,
        ignore_index: int | None,
        weights: torch.Tensor | None,
    ):
        super().__init__()
        self.smooth = params.smooth
        self.squared = params.squared
        self.batch = params.batch
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.classes = resolve_classes(params.classes, num_classes, ignore_index, "dice")
        weights = check_class_weights(weights, num_classes, "dice")
        self.register_buffer("weights", None if weights is None else weights[self.classes], persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_pixels(target, self.ignore_index)
        probs = masked_probabilities(logits, valid)[:, self.classes]
        truth = masked_one_hot(target, self.num_classes, valid)[:, self.classes]
        dims = (0, 2, 3) if self.batch else (2, 3)
        intersection = (probs * truth).sum(dims)
        # The target is 0/1, so squaring it changes nothing: only the probabilities are squared.
        predicted = (probs.square() if self.squared else probs).sum(dims)
        dice = (2 * intersection + self.smooth) / (predicted + truth.sum(dims) + self.smooth)
        loss = weighted_class_mean(1 - dice, self.weights)
        return loss if self.batch else mean_over_images(loss, valid)


def build(
    params: DiceParams,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_weights: torch.Tensor | None,
) -> nn.Module:
    return DiceLoss(params, num_classes, ignore_index, class_weights)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="dice",
            summary="Soft multiclass Dice on softmax probabilities (smooth, squared, classes, per image)",
            params=DiceParams,
            build=build,
        )
    ]
