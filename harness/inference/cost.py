"""Model cost: parameter count and forward FLOPs at the challenge's input size."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CHALLENGE_SIZE = (64, 128)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_gflops(model: nn.Module, in_channels: int = 1, size: tuple[int, int] = CHALLENGE_SIZE) -> float:
    """GFLOPs (1e9 floating-point operations, a multiply-add counting 2) of one eval forward of one image.

    Inside the model's `cost_probe()` when it has one (see `ArchitectureSpec`), so a detector measured
    before training counts the detections it will make after it."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    # A model whose work depends on what it has learnt (a detector's masks) measures its full work.
    probe = getattr(model, "cost_probe", None)
    try:
        with torch.no_grad(), probe() if probe else nullcontext(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, *size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
