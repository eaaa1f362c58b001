"""rdam: a residual dense attention module, the report's bottleneck block.

It joins three published ideas:
- dense connections: a residual dense block (Zhang et al. 2018, RDN): each 3x3 layer sees the block's
  input and every earlier layer's output, and a 1x1 "local feature fusion" brings the stack back to
  the block's width;
- CBAM (Woo et al. 2018) on the fused features: channel attention from the average- and max-pooled
  features through one shared MLP, then spatial attention, a 7x7 conv over the channel mean and max
  followed by the architecture's norm (BatchNorm in CBAM's code) and a sigmoid;
- a residual connection around all of it (RDN's local residual learning).

Departures: the report named the module but published no code, so this is one reading of it. The input
is first brought to `out_channels` (1x1 conv + norm + ReLU when the widths differ), so the residual and
the dense layers run at the output width; the channel MLP keeps at least 4 hidden units.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act, norm_layer
from plugins.blocks.common import AvgMaxChannelGate, SpatialGate, projection


class RDAMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    growth: int = Field(32, ge=4, le=256, description="Channels each dense layer adds.")
    layers: int = Field(3, ge=1, le=8, description="Dense 3x3 layers.")
    reduction: int = Field(
        8, ge=1, le=64, description="Channels / hidden units of the channel gate (at least 4 hidden units)."
    )


class DenseLayers(nn.Module):
    """Layer k maps the concatenation of the input and layers 0..k-1 to `growth` channels."""

    def __init__(self, channels: int, growth: int, layers: int, norm: str):
        super().__init__()
        self.layers = nn.ModuleList(conv_norm_act(channels + k * growth, growth, norm) for k in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class ResidualDenseAttention(nn.Module):
    """x' = project(x); out = x' + spatial(channel(fuse(dense(x'))))."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, params: RDAMParams):
        super().__init__()
        self.project = projection(in_channels, out_channels, norm)
        self.dense = DenseLayers(out_channels, params.growth, params.layers, norm)
        self.fuse = nn.Sequential(
            nn.Conv2d(out_channels + params.layers * params.growth, out_channels, 1, bias=norm == "none"),
            norm_layer(norm, out_channels),
        )
        self.channel = AvgMaxChannelGate(out_channels, params.reduction)
        self.spatial = SpatialGate(norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.spatial(self.channel(self.fuse(self.dense(x))))


def build(params: RDAMParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return ResidualDenseAttention(in_channels, out_channels, norm, params)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="rdam",
            summary="Residual dense attention (the report's block): RDN dense 3x3 layers (Zhang 2018), "
            "CBAM avg+max channel and normalised spatial gates (Woo 2018), residual",
            params=RDAMParams,
            revision=1,  # 1: CBAM's average+max channel gate, a normalised spatial gate
            build=build,
        )
    ]
