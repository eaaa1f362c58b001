"""transformer: a pre-LayerNorm transformer encoder layer over every position of the feature map.

This is the ViT / DETR layer (Vaswani et al. 2017; Dosovitskiy et al. 2021; 2-D sine positions from
DETR, Carion et al. 2020), not BoTNet's block (that is `mhsa`). Each layer is pre-norm:
tokens += attention(LayerNorm(tokens)), tokens += MLP(LayerNorm(tokens)), with a GELU MLP. Positions
enter as fixed 2-D sine/cosine codes added to the queries and keys, computed for the actual H and W at
every call, so the block works at any size. LayerNorm over channels, not the architecture's norm: that
is the transformer's convention and it does not mix images of a batch.

Departures: the input is first brought to `out_channels` (1x1 conv + norm + ReLU when the widths
differ); the head count is reduced to the largest divisor of the width not above `heads`. Cost grows
with (H*W)^2, which is why it is a bottleneck block only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.blocks.common import head_count, projection, sinusoidal_positions


class TransformerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heads: int = Field(4, ge=1, le=16, description="Attention heads (fewer if the width is not a multiple).")
    layers: int = Field(1, ge=1, le=4, description="Transformer layers.")
    mlp_ratio: float = Field(2.0, gt=0.0, le=8.0, description="Hidden width of each MLP / the width.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the attention weights.")


class TransformerLayer(nn.Module):
    """Pre-norm self-attention and MLP over (B, N, C) tokens, positions added to queries and keys."""

    def __init__(self, channels: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(channels)
        self.query_key = nn.Linear(channels, 2 * channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        hidden = max(1, round(channels * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        return x.view(batch, tokens, self.heads, channels // self.heads).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(tokens)
        query, key = self.query_key(normed + positions).chunk(2, dim=-1)
        value = self.value(normed)
        attended = F.scaled_dot_product_attention(
            self._split(query),
            self._split(key),
            self._split(value),
            dropout_p=self.dropout if self.training else 0.0,
        )
        tokens = tokens + self.out(attended.transpose(1, 2).flatten(2))
        return tokens + self.mlp(self.norm2(tokens))


class TransformerBottleneck(nn.Module):
    """project, then transformer layers over the H*W tokens, then back to a (B, C, H, W) map."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, params: TransformerParams):
        super().__init__()
        self.project = projection(in_channels, out_channels, norm)
        heads = head_count(out_channels, params.heads)
        self.layers = nn.ModuleList(
            TransformerLayer(out_channels, heads, params.mlp_ratio, params.dropout)
            for _ in range(params.layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        positions = sinusoidal_positions(height, width, channels, like=x)
        for layer in self.layers:
            tokens = layer(tokens, positions)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def build(params: TransformerParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return TransformerBottleneck(in_channels, out_channels, norm, params)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="transformer",
            summary="Pre-LayerNorm transformer layer (ViT/DETR style, Vaswani 2017): self-attention + GELU "
            "MLP, 2-D sine positions; not BoTNet (that is mhsa)",
            params=TransformerParams,
            build=build,
            roles=frozenset({"bottleneck"}),
        )
    ]
