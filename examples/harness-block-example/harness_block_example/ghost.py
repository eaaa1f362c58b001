"""ghost: GhostNet's cheap double conv (Han et al. 2020), a block added by a third-party package.

A ghost module makes a few "intrinsic" feature maps with an ordinary conv, then derives the rest
("ghosts") from them with a cheap depthwise conv, and concatenates the two: most output channels cost
a depthwise kernel instead of a full conv. The block is two ghost modules, each followed by the
architecture's norm and a ReLU, in the place of U-Net's double 3x3 conv.

Everything a block needs is here: a params model (every field with a default, bounds and a
description; extra="forbid"), a `build(params, in_channels, out_channels, *, norm)` that returns an
`nn.Module` keeping H and W, and the `harness_blocks` hook returning the spec.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec


class GhostParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratio: int = Field(2, ge=2, le=4, description="Output maps per intrinsic map (the paper's s).")
    cheap_kernel: int = Field(
        3, ge=1, le=7, description="Size of the depthwise conv making the ghosts (odd)."
    )

    @field_validator("cheap_kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError("cheap_kernel must be odd, so the output keeps its size")
        return kernel


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation the architecture asked for: 'batch', 'group', 'instance' or 'none'."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class GhostModule(nn.Module):
    """1x1 conv to ceil(out / ratio) intrinsic maps, a depthwise conv for the ghosts, concat, norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, ratio: int, cheap_kernel: int):
        super().__init__()
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        self.primary = nn.Conv2d(in_channels, intrinsic, 1, bias=False)
        # groups=intrinsic: each ghost is computed from one intrinsic map only, which is what makes it cheap.
        self.cheap = nn.Conv2d(
            intrinsic,
            intrinsic * (ratio - 1),
            cheap_kernel,
            padding=cheap_kernel // 2,
            groups=intrinsic,
            bias=False,
        )
        self.post = nn.Sequential(norm_layer(norm, out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        maps = torch.cat([intrinsic, self.cheap(intrinsic)], dim=1)
        return self.post(maps[:, : self.out_channels])


class GhostBlock(nn.Sequential):
    """Two ghost modules, in the place of U-Net's double 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, params: GhostParams):
        super().__init__(
            GhostModule(in_channels, out_channels, norm, params.ratio, params.cheap_kernel),
            GhostModule(out_channels, out_channels, norm, params.ratio, params.cheap_kernel),
        )


def build(params: GhostParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return GhostBlock(in_channels, out_channels, norm, params)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="ghost",
            summary="GhostNet double conv (Han 2020): a few conv maps, the rest from cheap depthwise convs",
            params=GhostParams,
            build=build,
            roles=frozenset({"encoder", "bottleneck", "decoder"}),
        )
    ]
