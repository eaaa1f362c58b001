"""A run's lifecycle around the loop: prepare, record, train, and record how it ended.

`execute` prepares the run (bad input fails before the store is opened), marks runs of killed processes
'interrupted', records the new run, trains it with `harness.training.loop.run_loop` under a heartbeat
and the lifecycle hooks, and records its outcome: finished, interrupted (Ctrl-C, SIGTERM), diverged,
failed, or failed for lack of device memory. Under torchrun every rank runs the same path; rank 0 alone
writes.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from harness.config import Resolved
from harness.specs import RunInfo
from harness.store import RunStore
from harness.training.checkpoints import CHECKPOINT_NAME, ResumePoint, check_fits
from harness.training.distributed import SINGLE, NullStore, SilentRegistry, launched_size, process_group
from harness.training.loop import run_loop, steps_per_epoch
from harness.training.prepare import Prepared, check_distributed, prepare_on_device
from harness.training.progress import ConsoleProgress
from harness.training.signals import signals_deferred
from harness.training.state import Budget, Diverged, LoopState, Pruned

log = logging.getLogger("harness")
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


@dataclass
class RunResult:
    """The outcome of one run, as recorded in the store."""

    run_id: str
    status: str
    metrics: dict[str, Any] | None
    epochs: int
    best_epoch: int | None
    wall_time: float
    train_img_s: float | None
    checkpoint: Path | None
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def miou(self) -> float | None:
        return (self.metrics or {}).get("miou_an2dl")


class OutOfMemory(RuntimeError):
    """Device memory ran out; the message names the run, the batch size and the setting to lower."""


def execute(
    resolved: Resolved,
    store_path: str | Path | Any,
    registry,
    *,
    progress: Any = False,
    resume: ResumePoint | None = None,
    exclusive: bool = False,
) -> RunResult:
    """Run one resolved config end to end and record it in the store at `store_path` (or, for a Ray
    worker, into a store-like object that forwards to the driver's store: see `_opened`).

    `progress`: False (silent), True (a console bar) or a factory `(epochs, steps) -> bar` (a sweep's).
    `resume`: continue a recorded run from its last checkpoint instead of starting a new one.
    `exclusive` (sweeps): raise `RunClaimed` instead of training a (config, seed) that the store already
    has finished or running in another live process.

    Everything that can fail on bad input (data, plugins, device) happens before the store is opened,
    so bad input never writes to it. Opening it marks runs of killed processes (stale heartbeat)
    'interrupted'. Ctrl-C (and SIGTERM, through the CLI) records the run as 'interrupted' (keeping its
    checkpoints) and re-raises; a NaN/inf training loss records it as 'diverged' and returns, and so does
    an epoch-end hook raising `Pruned` (recorded 'pruned'); running out of device memory records it as
    'failed' and raises `OutOfMemory` naming the setting to lower; any other exception in training records
    it as 'failed' and re-raises.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: the run is trained with DDP and recorded once,
    by rank 0; every rank returns the same result.
    """
    started = time.monotonic()
    budget = Budget(resolved.config.train.max_minutes)  # counts data loading and model building too
    args = (registry, started, budget, progress, resume, exclusive)
    if launched_size() == 1:
        prep = prepare_on_device(resolved, SINGLE)
        check_fits(prep.model, resume)
        with _opened(store_path) as store:
            _reap(store)
            return _train_recorded(resolved, prep, store, *args)
    with process_group(resolved.config.train.device) as world:
        check_distributed(resolved, world)
        prep = prepare_on_device(resolved, world)
        check_fits(prep.model, resume)
        if not world.is_main:  # the same code paths, writing nothing
            store, registry, progress = NullStore(store_path), SilentRegistry(), False
        else:
            store = RunStore(store_path)
            _reap(store)
        with store:
            return _train_recorded(resolved, prep, store, *args)


def _opened(store: str | Path | Any) -> Any:
    """A path opens the RunStore there; anything else is a store-like recorder used as given (a Ray
    worker's `harness.cluster.recorder.RemoteStore`, which forwards every write to the driver's store)."""
    return RunStore(store) if isinstance(store, str | Path) else store


def _reap(store: RunStore) -> None:
    """Mark interrupted the runs of killed processes (still 'running': process gone or heartbeat stale)."""
    for run in store.reap_stale():
        log.warning("harness: run %s was still 'running' but %s", run["run_id"], run["error"])


def _train_recorded(
    resolved: Resolved,
    prep: Prepared,
    store: RunStore,
    registry,
    started: float,
    budget: Budget,
    progress: Any,
    resume: ResumePoint | None = None,
    exclusive: bool = False,
) -> RunResult:
    """Record the run, train it, and record its outcome (whatever ends it, the store says how)."""
    cfg, world = resolved.config, prep.world
    # A new run's id is random: rank 0's goes to every rank.
    run_id = resume.run_id if resume else world.broadcast_object(new_run_id(cfg.arch.name))
    config_dict = cfg.model_dump(mode="json")
    info = RunInfo(run_id, config_dict, store.run_dir(run_id), _device_label(prep), store.path)
    if resume is not None:
        if world.is_main:
            store.resume_run(run_id, config=config_dict, config_hash=resolved.hash, from_epoch=resume.epoch)
    else:
        _start(store, run_id, resolved, prep, config_dict, exclusive)
    if world.is_main:
        info.run_dir.mkdir(parents=True, exist_ok=True)
    state = LoopState() if resume is None else LoopState(**resume.state_fields())
    earlier = 0.0 if resume is None else resume.wall_time
    beat = store.heartbeat(run_id) if world.is_main else nullcontext()
    status, error = "failed", None
    try:
        with beat:
            registry.hook.harness_run_start(run=info)
            steps = steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world)
            view = ConsoleProgress if progress is True else progress  # a sweep passes its own bar factory
            bars = {"budget_minutes": cfg.train.max_minutes}
            with view(cfg.train.epochs, steps, **bars) if view else nullcontext() as bar:
                run_loop(resolved, prep, info, store, registry, state, budget, bar, resume and resume.last)
        status = "finished" if state.best_metrics is not None else "failed"
        error = None if state.best_metrics is not None else "no epoch produced a validation score"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        exc.run_id = run_id  # the CLI's one line names it
        raise
    except Diverged as exc:  # recorded, not raised: a sweep goes on and the CLI reports the status
        status, error = "diverged", str(exc)
    except Pruned as exc:  # an epoch-end hook (harness tune's pruner) stopped it: recorded, not raised
        status, error = "pruned", str(exc)
    except _OUT_OF_MEMORY as exc:
        error = _oom_message(run_id, cfg.train, state.phase)
        raise OutOfMemory(error) from exc
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        checkpoint = info.run_dir / CHECKPOINT_NAME
        wall_time = earlier + time.monotonic() - started
        with signals_deferred():
            store.finish_run(
                run_id,
                status=status,
                metrics=state.best_metrics,
                epochs=state.epochs,
                best_epoch=state.best_epoch,
                wall_time=wall_time,
                train_img_s=state.img_s,
                error=error,
                checkpoint=str(checkpoint) if checkpoint.exists() else None,
            )
        registry.hook.harness_run_end(run=info, status=status, metrics=state.best_metrics)
    return RunResult(
        run_id=run_id,
        status=status,
        metrics=state.best_metrics,
        epochs=state.epochs,
        best_epoch=state.best_epoch,
        wall_time=wall_time,
        train_img_s=state.img_s,
        checkpoint=info.run_dir / CHECKPOINT_NAME,
        config=config_dict,
        history=state.history,
        error=error,
    )


def new_run_id(arch: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{arch}-{secrets.token_hex(3)}"


def _device_label(prep: Prepared) -> str:
    """The store's device column: where the run happened (`cuda x8 (ddp)` for a torchrun run)."""
    if prep.world.size == 1:
        return str(prep.device)
    return f"{prep.device.type} x{prep.world.size} (ddp)"


def _start(store: RunStore, run_id: str, resolved, prep, config_dict: dict, exclusive: bool) -> None:
    cfg = resolved.config
    store.start_run(
        run_id=run_id,
        config=config_dict,
        config_hash=resolved.hash,
        seed=cfg.seed,
        arch=cfg.arch.name,
        loss=cfg.loss.name,
        balancer=cfg.balancer.name,
        dataset_id=prep.data.dataset_id,
        device=_device_label(prep),
        torch_version=torch.__version__,
        params=prep.params,
        gflops=prep.gflops,
        class_names=list(prep.data.class_names),
        exclusive=exclusive,
        fold=cfg.data.fold,
    )


def _oom_message(run_id: str, train, phase: str) -> str:
    key = "train.eval_batch_size" if phase == "validation" else "train.batch_size"
    size = getattr(train, key.split(".")[1])
    fix = f"lower it, e.g. --set {key}={size // 2}" if size > 1 else "use a smaller model or another device"
    return f"run {run_id} ran out of device memory in {phase} at {key}={size}: {fix}"
