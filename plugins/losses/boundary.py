"""Boundary loss (Kervadec et al. 2019): mean of p_c(x) * phi_c(x) with phi the signed distance map.

Meant to be mixed with a region loss (e.g. `--loss combo --loss-param parts=dice:1,boundary:0.1`): alone
it is minimised by predicting nothing. The distance maps come from the training loop (they are computed
once per mask and cached there), which is why the spec sets needs_distance_maps.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.common import classes_field, resolve_classes


class BoundaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[int] | None = classes_field()


class BoundaryLoss(nn.Module):
    def __init__(self, classes: list[int], ignore_index: int | None):
        super().__init__()
        self.classes, self.ignore_index = classes, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(dim=1)[:, self.classes]
        phi = distances[:, self.classes].float()
        valid = (
            (target != self.ignore_index)
            if self.ignore_index is not None
            else torch.ones_like(target, dtype=torch.bool)
        )
        weighted = (probs * phi).sum(dim=1) * valid
        return weighted.sum() / (valid.sum() * len(self.classes)).clamp_min(1)


def build(
    params: BoundaryParams, *, num_classes: int, ignore_index: int | None, class_weights: torch.Tensor | None
) -> nn.Module:
    return BoundaryLoss(resolve_classes(params.classes, num_classes, ignore_index, "boundary"), ignore_index)


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="boundary",
            summary="Boundary loss (Kervadec 2019) on signed distance maps; mix it with a region loss",
            params=BoundaryParams,
            build=build,
            needs_distance_maps=True,
        )
    ]
