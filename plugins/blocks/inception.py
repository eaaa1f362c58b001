"""inception: GoogLeNet's multi-branch module (Szegedy et al. 2015).

Four branches read the input and are concatenated: a 1x1 conv; a 1x1 reduction then a 3x3 conv; a 1x1
reduction then a 5x5 conv; a 3x3 max pool (stride 1) then a 1x1 conv. Every conv is followed by the
architecture's norm and a ReLU. The output channels are split as evenly as possible over the four
branches, so the block maps any in_channels to any out_channels >= 4.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act

BRANCHES = 4


class InceptionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction: float = Field(
        0.5,
        gt=0.0,
        le=2.0,
        description="Width of the 1x1 reductions before the 3x3 and 5x5 convs / the branch's width.",
    )


def split(channels: int, parts: int = BRANCHES) -> list[int]:
    """`channels` shared out over `parts` branches, the first ones taking the remainder."""
    return [channels // parts + (1 if i < channels % parts else 0) for i in range(parts)]


class Inception(nn.Module):
    """The four-branch module; `branches` are in the order 1x1, 3x3, 5x5, pool."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, reduction: float):
        super().__init__()
        if out_channels < BRANCHES:
            raise ValueError(f"inception needs at least {BRANCHES} output channels, got {out_channels}")
        one, three, five, pool = split(out_channels)
        self.branches = nn.ModuleList(
            [
                conv_norm_act(in_channels, one, norm, kernel=1),
                self._reduced(in_channels, three, 3, norm, reduction),
                self._reduced(in_channels, five, 5, norm, reduction),
                nn.Sequential(
                    nn.MaxPool2d(3, stride=1, padding=1), conv_norm_act(in_channels, pool, norm, kernel=1)
                ),
            ]
        )

    @staticmethod
    def _reduced(in_channels: int, out_channels: int, kernel: int, norm: str, reduction: float) -> nn.Module:
        hidden = max(1, round(out_channels * reduction))
        return nn.Sequential(
            conv_norm_act(in_channels, hidden, norm, kernel=1),
            conv_norm_act(hidden, out_channels, norm, kernel=kernel),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def build(params: InceptionParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return Inception(in_channels, out_channels, norm, params.reduction)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="inception",
            summary="Inception module (GoogLeNet, Szegedy 2015): 1x1/3x3/5x5/pool branches; widths split "
            "evenly and a norm added",
            params=InceptionParams,
            build=build,
        )
    ]
