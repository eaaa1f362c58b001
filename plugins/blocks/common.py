"""Pieces shared by the built-in blocks (not a plugin: no hooks here).

The conv + norm + ReLU layers come from `plugins.architectures.layers`, so a block and the architecture
around it normalise the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plugins.architectures.layers import conv_norm_act, norm_layer


def projection(in_channels: int, out_channels: int, norm: str) -> nn.Module:
    """A 1x1 conv + norm + ReLU to `out_channels`, or nothing when the count already matches.

    Attention-style blocks (gc, transformer, rdam) reweight features rather than make new ones, so they only
    need their input brought to the output width; an identity keeps a same-width block a pure add-on.
    """
    if in_channels == out_channels:
        return nn.Identity()
    return conv_norm_act(in_channels, out_channels, norm, kernel=1)


def hidden_units(channels: int, reduction: int) -> int:
    """Width of a gate's bottleneck: channels // reduction, but at least 4.

    At the harness's default width 16 the papers' ratio of 16 would leave a single hidden unit, which
    makes every channel's gate a function of one number.
    """
    return max(4, channels // reduction)


class ChannelGate(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): per-channel gates in (0, 1) from globally pooled features."""

    def __init__(self, channels: int, reduction: int, in_channels: int | None = None):
        super().__init__()
        hidden = hidden_units(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels or channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def gates(self, features: torch.Tensor) -> torch.Tensor:
        """(B, channels, 1, 1) gates computed from `features` (B, in_channels, H, W)."""
        return torch.sigmoid(self.mlp(features.mean(dim=(2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gates(x)


class AvgMaxChannelGate(ChannelGate):
    """CBAM's channel attention (Woo et al. 2018): one shared MLP on the average- and the max-pooled
    features, the two outputs summed before the sigmoid (SE uses the average alone)."""

    def gates(self, features: torch.Tensor) -> torch.Tensor:
        average = self.mlp(features.mean(dim=(2, 3), keepdim=True))
        return torch.sigmoid(average + self.mlp(features.amax(dim=(2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    """CBAM's spatial attention (Woo et al. 2018): a gate per pixel from channel-wise mean and max maps.

    With a `norm`, the gate's conv is followed by that norm (CBAM's code: conv, BatchNorm, sigmoid) and
    loses its bias; without one (None), a biased conv feeds the sigmoid directly.
    """

    def __init__(self, maps: int = 2, kernel: int = 7, norm: str | None = None):
        super().__init__()
        self.conv: nn.Module = nn.Conv2d(maps, 1, kernel, padding=kernel // 2)
        if norm is not None:
            self.conv = nn.Sequential(
                nn.Conv2d(maps, 1, kernel, padding=kernel // 2, bias=norm == "none"), norm_layer(norm, 1)
            )

    @staticmethod
    def summary(x: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W): the mean and the max over channels."""
        return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)

    def gates(self, summaries: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) gates in (0, 1) from stacked summary maps."""
        return torch.sigmoid(self.conv(summaries))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gates(self.summary(x))


def head_count(channels: int, heads: int) -> int:
    """The largest divisor of `channels` that is at most `heads` (attention blocks split the width evenly)."""
    return max(h for h in range(1, heads + 1) if channels % h == 0)


def sinusoidal_positions(height: int, width: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """(height * width, channels) fixed 2-D sine/cosine position codes (Vaswani 2017; DETR's 2-D form).

    Half the channels encode the row, half the column, each as sin/cos pairs at geometric frequencies.
    Computed per call from the actual size, so attention over a feature map works at any H and W; an
    odd or non-multiple-of-4 channel count is covered by computing a few more codes and cutting.
    """
    quarter = math.ceil(channels / 4)
    scale = torch.arange(quarter, device=like.device, dtype=torch.float32) / quarter
    frequencies = 1.0 / (10000.0**scale)
    rows = torch.arange(height, device=like.device, dtype=torch.float32)[:, None] * frequencies
    cols = torch.arange(width, device=like.device, dtype=torch.float32)[:, None] * frequencies
    row_codes = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, -1)
    col_codes = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, -1)
    codes = torch.cat([row_codes, col_codes], dim=2).reshape(height * width, -1)
    return codes[:, :channels].to(like.dtype)


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resampling of `x` to `size`, skipped when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
