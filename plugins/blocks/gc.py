"""gc: the global context block of GCNet (Cao et al. 2019).

Context modelling: a 1x1 conv scores every position, a softmax over all H*W positions turns the scores
into weights, and the weighted sum of the features is one context vector per image. Transform: a
bottleneck of 1x1 convs with LayerNorm (the paper's choice: it eases optimising the two-layer
bottleneck). Fusion: the transformed vector is added to every position. The last 1x1 conv starts at
zero, as in the paper's code, so the block begins as its input and learns how much context to add.

gc is an attachment (`BlockSpec.placement`), not a stage: it has no spatial context of its own (its
only convs are 1x1, and the context term starts at zero), so alone it would turn a stage into 1x1 convs.
Chain it after a stage with `+`, e.g. `bottleneck=conv+gc`, `rdam+gc` or `se+gc`; alone it is refused.
Departures: the paper adds the unit inside a ResNet block; here it follows whatever stage precedes it,
and brings its input to `out_channels` (1x1 conv + norm + ReLU) when the widths differ.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.blocks.common import hidden_units, projection


class GCParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction: int = Field(
        4, ge=1, le=64, description="Channels / hidden units of the transform (at least 4 hidden units)."
    )


class GlobalContext(nn.Module):
    """x' = project(x); out = x' + transform(context(x')), the second term the same at every position."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, reduction: int):
        super().__init__()
        self.project = projection(in_channels, out_channels, norm)
        self.score = nn.Conv2d(out_channels, 1, 1)
        hidden = hidden_units(out_channels, reduction)
        self.transform = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1): the features averaged with softmax weights over all positions."""
        weights = torch.softmax(self.score(x).flatten(2), dim=-1)  # (B, 1, H*W)
        return torch.einsum("bcn,bon->bc", x.flatten(2), weights)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        return x + self.transform(self.context(x))


def build(params: GCParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    return GlobalContext(in_channels, out_channels, norm, params.reduction)


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="gc",
            summary="Global context unit (GCNet, Cao 2019), an attachment: chain it after a stage (conv+gc); "
            "a 1x1 projection when widths differ",
            params=GCParams,
            build=build,
            placement="attachment",
        )
    ]
