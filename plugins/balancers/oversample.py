"""Image-level oversampling: training images that contain a rare class are duplicated.

The output keeps the input rows first, unchanged and in order, then the copies, grouped by source row
in the sources' order. Rows >= the input's N are the copies, and `BalancedSplit.strong` marks exactly
those rows so the loop gives them the stronger augmentation (an exact duplicate seen under the same
augmentation adds little). With no copies to make, the split comes back as given with `strong` None,
so a composed balancer's earlier marks are kept.

With `target_share`, the number of copies is the smallest that brings the share of images containing
the classes to at least `target_share`; it is spread evenly over those images, and when it does not
divide evenly a seeded random subset of them gets one copy more.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import hookimpl
from harness.errors import ConfigError
from harness.specs import BalancedSplit, BalancerSpec


class OversampleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[Annotated[int, Field(ge=0)]] = Field(
        [4], min_length=1, description="Images containing any of these classes are duplicated."
    )
    k: int = Field(2, ge=0, le=100, description="Extra copies of each such image (unless target_share).")
    target_share: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Share of training images containing the classes after duplication; derives k.",
    )

    @model_validator(mode="after")
    def _k_or_share(self) -> OversampleParams:
        if self.target_share is not None and "k" in self.model_fields_set:
            raise ValueError("set k or target_share, not both (target_share derives the copies)")
        return self


def check_classes(classes: list[int], num_classes: int, ignore_index: int | None, balancer: str) -> None:
    """ConfigError for a class the split cannot hold, or the ignored class (nothing to balance there)."""
    for value in classes:
        if value >= num_classes:
            raise ConfigError(
                f"balancer '{balancer}': class {value} does not exist (classes are 0..{num_classes - 1})"
            )
        if value == ignore_index:
            raise ConfigError(f"balancer '{balancer}': class {value} is the ignored class")


def rows_with(masks: torch.Tensor, classes: list[int]) -> np.ndarray:
    """Indices of the rows whose mask contains any of `classes`, in order."""
    hit = torch.isin(masks, torch.tensor(classes, dtype=masks.dtype)).flatten(1).any(dim=1)
    return hit.nonzero().flatten().cpu().numpy()


def copies_for_share(total: int, rare: int, share: float) -> int:
    """The fewest extra copies of rare images so that (rare + c) / (total + c) >= share."""
    if rare == 0:
        return 0
    copies = max(0, math.ceil((share * total - rare) / (1.0 - share)))
    # The closed form can land one off through rounding; step to the exact minimum.
    while (rare + copies) < share * (total + copies):
        copies += 1
    while copies > 0 and (rare + copies - 1) >= share * (total + copies - 1):
        copies -= 1
    return copies


def copy_counts(params: OversampleParams, total: int, rare: int, seed: int) -> np.ndarray:
    """(rare,) extra copies of each rare image."""
    if params.target_share is None:
        return np.full(rare, params.k, dtype=np.int64)
    copies = copies_for_share(total, rare, params.target_share)
    counts = np.full(rare, copies // rare if rare else 0, dtype=np.int64)
    lucky = np.random.default_rng(seed).choice(rare, size=copies - counts.sum(), replace=False)
    counts[lucky] += 1
    return counts


def build(params: OversampleParams):
    def balance(
        images: torch.Tensor, masks: torch.Tensor, *, num_classes: int, ignore_index: int | None, seed: int
    ) -> BalancedSplit:
        check_classes(params.classes, num_classes, ignore_index, "oversample")
        sources = rows_with(masks, params.classes)
        counts = copy_counts(params, len(images), len(sources), seed)
        repeated = torch.from_numpy(np.repeat(sources, counts))
        if len(repeated) == 0:
            return BalancedSplit(images=images, masks=masks, class_weights=None)
        strong = torch.cat(
            [torch.zeros(len(images), dtype=torch.bool), torch.ones(len(repeated), dtype=torch.bool)]
        )
        return BalancedSplit(
            images=torch.cat([images, images[repeated]]),
            masks=torch.cat([masks, masks[repeated]]),
            class_weights=None,
            strong=strong,
        )

    return balance


@hookimpl
def harness_balancers() -> list[BalancerSpec]:
    return [
        BalancerSpec(
            name="oversample",
            summary="Duplicate training images containing rare classes (k copies or up to a target share)",
            params=OversampleParams,
            build=build,
        )
    ]
