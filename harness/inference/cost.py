"""Model cost: parameter count and forward FLOPs at the challenge's input size."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CHALLENGE_SIZE = (64, 128)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_gflops(model: nn.Module, in_channels: int = 1, size: tuple[int, int] = CHALLENGE_SIZE) -> float:
    """GFLOPs (1e9 floating-point operations, a multiply-add counting 2) of one eval forward of one image."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, *size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
