"""Ensembles: several runs' softmax probabilities averaged (optionally weighted) into one prediction.

Each run keeps its own input normalisation: the ensemble takes raw pixel values (the `RAW`
normalisation) and every member normalises them as it was trained to. Members must agree on what a
prediction means (the classes, their names and the ignored class); the first pair that differs is named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError
from harness.inference.scoring import Normalisation
from harness.inference.tta import mean_log_probs

# Pixel values as they are (0-255): the ensemble's members normalise them themselves.
RAW = Normalisation(mean=0.0, std=1.0)


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its model, normalisation, size multiple and what its classes mean."""

    name: str
    model: nn.Module
    norm: Normalisation
    multiple: int
    handling: dict[str, Any] = field(default_factory=dict)


def check_agree(members: list[Member]) -> None:
    """Refuse, in one line naming the two runs, members that differ on classes or input handling."""
    first = members[0]
    for other in members[1:]:
        for key, value in first.handling.items():
            if other.handling.get(key) != value:
                raise HarnessError(
                    f"runs {first.name} and {other.name} differ on {key} ({value!r} vs "
                    f"{other.handling.get(key)!r}); an ensemble needs runs that predict the same classes"
                )


def check_weights(weights: list[float] | None, count: int) -> list[float]:
    """One non-negative weight per member, not all zero; equal weights when None."""
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise HarnessError(f"--weights gives {len(weights)} weights for {count} runs; give one per run")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise HarnessError(f"--weights {weights}: weights must be finite, >= 0 and not all 0")
    return list(weights)


class Ensemble(nn.Module):
    """Raw (B,1,H,W) pixels in; the log of the members' weighted mean softmax probabilities out."""

    def __init__(self, members: list[Member], weights: list[float] | None = None):
        super().__init__()
        check_agree(members)
        self.weights = check_weights(weights, len(members))
        self.models = nn.ModuleList(m.model for m in members)
        self.norms = [m.norm for m in members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for model, norm in zip(self.models, self.norms, strict=True):
            out = model((x - norm.mean) / norm.std)
            outputs.append(out[-1] if isinstance(out, (list, tuple)) else out)
        return mean_log_probs(outputs, self.weights)


def multiple_of(members: list[Member]) -> int:
    """The size multiple every member accepts: their least common multiple."""
    return math.lcm(*(m.multiple for m in members))
