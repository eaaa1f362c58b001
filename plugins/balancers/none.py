"""The identity balancer: the training split as it is, no class weights."""

from __future__ import annotations

import torch

from harness import hookimpl
from harness.specs import BalancedSplit, BalancerSpec, NoParams


def build(params: NoParams):
    def balance(
        images: torch.Tensor, masks: torch.Tensor, *, num_classes: int, ignore_index: int | None, seed: int
    ) -> BalancedSplit:
        return BalancedSplit(images=images, masks=masks, class_weights=None)

    return balance


@hookimpl
def harness_balancers() -> list[BalancerSpec]:
    return [BalancerSpec(name="none", summary="No balancing: the training split unchanged", build=build)]
