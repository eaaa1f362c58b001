"""mhsa: BoTNet's bottleneck block (Srinivas et al. 2021), multi-head self-attention with 2-D relative
position logits in place of a ResNet bottleneck's 3x3 conv.

    x' = ReLU(norm(conv1x1(x)))                  reduce to width = out_channels // reduction
    a  = MHSA(x'), logits_ij = q_i k_j + q_i r^H_(y_j - y_i) + q_i r^W_(x_j - x_i)
    out = ReLU(norm(conv1x1(ReLU(norm(a)))) + shortcut(x))

As in the paper: queries, keys and values are 1x1 projections (no bias); positions enter only as learned
relative embeddings, one table for the row offset and one for the column offset (so the attention of a
query depends on where a key lies relative to it, not on absolute positions: a shifted input shifts the
attention pattern); no MLP and no LayerNorm, but the architecture's norm (BatchNorm by default) after
each stage of the bottleneck, and a residual shortcut (identity, or a 1x1 conv + norm when the widths
differ, ResNet's projection shortcut). q is scaled by 1/sqrt(head width) for both logit terms, as in
the paper's code.

Departures: BoTNet sizes its relative tables to one fixed feature map; here offsets beyond
`max_distance - 1` share the outermost embedding (clipped relative positions, Shaw et al. 2018), so the
block works at any H and W. The head count is reduced to the largest divisor of the width not above
`heads`. Cost grows with (H*W)^2, which is why mhsa is a bottleneck block only.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act, norm_layer
from plugins.blocks.common import head_count


class MHSAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heads: int = Field(4, ge=1, le=16, description="Attention heads (fewer if the width is not a multiple).")
    reduction: int = Field(
        4, ge=1, le=16, description="out_channels / width of the attention (ResNet's bottleneck ratio 4)."
    )
    max_distance: int = Field(
        16,
        ge=1,
        le=64,
        description="Row/column offsets with their own relative embedding; farther share one.",
    )


class RelativeSelfAttention(nn.Module):
    """All-to-all multi-head self-attention over a (B, C, H, W) map with 2-D relative position logits."""

    def __init__(self, channels: int, heads: int, max_distance: int):
        super().__init__()
        self.heads, self.head_width, self.max_distance = heads, channels // heads, max_distance
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        span = 2 * max_distance - 1  # offsets -(R-1)..R-1
        scale = self.head_width**-0.5
        self.rel_height = nn.Parameter(torch.randn(span, self.head_width) * scale)
        self.rel_width = nn.Parameter(torch.randn(span, self.head_width) * scale)

    def _offsets(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, length) index into a relative table: clip(j - i) shifted to start at 0."""
        positions = torch.arange(length, device=device)
        limit = self.max_distance - 1
        return (positions[None, :] - positions[:, None]).clamp(-limit, limit) + limit

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, heads, H*W, H*W) attention weights (rows: queries) and the (B, heads, d, H*W) values."""
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, 3, self.heads, self.head_width, height * width).unbind(1)
        q = q * self.head_width**-0.5
        content = q.transpose(-2, -1) @ k
        grid = q.reshape(batch, self.heads, self.head_width, height, width)
        rows = self.rel_height[self._offsets(height, x.device)].to(grid.dtype)  # (H, H', d)
        cols = self.rel_width[self._offsets(width, x.device)].to(grid.dtype)  # (W, W', d)
        by_row = torch.einsum("bndhw,hkd->bnhwk", grid, rows)  # (B, n, H, W, H')
        by_col = torch.einsum("bndhw,wld->bnhwl", grid, cols)  # (B, n, H, W, W')
        relative = (by_row[..., :, None] + by_col[..., None, :]).reshape(content.shape)
        return torch.softmax(content + relative, dim=-1), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, values = self.attention(x)
        return (values @ weights.transpose(-2, -1)).reshape(x.shape)


class BottleneckTransformer(nn.Module):
    """BoTNet's block: 1x1 reduce, relative MHSA, norm + ReLU, 1x1 expand + norm, + shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, params: MHSAParams):
        super().__init__()
        width = max(1, out_channels // params.reduction)
        self.reduce = conv_norm_act(in_channels, width, norm, kernel=1)
        self.attend = RelativeSelfAttention(width, head_count(width, params.heads), params.max_distance)
        self.after = nn.Sequential(norm_layer(norm, width), nn.ReLU(inplace=True))
        self.expand = nn.Sequential(
            nn.Conv2d(width, out_channels, 1, bias=norm == "none"), norm_layer(norm, out_channels)
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=norm == "none"), norm_layer(norm, out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.expand(self.after(self.attend(self.reduce(x))))
        return torch.relu(body + self.shortcut(x))


def build(params: MHSAParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return BottleneckTransformer(in_channels, out_channels, norm, params)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="mhsa",
            summary="BoTNet block (Srinivas 2021): 1x1 -> MHSA with 2-D relative logits -> 1x1, norm, "
            "residual; offsets clipped at max_distance so any size works",
            params=MHSAParams,
            revision=1,  # 1: BoTNet's block (the transformer layer it was is now `transformer`)
            build=build,
            roles=frozenset({"bottleneck"}),
        )
    ]
