"""se: a double 3x3 conv followed by squeeze-and-excitation (Hu et al. 2018, SENet).

The conv output is squeezed by global average pooling, passed through a two-layer bottleneck MLP and
a sigmoid, and each channel is scaled by its gate in (0, 1): the block learns which channels matter
for the whole image, a cheap global signal a 3x3 conv stack cannot see.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import DoubleConv
from plugins.blocks.common import ChannelGate


class SEParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction: int = Field(
        8, ge=1, le=64, description="Channels / hidden units of the gate's MLP (at least 4 hidden units)."
    )


class SEBlock(nn.Module):
    """conv(x) * gates(conv(x)): `conv` is U-Net's double conv, `se` the channel gate."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, reduction: int):
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels, norm)
        self.se = ChannelGate(out_channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


def build(params: SEParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return SEBlock(in_channels, out_channels, norm, params.reduction)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="se",
            summary="Double conv + squeeze-and-excitation gates (SENet, Hu 2018); reduction 8 (paper 16) "
            "and at least 4 hidden units",
            params=SEParams,
            build=build,
        )
    ]
