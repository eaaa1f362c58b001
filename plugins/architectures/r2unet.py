"""R2U-Net (Alom et al. 2018), the report's "RUnet": a U-Net built from recurrent residual conv units.

A recurrent conv layer (RCL) re-applies one 3x3 conv `t` more times, each time to the block input plus
its own previous output, so the receptive field grows with every step while the weights stay those of
a single conv. Two RCLs behind a 1x1 conv, with a residual connection around them, form every encoder,
bottleneck and decoder block of an otherwise standard U-Net.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import Norm, conv_norm_act
from plugins.architectures.unet import UNet


class R2UNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=6, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    t: int = Field(
        2, ge=1, le=5, description="Recurrent steps of each RCL after its first conv (weights shared)."
    )
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")


class RecurrentConv(nn.Module):
    """RCL: x_0 = f(x), x_{k+1} = f(x + x_k) for k < t, one conv + norm + ReLU `f` shared by all steps."""

    def __init__(self, channels: int, norm: str, steps: int):
        super().__init__()
        # The norm is shared too, as in the paper's unit: the step count then leaves the parameters alone.
        self.conv = conv_norm_act(channels, channels, norm)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.conv(x)
        for _ in range(self.steps):  # a fixed count, so torch.compile unrolls it
            state = self.conv(x + state)
        return state


class RecurrentResidualBlock(nn.Module):
    """RRCU: a 1x1 conv to `out_channels`, two RCLs, and a residual connection around the pair."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, steps: int):
        super().__init__()
        self.entry = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            RecurrentConv(out_channels, norm, steps), RecurrentConv(out_channels, norm, steps)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return x + self.body(x)


class R2UNet(UNet):
    """U-Net whose double convs are recurrent residual blocks; skips concatenate as in U-Net."""

    def __init__(self, params: R2UNetParams, in_channels: int, num_classes: int):
        def block(in_ch: int, out_ch: int) -> RecurrentResidualBlock:
            return RecurrentResidualBlock(in_ch, out_ch, params.norm, params.t)

        super().__init__(params, in_channels, num_classes, block=block, name="r2unet")


def build(params: R2UNetParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return R2UNet(params, in_channels, num_classes)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="r2unet",
            summary="R2U-Net (Alom 2018): U-Net of recurrent residual conv units (the report's RUnet)",
            params=R2UNetParams,
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_228_149,
        )
    ]
