"""R2U-Net (Alom et al. 2018), the report's "RUnet": a U-Net built from recurrent residual conv units.

A recurrent conv layer (RCL) re-applies one 3x3 conv `t` more times, each time to the block input plus
its own previous output, so the receptive field grows with every step while the conv weights stay those
of a single conv. Two RCLs behind a 1x1 conv, with a residual connection around them, form every
encoder, bottleneck and decoder block of an otherwise standard U-Net.

Departure from the reference code: each recurrent step has its own norm (the reference shares one
BatchNorm across the steps, whose running statistics then mix t + 1 input distributions; see
`RecurrentConv`). The conv weights stay shared.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import Norm, norm_layer
from plugins.architectures.unet import UNet


class R2UNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=6, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    t: int = Field(
        2,
        ge=1,
        le=5,
        description="Recurrent steps of each RCL after its first conv (conv shared, one norm per step).",
    )
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")


class RecurrentConv(nn.Module):
    """RCL: x_0 = f_0(x), x_{k+1} = f_{k+1}(x + x_k) for k < t, f_k = ReLU(norm_k(conv(.))).

    The 3x3 conv is shared by every step (the reference code's recurrence); each step has its own norm.
    Step k's input is x plus a state that grows with k, so the steps see different distributions: one
    shared BatchNorm would keep running statistics that average all of them, and its eval-mode output
    would then drift from the train-mode output it was trained with (validation runs in eval mode).
    """

    def __init__(self, channels: int, norm: str, steps: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none")
        self.norms = nn.ModuleList(norm_layer(norm, channels) for _ in range(steps + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.relu(self.norms[0](self.conv(x)))
        for norm in self.norms[1:]:  # a fixed count, so torch.compile unrolls it
            state = torch.relu(norm(self.conv(x + state)))
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
            summary="R2U-Net (Alom 2018): U-Net of recurrent residual conv units (the report's RUnet); "
            "one norm per recurrent step",
            params=R2UNetParams,
            revision=1,  # 1: one norm per recurrent step (was one norm shared by the steps)
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_234_037,
        )
    ]
