"""U-Net++ (Zhou et al. 2018): a U-Net whose skips are nested, densely connected convolution pathways.

Node X^{i,j} (level i, column j) is a conv block over the concatenation of X^{i,0..j-1} and the
up-sampled X^{i+1,j-1}; column 0 is the encoder. Heads on X^{0,1..depth} allow deep supervision.

Blocks are chosen by name (`plugins/architectures/composition.py`): `encoder_block` builds X^{0..depth-1,0},
`bottleneck` X^{depth,0}, `decoder_block` every nested node, and a `skip_fusion` block fuses each node's
dense skips cat(X^{i,0..j-1}) with X^{i+1,j-1} (the coarser features about to be up-sampled) before the
concatenation, as the skip role defines. The defaults build the paper's double convs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.composition import BlockChoices, block_factories
from plugins.architectures.layers import DoubleConv, Norm, check_input_size

Factory = Callable[[int, int], nn.Module]


class UNetPlusPlusShape(BaseModel):
    """U-Net++'s own hyperparameters (UNetPlusPlusParams adds the block choices)."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=5, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")
    deep_supervision: bool = Field(
        False, description="Train a 1x1 head on every top node X^{0,1..depth}, not only on X^{0,depth}."
    )
    inference: Literal["last", "mean"] = Field(
        "last",
        description="Eval output under deep supervision: the last head, or the mean of all heads' logits.",
    )


class UNetPlusPlusParams(BlockChoices, UNetPlusPlusShape):
    """Hyperparameters of U-Net++ (pydantic lists the last base's fields first: the shape, then blocks)."""


class UNetPlusPlus(nn.Module):
    """U-Net++: training mode returns a list of logits (coarse to final), eval mode one tensor."""

    def __init__(
        self,
        params: UNetPlusPlusShape,
        in_channels: int,
        num_classes: int,
        *,
        encoder: Factory | None = None,
        bottleneck: Factory | None = None,
        decoder: Factory | None = None,
        fusion: Factory | None = None,
    ):
        super().__init__()
        self.depth = params.depth
        self.multiple = 2**params.depth
        self.inference = params.inference
        widths = [params.width * 2**level for level in range(params.depth + 1)]

        def plain(in_ch: int, out_ch: int) -> nn.Module:
            return DoubleConv(in_ch, out_ch, params.norm)

        encoder, bottleneck, decoder = encoder or plain, bottleneck or plain, decoder or plain
        # The bottleneck X^{depth,0} stays the last encoder: the module names of a default model stay.
        self.encoders = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(widths):
            self.encoders.append((bottleneck if level == params.depth else encoder)(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(params.dropout)
        # ups[i][j - 1] and nodes[i][j - 1] build X^{i,j}; level i has depth - i nested nodes.
        self.ups = nn.ModuleList()
        self.nodes = nn.ModuleList()
        for level in range(params.depth):
            columns = range(1, params.depth - level + 1)
            self.ups.append(
                nn.ModuleList(
                    nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for _ in columns
                )
            )
            self.nodes.append(nn.ModuleList(decoder((j + 1) * widths[level], widths[level]) for j in columns))
        # fusions[i][j - 1] fuses X^{i,0..j-1} with X^{i+1,j-1}; absent (not empty) without a fusion block.
        self.fusions = None
        if fusion is not None:
            self.fusions = nn.ModuleList(
                nn.ModuleList(
                    fusion(j * widths[level], widths[level + 1]) for j in range(1, params.depth - level + 1)
                )
                for level in range(params.depth)
            )
        # Only the heads that get a loss exist, so every parameter receives a gradient in training.
        heads = params.depth if params.deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], num_classes, 1) for _ in range(heads))

    def _grid(self, images: torch.Tensor) -> list[list[torch.Tensor]]:
        """All nodes: grid[i][j] is X^{i,j}."""
        grid: list[list[torch.Tensor]] = []
        x = images
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            grid.append([x])
        grid[-1][0] = self.dropout(grid[-1][0])
        for column in range(1, self.depth + 1):
            for level in range(self.depth - column + 1):
                below = grid[level + 1][column - 1]
                skips = torch.cat(grid[level], dim=1)
                if self.fusions is not None:
                    skips = self.fusions[level][column - 1](skips, below)
                up = self.ups[level][column - 1](below)
                grid[level].append(self.nodes[level][column - 1](torch.cat([skips, up], dim=1)))
        return grid

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(images, self.multiple, "unetpp")
        top = self._grid(images)[0]
        outputs = [head(node) for head, node in zip(self.heads, top[-len(self.heads) :], strict=True)]
        if self.training:
            return outputs
        if self.inference == "mean":
            return torch.stack(outputs).mean(dim=0)
        return outputs[-1]


def build(params: UNetPlusPlusParams, *, in_channels: int, num_classes: int) -> nn.Module:
    blocks = block_factories(params)
    return UNetPlusPlus(
        params,
        in_channels,
        num_classes,
        encoder=blocks["encoder"],
        bottleneck=blocks["bottleneck"],
        decoder=blocks["decoder"],
        fusion=blocks["skip"],
    )


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="unetpp",
            summary="U-Net++ (Zhou 2018): nested dense skips, optional deep supervision; blocks by name",
            params=UNetPlusPlusParams,
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_263_493,
            # Static flag: with the param off, training mode still returns a one-element list.
            deep_supervision=True,
        )
    ]
