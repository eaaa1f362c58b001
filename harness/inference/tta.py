"""Test-time augmentation: the model run on flipped (and, on square frames, turned) copies of each batch,
every output mapped back exactly, and the softmax probabilities averaged.

The transforms are the dihedral group of the rectangle or the square. `flips`: identity, horizontal flip,
vertical flip, 180° turn (both flips) — valid on any frame. `d4` adds the four that swap H and W (the 90°
turns and the two transposes), which only a square frame allows; on another frame `d4` runs the flips and
says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

TTA_CHOICES = ("none", "flips", "d4")
# Probabilities below this become it before the log, so a class the model rules out stays finite for the
# losses validation may apply to the averaged output.
_FLOOR = 1e-12


@dataclass(frozen=True)
class Transform:
    """One element of the group: `apply` on the input, `invert` on the output (both on the last two axes)."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    invert: Callable[[torch.Tensor], torch.Tensor]
    swaps_axes: bool = False


def _flip(dims: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.flip(x, dims)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _transpose(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-2, -1)


def _anti_transpose(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, (-2, -1)).transpose(-2, -1)


FLIPS = (
    Transform("identity", _identity, _identity),
    Transform("hflip", _flip((-1,)), _flip((-1,))),
    Transform("vflip", _flip((-2,)), _flip((-2,))),
    Transform("rot180", _flip((-2, -1)), _flip((-2, -1))),
)
TURNS = (
    Transform("rot90", lambda x: torch.rot90(x, 1, (-2, -1)), lambda y: torch.rot90(y, -1, (-2, -1)), True),
    Transform("rot270", lambda x: torch.rot90(x, -1, (-2, -1)), lambda y: torch.rot90(y, 1, (-2, -1)), True),
    Transform("transpose", _transpose, _transpose, True),
    Transform("anti-transpose", _anti_transpose, _anti_transpose, True),
)


def transforms_for(mode: str, height: int, width: int) -> tuple[Transform, ...]:
    """The transforms `mode` runs on an H×W frame: the 90° turns only when the frame is square."""
    if mode not in TTA_CHOICES:
        raise ValueError(f"unknown TTA mode {mode!r} (choices: {', '.join(TTA_CHOICES)})")
    if mode == "none":
        return FLIPS[:1]
    if mode == "d4" and height == width:
        return FLIPS + TURNS
    return FLIPS


def describe(mode: str, height: int, width: int) -> str:
    """One line saying which transforms ran, e.g. for the output of predict and evaluate."""
    names = ", ".join(t.name for t in transforms_for(mode, height, width))
    note = " (90° turns need a square frame)" if mode == "d4" and height != width else ""
    return f"tta {mode} on {height}x{width}: {names}{note}"


def mean_log_probs(outputs: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
    """The log of the (weighted) mean of the softmax probabilities of several logit maps: logits again,
    whose softmax is the average and whose argmax is the averaged prediction."""
    weights = weights or [1.0] * len(outputs)
    total = sum(w * torch.softmax(o.float(), dim=1) for w, o in zip(weights, outputs, strict=True))
    return torch.log((total / sum(weights)).clamp_min(_FLOOR))


class TestTimeAugmented(nn.Module):
    """A model whose output is the log of its softmax probabilities averaged over `transforms`."""

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model = model
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for transform in transforms_for(self.mode, *x.shape[-2:]):
            out = self.model(transform.apply(x))
            if isinstance(out, (list, tuple)):  # deep supervision outside eval mode: the final map
                out = out[-1]
            outputs.append(transform.invert(out))
        return mean_log_probs(outputs)


def with_tta(model: nn.Module, mode: str) -> nn.Module:
    """`model` itself for `none`, else the model under test-time augmentation."""
    transforms_for(mode, 1, 1)  # an unknown mode fails here
    return model if mode == "none" else TestTimeAugmented(model, mode)
