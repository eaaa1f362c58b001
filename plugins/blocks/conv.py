"""conv: U-Net's double 3x3 conv (Ronneberger et al. 2015), the default block everywhere.

It builds exactly the `DoubleConv` the architectures used before blocks were plugins, so a default
`unet` or `unetpp` keeps its parameter count and its checkpoints' parameter names.
"""

from __future__ import annotations

from pydantic import BaseModel
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import DoubleConv


def build(params: BaseModel, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return DoubleConv(in_channels, out_channels, norm)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="conv",
            summary="Double 3x3 conv + norm + ReLU (U-Net, Ronneberger 2015), padded convs (the paper's "
            "are unpadded) and a norm added: the default",
            build=build,
        )
    ]
