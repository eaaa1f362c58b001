"""dilated: 3x3 convs at several dilation rates, in parallel or in series (Yu & Koltun 2016).

Dilation widens the receptive field without pooling or extra parameters, which is what a stage of a
shallow encoder on 64x128 images lacks.
- parallel: one conv + norm + ReLU branch per rate, all reading the input; their outputs are
  concatenated and fused by a 1x1 conv + norm + ReLU (multi-scale context at one depth).
- serial: one conv + norm + ReLU per rate, stacked (the first maps in -> out); with rates like 1, 2, 4
  that share no common factor above 1 the stack covers its receptive field without the holes a
  repeated rate leaves ("hybrid dilated convolution", Wang et al. 2018).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from harness import hookimpl
from harness.specs import BlockSpec
from plugins.architectures.layers import conv_norm_act

Rate = Annotated[int, Field(ge=1, le=16)]


class DilatedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: list[Rate] = Field(
        [1, 2, 4], min_length=1, max_length=4, description="Dilation of each 3x3 conv (one per branch/layer)."
    )
    mode: Literal["parallel", "serial"] = Field(
        "parallel", description="parallel: branches fused by a 1x1 conv; serial: the convs stacked."
    )

    @field_validator("rates")
    @classmethod
    def _distinct(cls, rates: list[int]) -> list[int]:
        if len(set(rates)) != len(rates):
            raise ValueError("rates must be distinct")
        return rates


class ParallelDilated(nn.Module):
    """Branches at each rate over the same input, concatenated, then a 1x1 fuse."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, rates: list[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            conv_norm_act(in_channels, out_channels, norm, dilation=rate) for rate in rates
        )
        self.fuse = conv_norm_act(out_channels * len(rates), out_channels, norm, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


def build(params: DilatedParams, in_channels: int, out_channels: int, *, norm: str) -> nn.Module:
    if params.mode == "parallel":
        return ParallelDilated(in_channels, out_channels, norm, params.rates)
    widths = [in_channels] + [out_channels] * len(params.rates)
    return nn.Sequential(
        *(
            conv_norm_act(a, b, norm, dilation=rate)
            for a, b, rate in zip(widths[:-1], widths[1:], params.rates, strict=True)
        )
    )


@hookimpl
def harness_blocks() -> list[BlockSpec]:
    return [
        BlockSpec(
            name="dilated",
            summary="Dilated 3x3 convs (Yu & Koltun 2016) at several rates: parallel + 1x1 fuse, or serial "
            "(hybrid dilation, Wang 2018)",
            params=DilatedParams,
            build=build,
        )
    ]
