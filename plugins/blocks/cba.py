"""cba: cross-branch attention, a skip-fusion block (role "skip").

U-Net's skips hand the decoder every encoder feature, relevant or not. Attention gates (Oktay et al.
2018) weight the skip by a score computed from the decoder; cross-branch attention computes the weights
from both branches and uses them to fuse the two:

    g = resize(project(gating))                  decoder branch at the skip's width and size
    c = sigmoid(MLP(avgpool([skip, g])))         channel weights from both branches (SE-style)
    s = sigmoid(conv7x7([mean, max of skip; mean, max of g]))   spatial weights from both (CBAM-style)
    w = c * s  in (0, 1)
    out = w * skip + (1 - w) * g

Where the weights are high the encoder's detail passes; elsewhere the decoder's (semantically
stronger) features stand in. The output has the skip's shape, as the skip role requires.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act
from plugins.blocks.common import ChannelGate, SpatialGate, resize_to


class CBAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction: int = Field(
        8, ge=1, le=64, description="Channels / hidden units of the channel-weight MLP (at least 4 units)."
    )
    kernel: int = Field(7, ge=1, le=11, description="Size of the spatial-weight conv (odd).")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError("kernel must be odd, so the weights stay centred on their pixel")
        return kernel


class CrossBranchAttention(nn.Module):
    """`weights(skip, gating)` gives w and g; forward returns the fused skip w * skip + (1 - w) * g."""

    def __init__(self, skip_channels: int, gating_channels: int, norm: str, reduction: int, kernel: int):
        super().__init__()
        self.project = conv_norm_act(gating_channels, skip_channels, norm, kernel=1)
        self.channel = ChannelGate(skip_channels, reduction, in_channels=2 * skip_channels)
        self.spatial = SpatialGate(maps=4, kernel=kernel)

    def _gating(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        # Project at the coarse size, then resize: the same result for a 1x1 conv, at a quarter the cost.
        return resize_to(self.project(gating), skip.shape[-2:])

    def weights(self, skip: torch.Tensor, gating: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, C_skip, H, W) fusion weights in (0, 1), computed from both branches, and g."""
        g = self._gating(skip, gating)
        channel = self.channel.gates(torch.cat([skip, g], dim=1))
        spatial = self.spatial.gates(torch.cat([SpatialGate.summary(skip), SpatialGate.summary(g)], dim=1))
        return channel * spatial, g

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        weight, g = self.weights(skip, gating)
        return weight * skip + (1 - weight) * g


def build(params: CBAParams, skip_channels: int, gating_channels: int, *, norm: str) -> nn.Module:
    return CrossBranchAttention(skip_channels, gating_channels, norm, params.reduction, params.kernel)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="cba",
            summary="Cross-branch attention skip fusion (the report's; SE- and CBAM-style gates, Hu 2018, "
            "Woo 2018): weights from both branches mix them",
            params=CBAParams,
            build=build,
            roles=frozenset({"skip"}),
        )
    ]
