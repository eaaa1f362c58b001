"""What the loop has finished (LoopState), how long it may go on (Budget), how it fails (Diverged) and how
a hook stops it early (Pruned).

The loop (`harness.training.loop`) updates these; the run (`harness.training.run`) records them, and
an interrupt stores exactly the LoopState reached.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from harness.training.distributed import SINGLE, World


@dataclass
class LoopState:
    """What the loop has finished so far; an interrupt records exactly this."""

    epochs: int = 0
    best_epoch: int | None = None
    best_score: float = -math.inf
    best_metrics: dict[str, Any] | None = None
    images_seen: int = 0
    train_seconds: float = 0.0
    stale: int = 0  # epochs since the best one (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "training"  # or "validation": what an out-of-memory error happened in

    @property
    def img_s(self) -> float | None:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else None

    def to_checkpoint(self) -> dict[str, Any]:
        """The fields a resumed run continues from (history lives in the store)."""
        keep = ("epochs", "best_epoch", "best_score", "best_metrics", "images_seen", "train_seconds", "stale")
        return {name: getattr(self, name) for name in keep}


class Budget:
    """`--max-minutes`: stop training early enough to still validate and record within the budget."""

    def __init__(self, minutes: float | None):
        self.started = time.monotonic()
        self.deadline = self.started + minutes * 60 if minutes else math.inf
        self.eval_seconds = 0.0

    def fraction_spent(self) -> float:
        """Share of the budget used (0 without one); the last validation's time is kept in reserve."""
        if self.deadline == math.inf:
            return 0.0
        usable = max(self.deadline - self.eval_seconds - self.started, 1e-9)
        return (time.monotonic() - self.started) / usable

    def exhausted(self, world: World = SINGLE) -> bool:
        """Out of time; under torchrun out of time on any rank, so that all ranks stop at the same step."""
        out = time.monotonic() + self.eval_seconds >= self.deadline
        if world.size == 1 or self.deadline == math.inf:
            return out
        return world.any(out)


class Diverged(Exception):
    """The training loss became NaN or infinite: the run is recorded 'diverged' and the sweep goes on."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training loss became {loss} in epoch {epoch} (try a lower train.lr)")
        self.epoch = epoch


class Pruned(Exception):
    """Raised by an epoch-end hook (a tuner's pruner): the run stops there and is recorded 'pruned',
    its best epoch, metrics and checkpoints kept (a sweep or study goes on)."""
