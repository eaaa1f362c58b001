"""Lovász-softmax loss (Berman et al. 2018): a convex surrogate of the per-class Jaccard loss."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.common import (
    check_class_weights,
    masked_one_hot,
    masked_probabilities,
    mean_over_images,
    resolve_classes,
    valid_pixels,
    weighted_class_mean,
)


class LovaszParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: Literal["present", "all"] = Field(
        "present",
        description="Average over the classes present in the target, or all (never ignore_index).",
    )
    per_image: bool = Field(False, description="One loss per image, then the mean; False: one for the batch.")


def jaccard_gradient(truth_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss, for 0/1 targets sorted by falling error.

    Entry i is J(i) - J(i-1), where J(i) is the Jaccard loss when exactly the first i+1 pixels (in that
    order) are wrong: their foreground pixels missed and their background pixels predicted.
    """
    total = truth_sorted.sum(-1, keepdim=True)
    intersection = total - truth_sorted.cumsum(-1)
    # Never 0: either a foreground pixel exists (total >= 1) or the first pixel adds 1 as background.
    union = total + (1 - truth_sorted).cumsum(-1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_per_class(errors: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(..., N) errors and 0/1 targets -> (...) Lovász extension of the Jaccard loss at `errors`."""
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    # The order is piecewise constant in the logits, so autograd rightly sees only errors_sorted.
    return (errors_sorted * jaccard_gradient(truth.gather(-1, order))).sum(-1)


class LovaszSoftmax(nn.Module):
    """Weighted mean over classes of the Lovász extension of 1 - IoU_c at errors |g_c - p_c|.

    Ignored pixels get error 0 and target 0: they sort last, leave every prefix count unchanged and
    so add nothing, which keeps the batch in one fixed-shape tensor instead of a ragged selection.
    """

    def __init__(
        self,
        params: LovaszParams,
        num_classes: int,
        ignore_index: int | None,
        weights: torch.Tensor | None,
    ):
        super().__init__()
        self.present_only = params.classes == "present"
        self.per_image = params.per_image
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.classes = resolve_classes(None, num_classes, ignore_index, "lovasz")
        weights = check_class_weights(weights, num_classes, "lovasz")
        self.register_buffer("weights", None if weights is None else weights[self.classes], persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = valid_pixels(target, self.ignore_index)
        probs = masked_probabilities(logits, valid)[:, self.classes].flatten(2)
        truth = masked_one_hot(target, self.num_classes, valid)[:, self.classes].flatten(2)
        if not self.per_image:  # (B, C, HW) -> (1, C, B*HW): one ranking over the whole batch
            probs = probs.transpose(0, 1).flatten(1).unsqueeze(0)
            truth = truth.transpose(0, 1).flatten(1).unsqueeze(0)
        per_class = lovasz_per_class((truth - probs).abs(), truth)
        present = truth.sum(-1) > 0 if self.present_only else None
        loss = weighted_class_mean(per_class, self.weights, present)
        return mean_over_images(loss, valid) if self.per_image else loss[0]


def build(
    params: LovaszParams,
    *,
    num_classes: int,
    ignore_index: int | None,
    class_weights: torch.Tensor | None,
) -> nn.Module:
    return LovaszSoftmax(params, num_classes, ignore_index, class_weights)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="lovasz",
            summary="Lovász-softmax: convex surrogate of the per-class IoU (present/all classes, per image)",
            params=LovaszParams,
            build=build,
        )
    ]
