"""`train.ema`: an exponential moving average of the weights, which validation, checkpoints and predict use.

After every optimizer step the average moves towards the live weights: avg <- d * avg + (1 - d) * w.
The decay is set per step, d_t = min(train.ema_decay, (1 + t) / (10 + t)) at step t (the warm-up of
TensorFlow's ExponentialMovingAverage with num_updates): early on the average follows the weights closely
(it must not remember the random initialisation), later it spans about the last tenth of the steps so far,
up to the 1 / (1 - ema_decay) steps of the cap. So a 4-epoch run gets an average of its last few hundred
steps, not of a horizon longer than the run, which a fixed decay of 0.999 would be.

BatchNorm: the running mean and variance are buffers, not parameters. They are averaged with the same
decay as the weights (as timm's ModelEmaV3 does), so the averaged model's statistics are the average of
the statistics the recent weights produced, matched to the averaged weights to first order; integer
buffers (num_batches_tracked) are copied. Recomputing them exactly for the averaged weights
(torch.optim.swa_utils.update_bn) would cost a pass over the training split at every validation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

# d_t = (1 + t) / (WARMUP + t): the number of steps after which the cap takes over grows with it.
WARMUP = 10


class WeightAverage:
    """The averaged copy of `model` (`.model`, kept in eval mode) and its step count."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay of the `step`-th update (counting from 0)."""
        return min(self.decay, (1 + step) / (WARMUP + step))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights and buffers (once per optimizer step)."""
        d = self.decay_at(self.steps)
        self.steps += 1
        for mine, theirs in zip(self.model.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1.0 - d)  # avg + (1 - d) (w - avg)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, 1.0 - d)
            else:
                mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        """What `--resume` continues the average from (kept in last.pt)."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"steps": self.steps, "state_dict": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.model.load_state_dict(state["state_dict"])


def make_average(model: nn.Module, train: Any) -> WeightAverage | None:
    """The weight average `train.ema` asks for, or None when it is off."""
    return WeightAverage(model, train.ema_decay) if train.ema else None
