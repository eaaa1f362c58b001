"""residual: a double 3x3 conv with an identity shortcut, ResNet's basic block (He et al. 2016).

out = ReLU(body(x) + shortcut(x)), body = conv-norm-ReLU-conv-norm; the shortcut is the identity when
the channel count is kept and a 1x1 conv + norm (the paper's projection shortcut) when it changes.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act, norm_layer


class ResidualParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zero_init: bool = Field(
        False,
        description="Start the body's last layer at zero (Goyal et al. 2017), so each block begins as its "
        "shortcut; helps deep stacks train from scratch.",
    )


class ResidualDoubleConv(nn.Module):
    """ReLU(body(x) + shortcut(x)); `body` and `shortcut` are exposed for tests and inspection."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, zero_init: bool):
        super().__init__()
        last_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=norm == "none")
        last_norm = norm_layer(norm, out_channels)
        self.body = nn.Sequential(conv_norm_act(in_channels, out_channels, norm), last_conv, last_norm)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=norm == "none"), norm_layer(norm, out_channels)
            )
        if zero_init:
            # Zero the affine scale when there is a norm (the weights keep their init and their
            # gradient); without one, zero the conv itself.
            target = last_norm if getattr(last_norm, "weight", None) is not None else last_conv
            nn.init.zeros_(target.weight)
            if target.bias is not None:
                nn.init.zeros_(target.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def build(params: ResidualParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return ResidualDoubleConv(in_channels, out_channels, norm, params.zero_init)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="residual",
            summary="ResNet basic block (He 2016): two 3x3 convs + identity shortcut, 1x1 projection "
            "shortcut on a width change, as the paper",
            params=ResidualParams,
            build=build,
        )
    ]
