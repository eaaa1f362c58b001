"""`harness run --resume RUN_ID`: continue a recorded run from its last checkpoint.

Every epoch end writes `last.pt` beside `best.pt` (weights, optimizer moments and step count, LR schedule,
loop state, RNG state). Resuming rebuilds the run from its stored configuration, loads that checkpoint and
trains the epochs after it under the same run id: epoch numbers, optimizer steps, the schedule and early
stopping carry on as if the run had never stopped. The configuration cannot change, except the epoch limit
(`epochs`, which also updates the stored config and its hash) and the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import Resolved, RunConfig, resolve
from harness.errors import ConfigError, HarnessError
from harness.inference.scoring import CheckpointError, load_checkpoint
from harness.store.runs import RunStore, presumed_dead
from harness.training.loop import LAST_CHECKPOINT_NAME, ResumePoint

_LAST_KEYS = ("state_dict", "epoch", "optimizer", "schedule", "loop", "rng")


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
    limit = record["config"]["train"]["epochs"] if epochs is None else epochs
    if limit <= done:
        if epochs is not None:
            raise ConfigError(f"run {run_id} has trained {done} epochs; --epochs must be more than {done}")
        raise ConfigError(
            f"run {run_id} has trained all {done} of its epochs; give --epochs N (N > {done}) to train more"
        )
    config = RunConfig.model_validate(record["config"])
    train = config.train.model_copy(update={"epochs": limit, **({"device": device} if device else {})})
    resolved = resolve(config.model_copy(update={"train": train}), registry)
    point = ResumePoint(run_id=run_id, last=last, history=history, wall_time=record["wall_time"] or 0.0)
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
    return last
