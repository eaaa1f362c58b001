"""mlp: a token-mixing MLP block in the manner of MLP-Mixer (Tolstikhin et al. 2021).

MLP-Mixer alternates a token-mixing MLP (across positions, per channel) and a channel-mixing MLP (across
channels, per position). Its token MLP has one weight per position, which ties it to one input size;
here the tokens are the map average-pooled to a fixed `grid` x `grid`, the token MLP mixes those, and
its output is resized back (bilinear) and added to every position. So the block works at any H and W
and every output can depend on every input position, at a cost independent of the map's size.

Layout: a 3x3 conv + norm + ReLU to `out_channels` (a pooled grid cannot carry local detail, so the
block keeps one conv of its own), then token mixing and channel mixing, each pre-norm and residual
(LayerNorm over channels, the Mixer's convention) with GELU MLPs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act
from plugins.blocks.common import resize_to


class MLPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grid: int = Field(8, ge=2, le=16, description="Side of the pooled token grid the token MLP mixes.")
    expansion: float = Field(2.0, gt=0.0, le=8.0, description="Hidden width of both MLPs / their input.")


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MixerBlock(nn.Module):
    """x' = conv(x); x' += resize(token_mlp(pool(norm(x')))); x' += channel_mlp(norm(x'))."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, grid: int, expansion: float):
        super().__init__()
        self.grid = grid
        self.conv = conv_norm_act(in_channels, out_channels, norm)
        tokens = grid * grid
        self.token_norm = ChannelLayerNorm(out_channels)
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens, max(1, round(tokens * expansion))),
            nn.GELU(),
            nn.Linear(max(1, round(tokens * expansion)), tokens),
        )
        hidden = max(1, round(out_channels * expansion))
        self.channel_norm = ChannelLayerNorm(out_channels)
        self.channel_mlp = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, out_channels, 1)
        )

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The token-mixing term at x's size: the same MLP over the grid's positions for every channel."""
        pooled = F.adaptive_avg_pool2d(self.token_norm(x), self.grid)  # (B, C, G, G)
        mixed = self.token_mlp(pooled.flatten(2)).view_as(pooled)
        return resize_to(mixed, x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x + self.mix_tokens(x)
        return x + self.channel_mlp(self.channel_norm(x))


def build(params: MLPParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return MixerBlock(in_channels, out_channels, norm, params.grid, params.expansion)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="mlp",
            summary="Token-mixing MLP over a pooled grid + channel MLP (after MLP-Mixer, Tolstikhin 2021)",
            params=MLPParams,
            build=build,
        )
    ]
