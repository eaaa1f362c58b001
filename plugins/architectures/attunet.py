"""Attention U-Net (Oktay et al. 2018): a U-Net whose skip connections pass through attention gates.

Each gate scores the skip's pixels with additive attention against the coarser decoder level (the
gating signal), scales the skip by the resulting coefficients in [0, 1] and passes the result through
the reference's output transform W (a 1x1 conv + norm) before concatenation. With `deep_supervision`, a
1x1 head on every decoder level gives logits (up-sampled to the input) that each get a loss, as in
unetpp; the paper's deep supervision fuses such side outputs, this keeps them separate and scores the
final head. Departure: the gate's coefficients are bilinearly resampled to the skip (the paper's too)
from a 2x2 stride-2 W_x, as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures.layers import Norm, norm_layer
from plugins.architectures.unet import UNet


class AttentionUNetParams(BaseModel):
    """Hyperparameters of Attention U-Net."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(4, ge=1, le=5, description="Number of 2x down-sampling steps.")
    width: int = Field(16, ge=4, le=128, description="Channels of the first level; doubled at each level.")
    norm: Norm = Field("batch", description="Normalisation layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Channel dropout in the bottleneck.")
    attention_channels_ratio: float = Field(
        0.5, gt=0.0, le=2.0, description="Intermediate channels of each gate, as a fraction of the skip's."
    )
    deep_supervision: bool = Field(
        False, description="Train a 1x1 head on every decoder level, not only on the last (as unetpp)."
    )


class AttentionGate(nn.Module):
    """Additive attention gate: alpha = sigmoid(psi(relu(W_x x + W_g g))), resampled to x's size; the
    gated skip is W(alpha * x), W a 1x1 conv + norm (the reference's output transform).

    `psi` ends with the sigmoid, so a forward hook on it sees the coefficients at the gating resolution.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int, norm: str = "batch"):
        super().__init__()
        # A 2x2 stride-2 W_x (the paper's reference code) brings x to g's grid while every skip pixel
        # still contributes; a strided 1x1 would ignore three pixels out of four.
        self.w_x = nn.Conv2d(skip_channels, inter_channels, 2, stride=2, bias=False)
        self.w_g = nn.Conv2d(gate_channels, inter_channels, 1)
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.Sigmoid())
        self.w = nn.Sequential(
            nn.Conv2d(skip_channels, skip_channels, 1, bias=norm == "none"), norm_layer(norm, skip_channels)
        )

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) attention coefficients in [0, 1] at the skip's resolution."""
        alpha = self.psi(F.relu(self.w_x(skip) + self.w_g(gate)))
        # Bilinear weights are convex, so the resampled coefficients stay in [0, 1].
        return F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.w(skip * self.coefficients(skip, gate))


class AttentionUNet(UNet):
    """U-Net with an attention gate on every skip, gated by the decoder level just below it."""

    def __init__(self, params: AttentionUNetParams, in_channels: int, num_classes: int):
        ratio = params.attention_channels_ratio

        def gate(skip_channels: int, gating_channels: int) -> AttentionGate:
            inter = max(1, round(skip_channels * ratio))
            return AttentionGate(skip_channels, gating_channels, inter, params.norm)

        super().__init__(
            params,
            in_channels,
            num_classes,
            gate=gate,
            name="attunet",
            deep_supervision=params.deep_supervision,
        )


def build(params: AttentionUNetParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return AttentionUNet(params, in_channels, num_classes)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="attunet",
            summary="Attention U-Net (Oktay 2018): additive attention gates + W transform on the skips, "
            "optional deep supervision",
            params=AttentionUNetParams,
            revision=1,  # 1: the W transform on the gated skip
            build=build,
            input_multiple=lambda params: 2**params.depth,
            params_count=2_030_121,
            # Static flag, as unetpp: with the param off, training mode returns a one-element list.
            deep_supervision=True,
        )
    ]
