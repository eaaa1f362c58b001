"""DeepLabV3+ (Chen et al. 2018) trained from scratch: a dilated ResNet, ASPP and a light decoder.

The backbone is a small ResNet of basic blocks. Its last stage(s) trade stride for dilation so the
deepest features stay at 1/`output_stride` of the input; atrous spatial pyramid pooling (ASPP) looks at
them at several rates plus a global context branch, and the decoder fuses the result with stride-4
features before a bilinear up-sampling back to the input size.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import Norm, check_input_size, conv_norm_act, norm_layer

Rate = Annotated[int, Field(ge=1, le=36)]


class DeepLabParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(
        32, ge=4, le=128, description="Channels of the stem and first stage; doubled at each later stage."
    )
    blocks: list[Annotated[int, Field(ge=1, le=8)]] = Field(
        [2, 2, 2, 2], min_length=4, max_length=4, description="Basic residual blocks in each of the 4 stages."
    )
    output_stride: Literal[8, 16] = Field(
        8, description="Input size / backbone output size; dilation replaces the strides beyond it."
    )
    # The paper's rates (6, 12, 18 at OS16; doubled at OS8) suit 513x513 crops, whose OS8 map is 65x65.
    # A 64x128 image gives an 8x16 map at OS8 (4x8 at OS16), where those rates put nearly every
    # off-centre tap in the zero padding and leave each atrous branch little more than a 1x1 conv.
    # 2, 4, 6 span roughly the fraction of our map that the paper's rates spanned of theirs.
    atrous_rates: list[Rate] = Field(
        [2, 4, 6], min_length=1, max_length=6, description="Dilation of each 3x3 ASPP branch."
    )
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout after the ASPP projection.")


def _conv(
    in_channels: int, out_channels: int, norm: str, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """3x3 conv + norm + ReLU that may stride (conv_norm_act never does)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=norm == "none"
        ),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block, with a 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, stride: int, dilation: int):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, norm, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(
                out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=norm == "none"
            ),
            norm_layer(norm, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=norm == "none"),
                norm_layer(norm, out_channels),
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def _stage_strides(output_stride: int) -> list[tuple[int, int]]:
    """(stride, dilation) of the four stages: the stem reaches stride 4 and stage 1 keeps it."""
    if output_stride == 16:
        return [(1, 1), (2, 1), (2, 1), (1, 2)]
    return [(1, 1), (2, 1), (1, 2), (1, 4)]


class Backbone(nn.Module):
    """A ResNet of basic blocks; returns (stride-4 low-level features, stride-`output_stride` features)."""

    def __init__(self, params: DeepLabParams, in_channels: int):
        super().__init__()
        width, norm = params.width, params.norm
        self.stem = nn.Sequential(
            _conv(in_channels, width, norm, stride=2),
            _conv(width, width, norm),
            nn.MaxPool2d(3, 2, padding=1),
        )
        self.widths = [width * 2**stage for stage in range(4)]
        self.stages = nn.ModuleList()
        previous = width
        for channels, count, (stride, dilation) in zip(
            self.widths, params.blocks, _stage_strides(params.output_stride), strict=True
        ):
            blocks = [BasicBlock(previous, channels, norm, stride, dilation)]
            blocks += [BasicBlock(channels, channels, norm, 1, dilation) for _ in range(count - 1)]
            self.stages.append(nn.Sequential(*blocks))
            previous = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.stages[0](self.stem(x))
        high = low
        for stage in self.stages[1:]:
            high = stage(high)
        return low, high


class ImagePooling(nn.Module):
    """ASPP's global-context branch: average the whole map, 1x1 conv, spread back over every pixel."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        # BatchNorm sees a single value per channel at batch 1 (training raises) and InstanceNorm would
        # zero a 1x1 map, so this branch normalises across channel groups instead.
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=norm == "none"),
            norm_layer("none" if norm == "none" else "group", out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bilinear up-sampling of a 1x1 map is a broadcast; expand does it without copying.
        return self.conv(self.pool(x)).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate and image pooling, concatenated and projected."""

    def __init__(self, in_channels: int, out_channels: int, rates: list[int], norm: str, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList([conv_norm_act(in_channels, out_channels, norm, kernel=1)])
        self.branches.extend(conv_norm_act(in_channels, out_channels, norm, dilation=rate) for rate in rates)
        self.branches.append(ImagePooling(in_channels, out_channels, norm))
        self.project = nn.Sequential(
            conv_norm_act(len(self.branches) * out_channels, out_channels, norm, kernel=1),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3Plus(nn.Module):
    """Dilated ResNet + ASPP, decoded with the stride-4 features, up-sampled bilinearly to the input."""

    def __init__(self, params: DeepLabParams, in_channels: int, num_classes: int):
        super().__init__()
        self.multiple = params.output_stride
        self.backbone = Backbone(params, in_channels)
        # Half the top stage's width (128 at the default): ASPP concatenates len(rates) + 2 branches, so
        # full-width branches would make the projection the largest layer of the network.
        aspp_channels = self.backbone.widths[-1] // 2
        # The paper reduces the low-level features to 48 so they do not outweigh the ASPP context; this
        # is 1.5x width (48 at the default), kept a multiple of 8 so GroupNorm's 8 groups divide it.
        low_channels = max(8, 3 * params.width // 2 // 8 * 8)
        self.aspp = ASPP(
            self.backbone.widths[-1], aspp_channels, params.atrous_rates, params.norm, params.dropout
        )
        self.reduce = conv_norm_act(self.backbone.widths[0], low_channels, params.norm, kernel=1)
        self.decoder = nn.Sequential(
            conv_norm_act(aspp_channels + low_channels, aspp_channels, params.norm),
            conv_norm_act(aspp_channels, aspp_channels, params.norm),
        )
        self.head = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input_size(images, self.multiple, "deeplab")
        low, high = self.backbone(images)
        low = self.reduce(low)
        context = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.head(self.decoder(torch.cat([context, low], dim=1)))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build(params: DeepLabParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return DeepLabV3Plus(params, in_channels, num_classes)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="deeplab",
            summary="DeepLabV3+ (Chen 2018): dilated ResNet, ASPP and a decoder fusing stride-4 features",
            params=DeepLabParams,
            build=build,
            input_multiple=lambda params: params.output_stride,
            params_count=4_190_469,
        )
    ]
