"""SegNet (Badrinarayanan et al. 2017): an encoder-decoder whose decoder up-samples with pooling indices.

Each encoder stage max-pools and remembers where every maximum came from; the matching decoder stage puts
each value back at that position (zeros elsewhere) and lets its convolutions fill in the sparse map. No
feature maps cross from encoder to decoder, only the indices, which is what keeps SegNet lighter in
memory than U-Net.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import Norm, check_input_size, conv_norm_act


class SegNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=6, description="Number of 2x pooling / unpooling steps.")
    convs: int = Field(2, ge=1, le=4, description="3x3 conv + norm + ReLU layers per encoder/decoder stage.")
    width: int = Field(32, ge=4, le=128, description="Channels of the first stage; doubled at each stage.")
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Channel dropout on the deepest pooled features (Bayesian SegNet)."
    )


def _stage(in_channels: int, out_channels: int, convs: int, norm: str, widen_first: bool) -> nn.Sequential:
    """`convs` conv layers; the channel change happens on the first (encoder) or last (decoder) layer."""
    if widen_first:
        channels = [in_channels] + [out_channels] * convs
    else:
        channels = [in_channels] * convs + [out_channels]
    return nn.Sequential(*(conv_norm_act(a, b, norm) for a, b in zip(channels, channels[1:], strict=False)))


class SegNet(nn.Module):
    """Conv stages with index-returning max-pooling, mirrored by MaxUnpool2d-based decoder stages."""

    def __init__(self, params: SegNetParams, in_channels: int, num_classes: int):
        super().__init__()
        self.multiple = 2**params.depth
        widths = [params.width * 2**level for level in range(params.depth)]
        inputs = [in_channels, *widths[:-1]]
        self.encoders = nn.ModuleList(
            _stage(a, b, params.convs, params.norm, widen_first=True)
            for a, b in zip(inputs, widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.dropout = nn.Dropout2d(params.dropout)
        # Decoder stage `level` narrows to the next-shallower width, so the last one ends at widths[0].
        outputs = [widths[0], *widths[:-1]]
        self.unpools = nn.ModuleList(nn.MaxUnpool2d(2) for _ in widths)
        self.decoders = nn.ModuleList(
            _stage(a, b, params.convs, params.norm, widen_first=False)
            for a, b in reversed(list(zip(widths, outputs, strict=True)))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input_size(images, self.multiple, "segnet")
        indices = []
        x = images
        for encoder in self.encoders:
            x, where = self.pool(encoder(x))
            indices.append(where)
        x = self.dropout(x)
        # Inputs are multiples of 2**depth, so every unpooled map is exactly twice the size: no output_size.
        for unpool, decoder, where in zip(self.unpools, self.decoders, reversed(indices), strict=True):
            x = decoder(unpool(x, where))
        return self.head(x)


def build(params: SegNetParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return SegNet(params, in_channels, num_classes)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="segnet",
            summary="SegNet (Badrinarayanan 2017): encoder-decoder that unpools with max-pooling indices",
            params=SegNetParams,
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_353_925,
        )
    ]
