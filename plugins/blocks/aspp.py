"""aspp: atrous spatial pyramid pooling (Chen et al. 2017, DeepLabv3), a bottleneck block.

Parallel branches read the input: a 1x1 conv, one 3x3 conv per atrous rate, and (optionally) image
pooling, the global average brought back to every position. Their concatenation is projected to
`out_channels` by a 1x1 conv. Every conv is followed by the architecture's norm and a ReLU, except the
image-pooling branch: it sees a 1x1 map, on which BatchNorm breaks with a batch of one and instance
norm is undefined, so it has a ReLU only.

The default rates 2, 4, 6 suit the harness's bottleneck maps (4x8 to 16x32); the paper's 6, 12, 18
were chosen for 65x65 maps and would put nearly every tap in the zero padding here.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act

Rate = Annotated[int, Field(ge=1, le=36)]


class ASPPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: list[Rate] = Field(
        [2, 4, 6], min_length=1, max_length=6, description="Dilation of each 3x3 atrous branch."
    )
    pooling: bool = Field(True, description="Add the image-pooling branch (global context).")


class ImagePooling(nn.Module):
    """Global average -> 1x1 conv -> ReLU, broadcast to the input's size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(self.conv(x.mean(dim=(2, 3), keepdim=True)))
        return pooled.expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """`branches` are the 1x1 conv, the atrous convs in the order of `rates`, then image pooling."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, rates: list[int], pooling: bool):
        super().__init__()
        branches: list[nn.Module] = [conv_norm_act(in_channels, out_channels, norm, kernel=1)]
        branches += [conv_norm_act(in_channels, out_channels, norm, dilation=rate) for rate in rates]
        if pooling:
            branches.append(ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = conv_norm_act(out_channels * len(branches), out_channels, norm, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


def build(params: ASPPParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return ASPP(in_channels, out_channels, norm, params.rates, params.pooling)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="aspp",
            summary="ASPP (DeepLabv3, Chen 2017): 1x1, atrous 3x3s, image pooling; rates 2,4,6 "
            "(paper 6,12,18) for small maps",
            params=ASPPParams,
            build=build,
            roles=frozenset({"bottleneck"}),
        )
    ]
