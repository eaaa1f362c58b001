"""mlp: a token-mixing MLP block in the manner of MLP-Mixer (Tolstikhin et al. 2021).

MLP-Mixer alternates a token-mixing MLP (across positions, per channel) and a channel-mixing MLP (across
channels, per position). Its token MLP has one weight per position, which ties it to one input size;
here the token MLP is defined on a `grid` x `grid` layout of positions:
- a map of at most `grid` x `grid` (the harness's bottlenecks: 4x8 at the defaults) is mixed as it is:
  its H*W real tokens take the grid's top-left H x W slots and the rest are zero, which is the token MLP
  restricted to those positions (an empty slot feeds nothing in and its output is dropped), so no token
  is duplicated or averaged;
- along an axis longer than `grid` the map is first average-pooled to `grid` (so a 32x64 map is mixed as
  8x8 averaged tokens) and the mixed result is resized back (bilinear) and added to every position.
So the block works at any H and W and every output can depend on every input position.

Layout: a 3x3 conv + norm + ReLU to `out_channels` (where pooling blurs the tokens it keeps local detail),
then token mixing and channel mixing, each pre-norm and residual (LayerNorm over channels, the Mixer's
convention) with GELU MLPs. Departures from the paper: the conv in front (the Mixer's patch embedding
is a strided conv, which would change H and W), and the zero-filled or pooled grid that frees the token
MLP from one input size.
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

    grid: int = Field(
        8,
        ge=2,
        le=16,
        description="Side of the token MLP's grid: smaller maps mixed token by token, larger pooled.",
    )
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
        height, width = x.shape[-2:]
        rows, cols = min(height, self.grid), min(width, self.grid)
        tokens = self.token_norm(x)
        if (rows, cols) != (height, width):  # only an axis longer than the grid is pooled
            tokens = F.adaptive_avg_pool2d(tokens, (rows, cols))
        # The real tokens in the top-left slots, zeros elsewhere: the MLP restricted to those positions.
        slots = F.pad(tokens, (0, self.grid - cols, 0, self.grid - rows))  # (B, C, G, G)
        mixed = self.token_mlp(slots.flatten(2)).view_as(slots)[..., :rows, :cols]
        return resize_to(mixed, (height, width))

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
            summary="Token- and channel-mixing MLPs (MLP-Mixer, Tolstikhin 2021) after a 3x3 conv; real "
            "tokens up to grid x grid, pooled beyond",
            params=MLPParams,
            revision=1,  # 1: the real tokens mixed when the map fits the grid (was always pooled)
            build=build,
        )
    ]
