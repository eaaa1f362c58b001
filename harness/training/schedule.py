"""Learning-rate schedules the loop drives: per optimizer step and once per epoch with the val mIoU.

- `plateau`: linear warm-up, then reduce-on-plateau on validation mIoU (open-ended runs).
- `onecycle`: warm up to the peak LR, then cosine-anneal to almost zero, sized to the run's end. The end is
  whichever comes first of the epoch limit and the time budget (`--max-minutes`): progress is the larger
  of the fraction of steps taken and the fraction of the budget spent, so a 10-minute run anneals fully
  in 10 minutes however fast the machine is.

Both keep their progress in `state_dict()`, which checkpoints store so a resumed run continues the curve.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch


class Clock(Protocol):
    def fraction_spent(self) -> float:
        """Share of the time budget used so far (0 when there is no budget)."""


class Schedule:
    """The interface the loop uses; `lr` is what the first parameter group runs at now."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.base = [group["lr"] for group in optimizer.param_groups]

    def step_batch(self) -> None:  # before each optimizer step
        pass

    def step_epoch(self, score: float) -> None:  # after each validation
        pass

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _set(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PlateauSchedule(Schedule):
    """Linear warm-up from lr/steps to lr over `warmup_steps`, then ReduceLROnPlateau on the val mIoU."""

    def __init__(self, optimizer, warmup_steps: int, *, factor: float, patience: int, min_lr: float):
        super().__init__(optimizer)
        self.warmup_steps, self.done = max(warmup_steps, 0), 0
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=factor, patience=patience, min_lr=min_lr
        )

    @property
    def warmed_up(self) -> bool:
        return self.done >= self.warmup_steps

    def step_batch(self) -> None:
        if self.warmed_up:
            return
        self.done += 1
        self._set(self.done / self.warmup_steps)

    def step_epoch(self, score: float) -> None:
        if self.warmed_up:  # cutting the LR while it is still ramping up would fight the ramp
            self.plateau.step(score)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])
        self.plateau.load_state_dict(state["plateau"])


class OneCycleSchedule(Schedule):
    """Cosine warm-up from lr/`div` to lr over `pct` of the run, then cosine down to lr/`final_div`."""

    def __init__(
        self,
        optimizer,
        total_steps: int,
        clock: Clock,
        *,
        pct: float = 0.25,
        div: float = 25.0,
        final_div: float = 1e4,
    ):
        super().__init__(optimizer)
        self.total_steps, self.clock = max(total_steps, 1), clock
        self.pct, self.div, self.final_div = pct, div, final_div
        self.done = 0
        self._set(self.factor(0.0))

    def progress(self) -> float:
        return min(max(self.done / self.total_steps, self.clock.fraction_spent()), 1.0)

    def factor(self, progress: float) -> float:
        """The LR multiplier at `progress` in [0, 1]."""
        if progress < self.pct:
            start, end, t = 1 / self.div, 1.0, progress / self.pct
        else:
            start, end, t = 1.0, 1 / self.final_div, (progress - self.pct) / max(1 - self.pct, 1e-9)
        return end + (start - end) * (1 + math.cos(math.pi * t)) / 2

    def step_batch(self) -> None:
        self._set(self.factor(self.progress()))
        self.done += 1

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])
        self._set(self.factor(self.progress()))
