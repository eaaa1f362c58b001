"""What a checkpoint must hold before the harness trusts it: weights that fit the model, finite values,
the plain data of a last checkpoint, a per-image file's counts. Each refusal is one `CheckpointError`
line naming the file, raised before anything is loaded into a model or written to the store."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError

_LOOP_KEYS = ("epochs", "best_epoch", "best_score", "best_metrics", "images_seen", "train_seconds", "stale")


class CheckpointError(HarnessError):
    """A checkpoint file is missing, truncated, corrupted or not a harness checkpoint."""


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_normalisation(checkpoint: dict[str, Any], path: Path) -> tuple[float, float]:
    """The checkpoint's (mean, std): two finite numbers, std above 0; else ``CheckpointError``."""
    pair = checkpoint.get("normalisation")
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(_number(value) for value in pair)
        or pair[1] <= 0
    ):
        raise CheckpointError(
            f"{path}: not a harness checkpoint (normalisation must be [mean, std], finite with std > 0, "
            f"got {str(pair)[:60]})"
        )
    return float(pair[0]), float(pair[1])


def fit_weights(model: nn.Module, state: Any, path: Path) -> None:
    """Load ``state`` into ``model`` only if it holds exactly the model's tensors, same shapes and kinds,
    all finite; otherwise ``CheckpointError`` naming ``path`` and the first mismatch (the model is untouched
    until every check passed)."""
    expected = model.state_dict()
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a harness checkpoint (no state_dict)")
    missing = [key for key in expected if key not in state]
    unexpected = [str(key) for key in state if key not in expected]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        count = len(missing) + len(unexpected)
        raise CheckpointError(
            f"{path}: its weights do not fit the model its config builds ({what}; {count} keys differ)"
        )
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{path}: weight {key!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{path}: weight {key!r} has shape {tuple(got.shape)}; the model needs {tuple(want.shape)}"
            )
        if got.is_floating_point() != want.is_floating_point() or got.is_complex():
            raise CheckpointError(
                f"{path}: weight {key!r} has dtype {got.dtype}; the model needs {want.dtype}"
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{path}: weight {key!r} holds NaN or infinite values")
    model.load_state_dict(state)


def check_per_image(path: Path, indices: np.ndarray, confusion: np.ndarray, classes: int | None) -> None:
    """Refuse a per-image file whose contents training could not have written (one line naming ``path``):
    negative or repeated row indices, non-integral, negative or non-finite counts, or a K other than the
    run's ``classes`` (at most 256, the classes a uint8 mask holds)."""
    problem = None
    if indices.dtype.kind not in "iu" or (indices.size and indices.min() < 0):
        problem = "its indices must be non-negative integers"
    elif len(np.unique(indices)) != len(indices):
        problem = "its indices repeat a validation image"
    elif confusion.shape[1] > 256 or (classes is not None and confusion.shape[1] != classes):
        problem = (
            f"its confusion matrices are {confusion.shape[1]}x{confusion.shape[1]} for {classes} classes"
        )
    elif confusion.dtype.kind not in "iuf" or not np.isfinite(confusion).all():
        problem = "its confusion matrices hold NaN, infinite or non-numeric counts"
    elif confusion.size and (confusion.min() < 0 or not np.array_equal(confusion, np.rint(confusion))):
        problem = "its confusion matrices hold negative or fractional counts"
    if problem:
        raise CheckpointError(f"{path}: not a per-image file the harness wrote ({problem})")


def last_problem(last: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one return per refusal
    """What is wrong with a last checkpoint's plain data (epoch, loop state, schedule, RNG), or None."""
    epoch, loop = last["epoch"], last["loop"]
    if not _count(epoch, 1):
        return f"epoch must be a whole number of at least 1, got {epoch!r}"
    if not isinstance(loop, dict) or set(loop) - set(_LOOP_KEYS) or loop.get("epochs") != epoch:
        return "its loop state is not the one the harness writes"
    best = loop.get("best_epoch")
    if best is not None and not (_count(best, 1) and best <= epoch):
        return f"best_epoch {loop['best_epoch']!r} is not an epoch it trained"
    counts = ("images_seen", "stale")
    if not all(_count(loop.get(key, 0)) for key in counts) or not _number(loop.get("train_seconds", 0.0)):
        return "its loop counters are not non-negative numbers"
    if not isinstance(loop.get("best_score", 0.0), numbers.Real) or not isinstance(
        loop.get("best_metrics") or {}, dict
    ):
        return "its best score or metrics are not numbers"
    schedule, optimizer, rng = last["schedule"], last["optimizer"], last["rng"]
    if not isinstance(schedule, dict) or not _count(schedule.get("done", 0)):
        return "its schedule state is not the one the harness writes"
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        return "its optimizer state is not a dict with a 'state'"
    if not isinstance(optimizer.get("param_groups"), list) or not optimizer["param_groups"]:
        return "its optimizer state has no param_groups"
    generator = rng.get("torch") if isinstance(rng, dict) else None
    if not isinstance(generator, torch.Tensor) or generator.dtype != torch.uint8:
        return "its RNG state is not a torch generator state"
    if last.get("scaler") is not None and not isinstance(last["scaler"], dict):
        return "its GradScaler state is not a dict"
    return None


def check_continuable(last: dict[str, Any], model: nn.Module, path: Path) -> None:
    """A trial load of a last checkpoint's optimizer and RNG state into a fresh optimizer over ``model``'s
    parameters: a tampered state fails here, before the store is touched."""
    params = list(model.parameters())
    try:
        torch.optim.AdamW(params).load_state_dict(last["optimizer"])
        for index, moments in last["optimizer"]["state"].items():
            for name, value in moments.items():
                if name != "step" and tuple(value.shape) != tuple(params[int(index)].shape):
                    raise ValueError(f"{name} of parameter {index} has shape {tuple(value.shape)}")
                if not bool(torch.isfinite(torch.as_tensor(value)).all()):
                    raise ValueError(f"{name} of parameter {index} is not finite")
        state = torch.get_rng_state()
        torch.set_rng_state(last["rng"]["torch"])
        torch.set_rng_state(state)
    except Exception as exc:  # ValueError, KeyError, IndexError, TypeError, RuntimeError: by the damage
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"{path} holds a state the harness cannot continue from ({reason})") from None
