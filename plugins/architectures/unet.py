"""U-Net (Ronneberger et al. 2015): a contracting path, an expanding path and skip connections.

Its stages are blocks chosen by name (`encoder_block`, `bottleneck`, `decoder_block`, `skip_fusion`;
see `plugins/architectures/composition.py`); the defaults build the paper's double convs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.composition import BlockChoices, block_factories
from plugins.architectures.layers import DoubleConv, Norm, check_input_size


class UNetShape(BaseModel):
    """U-Net's own hyperparameters (UNetParams adds the block choices)."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=6, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")


class UNetParams(BlockChoices, UNetShape):
    """Hyperparameters of U-Net (pydantic lists the last base's fields first: the shape, then blocks)."""


BlockFactory = Callable[[int, int], nn.Module]  # (in_channels, out_channels) -> block keeping H, W
GateFactory = Callable[[int, int], nn.Module]  # (skip_channels, gating_channels) -> module(skip, gating)


class UNet(nn.Module):
    """The U-Net skeleton: `block` builds every conv stage, an optional `gate` filters each skip.

    `encoder`, `bottleneck` and `decoder` override `block` for their stages (the block choices of
    `unet`); U-Net variants (R2U-Net's recurrent blocks, Attention U-Net's gates) reuse this skeleton
    with their own factories, so only what differs is written twice. `gate(skip_channels,
    gating_channels)` builds a module called as `gate(skip, x)` with the coarser decoder features `x`,
    the skip-fusion contract of `BlockSpec`. `params` needs depth, width, norm, dropout.
    `deep_supervision` (None for a plain U-Net): with a bool, training mode returns a list of logits at
    the input's size, coarse to final (True: one per decoder level; False: the final one alone).
    """

    def __init__(
        self,
        params: BaseModel,
        in_channels: int,
        num_classes: int,
        *,
        block: BlockFactory | None = None,
        encoder: BlockFactory | None = None,
        bottleneck: BlockFactory | None = None,
        decoder: BlockFactory | None = None,
        gate: GateFactory | None = None,
        name: str = "unet",
        deep_supervision: bool | None = None,
    ):
        super().__init__()
        self.name, self.multiple = name, 2**params.depth
        block = block or (lambda a, b: DoubleConv(a, b, params.norm))
        encoder, bottleneck, decoder = encoder or block, bottleneck or block, decoder or block
        widths = [params.width * 2**level for level in range(params.depth + 1)]
        self.encoders = nn.ModuleList(
            encoder(a, b) for a, b in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(bottleneck(widths[-2], widths[-1]), nn.Dropout2d(params.dropout))
        levels = list(reversed(range(params.depth)))
        self.gates = nn.ModuleList(gate(widths[i], widths[i + 1]) for i in levels) if gate else None
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in levels)
        self.decoders = nn.ModuleList(decoder(2 * widths[i], widths[i]) for i in levels)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        # None: one tensor in every mode. A bool: training mode returns a list (the deep-supervision
        # contract), with True also a 1x1 head on every coarser decoder level, up-sampled to the input.
        self.listed = deep_supervision is not None
        self.side_heads = (
            nn.ModuleList(nn.Conv2d(widths[i], num_classes, 1) for i in levels[:-1])
            if deep_supervision
            else None
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(images, self.multiple, self.name)
        skips = []
        x = images
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        sides = []
        for level, (up, decoder, skip) in enumerate(
            zip(self.ups, self.decoders, reversed(skips), strict=True)
        ):
            if self.gates is not None:
                skip = self.gates[level](skip, x)
            x = decoder(torch.cat([up(x), skip], dim=1))
            if self.side_heads is not None and level < len(self.side_heads) and self.training:
                side = self.side_heads[level](x)
                sides.append(
                    F.interpolate(side, size=images.shape[-2:], mode="bilinear", align_corners=False)
                )
        if self.listed and self.training:
            return [*sides, self.head(x)]  # coarse to final
        return self.head(x)


def build(params: UNetParams, *, in_channels: int, num_classes: int) -> nn.Module:
    blocks = block_factories(params)
    return UNet(
        params,
        in_channels,
        num_classes,
        encoder=blocks["encoder"],
        bottleneck=blocks["bottleneck"],
        decoder=blocks["decoder"],
        gate=blocks["skip"],
    )


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="unet",
            summary="U-Net (Ronneberger 2015): encoder-decoder with skip connections; blocks by name",
            params=UNetParams,
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=1_942_357,
        )
    ]
