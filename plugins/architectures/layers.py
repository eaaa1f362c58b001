"""Layers shared by the built-in architectures (not a plugin: no hooks here)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "group", "instance", "none"]


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation named by `kind` for `channels` feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)  # any width: groups must divide channels
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def conv_norm_act(
    in_channels: int, out_channels: int, norm: str, kernel: int = 3, dilation: int = 1
) -> nn.Sequential:
    """Conv + norm + ReLU; the conv's bias is dropped when a norm follows (the norm would cancel it)."""
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=norm == "none"),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + norm + ReLU: U-Net's basic block."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__(
            conv_norm_act(in_channels, out_channels, norm), conv_norm_act(out_channels, out_channels, norm)
        )


def check_input_size(x: torch.Tensor, multiple: int, name: str) -> None:
    """A clear error instead of a shape mismatch deep inside a skip connection."""
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{name} needs H and W divisible by {multiple}, got {height}x{width} "
            f"(the harness pads automatically; pad or crop when calling the model directly)"
        )
