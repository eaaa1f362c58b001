"""U-Net (Ronneberger et al. 2015): a contracting path, an expanding path and skip connections."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import DoubleConv, Norm, check_input_size


class UNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=6, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")


class UNet(nn.Module):
    def __init__(self, params: UNetParams, in_channels: int, num_classes: int):
        super().__init__()
        self.multiple = 2**params.depth
        widths = [params.width * 2**level for level in range(params.depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths[:-1]:
            self.encoders.append(DoubleConv(previous, width, params.norm))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(
            DoubleConv(widths[-2], widths[-1], params.norm), nn.Dropout2d(params.dropout)
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(params.depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.decoders.append(DoubleConv(2 * widths[level], widths[level], params.norm))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input_size(images, self.multiple, "unet")
        skips = []
        x = images
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build(params: UNetParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return UNet(params, in_channels, num_classes)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="unet",
            summary="U-Net (Ronneberger 2015): encoder-decoder with skip connections",
            params=UNetParams,
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=1_942_357,
        )
    ]
