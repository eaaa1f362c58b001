"""A run's files beside the store, and `harness run --resume RUN_ID`.

Each run directory holds `best.pt` (the best epoch's weights and metadata, what evaluate and predict
load), `last.pt` (written at every epoch end: weights, optimizer moments and step count, LR schedule,
GradScaler, loop state and RNG state, what `--resume` continues from) and `val_per_image.npz` (the best
epoch's confusion matrix per validation image, what `harness compare` bootstraps over). Every write is
atomic; every load uses weights_only=True and names the file when it fails.

Resuming rebuilds the run from its stored configuration, loads its last checkpoint and trains the epochs
after it under the same run id: epoch numbers, optimizer steps, the schedule and early stopping carry on
as if the run had never stopped. The configuration cannot change, except the epoch limit (`epochs`,
which also updates the stored config and its hash) and the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from harness.config import Resolved, RunConfig, resolve
from harness.errors import ConfigError, HarnessError
from harness.inference.scoring import Normalisation
from harness.store import RunStore, presumed_dead
from harness.training.checkpoint_checks import (
    CheckpointError,
    check_continuable,
    check_normalisation,
    fit_weights,
    last_problem,
)

CHECKPOINT_NAME = "best.pt"
LAST_CHECKPOINT_NAME = "last.pt"
PER_IMAGE_NAME = "val_per_image.npz"
CHECKPOINT_FORMAT = 1

_LAST_KEYS = ("state_dict", "epoch", "optimizer", "schedule", "loop", "rng")


def save_checkpoint(path: Path, model: nn.Module, **meta: Any) -> None:
    """Weights plus plain-data metadata (config, normalisation, epoch, metrics): loadable weights_only.

    Atomic: written to a temporary file, flushed to disk, then renamed over `path`, so a crash or a kill
    at any moment leaves either the previous checkpoint or the new one, never a half-written file.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, "state_dict": state, **meta}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True (no pickled code is ever executed).

    A missing, truncated, corrupted or foreign file raises `CheckpointError` naming it.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (did the run stop before its first epoch?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # RuntimeError, UnpicklingError, EOFError...: it depends on the damage
        raise CheckpointError(f"{path}: not a readable checkpoint ({_load_failure(exc)})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a harness checkpoint (no state_dict)")
    return checkpoint


def _load_failure(exc: Exception) -> str:
    text = str(exc).strip()
    if "weights only load failed" in text.lower():
        return "it holds pickled objects beyond tensors and plain data; they were refused, not loaded"
    first = (text.splitlines() or [""])[0][:120]
    return f"truncated or corrupted: {type(exc).__name__}{': ' + first if first else ''}"


def load_best_model(record: dict[str, Any], registry: Any) -> tuple[Resolved, nn.Module, Normalisation]:
    """A recorded run's resolved config and its best checkpoint in a ready model (eval mode, on the CPU):
    what `evaluate`, `predict` and the report's overlays load."""
    if not record.get("checkpoint"):
        raise HarnessError(f"run {record['run_id']} ({record['status']}) has no checkpoint to load")
    resolved = resolve(stored_config(record), registry)
    path = Path(record["checkpoint"])
    checkpoint = load_checkpoint(path)
    model = resolved.arch.build(
        resolved.arch_params, in_channels=1, num_classes=resolved.config.data.num_classes
    )
    mean, std = check_normalisation(checkpoint, path)
    fit_weights(model, checkpoint["state_dict"], path)
    model.eval()
    return resolved, model, Normalisation(mean, std)


def stored_config(record: dict[str, Any]) -> RunConfig:
    """The run's stored configuration, validated; a tampered one is refused in one line naming the run."""
    try:
        return RunConfig.model_validate(record["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise HarnessError(
            f"run {record['run_id']}: its stored configuration is not valid ({where}: {first['msg']}); "
            "the store was changed by hand or is damaged"
        ) from None


def save_per_image(path: Path, indices: torch.Tensor, confusion: torch.Tensor) -> None:
    """Atomically write the validation rows and their (N, K, K) confusion matrices."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, indices=indices.cpu().numpy(), confusion=confusion.cpu().numpy())
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------
# The last checkpoint: written at every epoch end, continued from by --resume


def save_last(
    path: Path,
    model: nn.Module,
    optimizer,
    schedule,
    *,
    loop: dict[str, Any],
    scaler,
    normalisation: list[float],
    device: torch.device,
    ema: dict[str, Any] | None = None,
) -> None:
    """The checkpoint `--resume` continues from: weights, optimizer (moments and step count), LR schedule,
    GradScaler, loop state (`loop`, with its `epochs`), the weight average (`train.ema`) and RNG state
    after an epoch, written atomically like best.pt."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(
        path,
        model,
        epoch=loop["epochs"],
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
        scaler=None if scaler is None else scaler.state_dict(),
        loop=loop,
        rng=rng,
        normalisation=normalisation,
        **({} if ema is None else {"ema": ema}),
    )


def restore(last: dict[str, Any], model: nn.Module, optimizer, schedule, scaler) -> None:
    """Continue where a last checkpoint left off: weights, optimizer, schedule, GradScaler, RNG streams."""
    model.load_state_dict(last["state_dict"])
    optimizer.load_state_dict(last["optimizer"])
    schedule.load_state_dict(last["schedule"])
    if scaler is not None and last.get("scaler"):
        scaler.load_state_dict(last["scaler"])
    torch.set_rng_state(last["rng"]["torch"])
    cuda_states = last["rng"].get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


@dataclass
class ResumePoint:
    """Where `--resume` continues a run: its id, its last checkpoint and what earlier sessions recorded."""

    run_id: str
    last: dict[str, Any]  # the last checkpoint (see save_last)
    history: list[dict[str, Any]]  # the epochs logged up to the checkpoint
    wall_time: float = 0.0  # seconds spent by earlier sessions
    path: Path | None = None  # the last checkpoint's file, named when it is refused

    @property
    def epoch(self) -> int:
        return int(self.last["epoch"])

    def state_fields(self) -> dict[str, Any]:
        """The loop state to continue from (the fields of `LoopState`), history up to the checkpoint."""
        return {**self.last["loop"], "history": [h for h in self.history if h["epoch"] <= self.epoch]}


def plan_resume(
    store_path: str | Path,
    run_id: str,
    registry: Any,
    *,
    epochs: int | None = None,
    device: str | None = None,
) -> tuple[Resolved, ResumePoint]:
    """The configuration to rebuild and the point to continue from; reads the store, writes nothing.

    Refused with one line (HarnessError): a run that is still running, a diverged run, a finished run
    without a higher `epochs`, an `epochs` not above the epochs already trained, a run without a
    readable last checkpoint.
    """
    with RunStore(store_path, create=False) as store:
        record = store.get_run(run_id)
        run_id = record["run_id"]
        history = store.history(run_id)
    _check_status(record, epochs)
    path = store.run_dir(run_id) / LAST_CHECKPOINT_NAME
    last = _load_last(path, run_id)
    done = int(last["epoch"])
    if done > max((row["epoch"] for row in history), default=0):
        raise CheckpointError(f"{path}: its epoch {done} is beyond the epochs the store has for run {run_id}")
    config = stored_config(record)
    limit = config.train.epochs if epochs is None else epochs
    if limit <= done:
        if epochs is not None:
            raise ConfigError(f"run {run_id} has trained {done} epochs; --epochs must be more than {done}")
        raise ConfigError(
            f"run {run_id} has trained all {done} of its epochs; give --epochs N (N > {done}) to train more"
        )
    train = config.train.model_copy(update={"epochs": limit, **({"device": device} if device else {})})
    resolved = resolve(config.model_copy(update={"train": train}), registry)
    point = ResumePoint(
        run_id=run_id, last=last, history=history, wall_time=record["wall_time"] or 0.0, path=path
    )
    return resolved, point


def _check_status(record: dict[str, Any], epochs: int | None) -> None:
    run_id, status = record["run_id"], record["status"]
    if status == "running" and presumed_dead(record) is None:
        raise HarnessError(
            f"run {run_id} is running in another process (its heartbeat is fresh); stop that process first"
        )
    if status == "diverged":
        raise HarnessError(
            f"run {run_id} diverged ({record['error']}); resuming would repeat it: start a new run with a "
            "lower train.lr"
        )
    if status == "finished" and epochs is None:
        raise HarnessError(
            f"run {run_id} is finished after {record['epochs']} epochs; give --epochs N to train it further"
        )


def _load_last(path: Path, run_id: str) -> dict[str, Any]:
    if not path.is_file():
        raise HarnessError(
            f"run {run_id} has no last checkpoint ({path}): it stopped before its first epoch ended, or was "
            "recorded by a harness without --resume; start a new run"
        )
    last = load_checkpoint(path)
    missing = [key for key in _LAST_KEYS if key not in last]
    if missing:
        raise CheckpointError(f"{path}: not a last checkpoint (missing {', '.join(missing)})")
    problem = last_problem(last)
    if problem:
        raise CheckpointError(f"{path}: not a usable last checkpoint ({problem}); start a new run")
    check_normalisation(last, path)
    return last


def check_fits(model: nn.Module, resume: ResumePoint | None) -> None:
    """A resumed run's last checkpoint must load into the model its config builds, before anything is
    written (a plugin changed since would otherwise mark the run failed)."""
    if resume is None:
        return
    path = resume.path or Path(f"run {resume.run_id}'s last checkpoint")
    fit_weights(model, resume.last["state_dict"], path)
    check_continuable(resume.last, model, path)
