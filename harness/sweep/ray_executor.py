"""`harness sweep --executor ray`: every planned run is one Ray task, on a local Ray or a cluster.

The sweep is planned by harness.sweep.plan and filtered (finished runs skipped) by
harness.sweep.local's `run_sweep` exactly as for the local executor; Ray only decides where and when
each run trains. A task gets the run's configuration as plain data, loads the plugins in its own
process, resolves the configuration again (its hash must match the driver's, or the skip logic would
lie) and calls `harness.training.run.execute`, which records the run in the store like any other run.
The store stays the single source of truth, so every worker must reach the same store file: fine for
workers on one host or a shared local disk, unsafe for SQLite on NFS/SMB.

Resources: one GPU per run when the cluster has GPUs, otherwise `HARNESS_RAY_CPUS_PER_RUN` CPUs (default
1) per run; Ray queues what does not fit. Ctrl-C cancels the outstanding tasks (a run in progress
records itself as interrupted) and re-raises.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.plugins import AUTOLOAD_ENV
from harness.store import RunStore
from harness.sweep.local import Executor, Outcome, SweepReporter
from harness.sweep.plan import PlannedRun

RAY_MISSING = "--executor ray needs ray: pip install 'segharness[ray]'"
CPUS_ENV = "HARNESS_RAY_CPUS_PER_RUN"
# How long Ctrl-C waits for cancelled runs to record themselves as interrupted before the driver leaves.
CANCEL_GRACE_S = 10.0
# Tasks carry a config and return a small dict: the local instance needs little shared memory.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def ray_executor(
    address: str | None, cpus_per_run: float | None = None, gpus_per_run: float | None = None
) -> Executor:
    """An executor (see harness.sweep.local.Executor) that trains each run as a Ray task.

    `address`: an existing cluster to join (`ray://head:10001`, `auto`, `host:6379`); None starts a local
    Ray instance sized to this machine for the sweep and stops it afterwards. A missing ray package is a
    HarnessError here, before anything runs.
    """
    try:
        import ray
    except ImportError:
        raise HarnessError(RAY_MISSING) from None
    cpus = _cpus_per_run(cpus_per_run)

    def execute_runs(runs: list[PlannedRun], store_path: Path, registry: Any, reporter: SweepReporter):
        if not runs:
            return  # everything was finished already: no need to start Ray at all
        # Created (schema and WAL mode) here, once, so concurrent workers never race to initialise it.
        store_path = Path(store_path).expanduser().resolve()
        RunStore(store_path).close()
        started_ray = _connect(ray, address)
        try:
            _drive(ray, runs, store_path, registry, reporter, cpus, gpus_per_run)
        finally:
            if started_ray:
                ray.shutdown()

    return execute_runs


def _cpus_per_run(given: float | None) -> float:
    raw = given if given is not None else os.environ.get(CPUS_ENV, "1")
    try:
        cpus = float(raw)
    except ValueError:
        cpus = -1.0
    if cpus <= 0:
        raise ConfigError(f"{CPUS_ENV} must be a positive number of CPUs per run, got {raw!r}")
    return cpus


def _connect(ray: Any, address: str | None) -> bool:
    """Join `address` or start a local instance; False when this process was already connected."""
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, logging_level=logging.WARNING)
        return True
    import torch

    ray.init(
        num_cpus=os.cpu_count() or 1,
        num_gpus=torch.cuda.device_count(),
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,  # the runs are silent; their outcomes come back as results
        logging_level=logging.WARNING,
        ignore_reinit_error=True,
    )
    return True


def _task_options(ray: Any, cpus: float, gpus: float | None = None) -> dict[str, Any]:
    # max_retries=0: Ray would rerun a task whose worker died, recording the same run twice.
    options: dict[str, Any] = {"num_cpus": cpus, "max_retries": 0}
    if gpus is not None:  # --gpus-per-run, fractional (0.25: four runs share a GPU)
        options["num_gpus"] = gpus
    elif ray.cluster_resources().get("GPU", 0) > 0:
        options["num_gpus"] = 1
    return options


def _plugin_selection(registry: Any) -> tuple[list[str], bool]:
    """The `-p no:NAME` names and the autoload switch the driver loaded its plugins with."""
    blocked = [name for name, plugin in registry.manager.list_name_plugin() if plugin is None]
    return blocked, not os.environ.get(AUTOLOAD_ENV)


def _drive(
    ray: Any,
    runs: list[PlannedRun],
    store_path: Path,
    registry: Any,
    reporter: SweepReporter,
    cpus: float,
    gpus: float | None = None,
) -> None:
    """Submit every run, then report each outcome as its task completes, in completion order."""
    blocked, autoload = _plugin_selection(registry)
    task = ray.remote(train_task).options(**_task_options(ray, cpus, gpus))
    pending: dict[Any, tuple[PlannedRun, float]] = {}
    try:
        for planned in runs:
            config = planned.config.model_dump(mode="json")
            ref = task.remote(config, planned.resolved.hash, str(store_path), blocked, autoload)
            pending[ref] = (planned, time.monotonic())
            reporter.started(planned)  # handed to Ray: it starts when the cluster has room
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                planned, submitted = pending.pop(ref)
                reporter.finished(_outcome(ray, ref, planned, submitted))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a running task gets KeyboardInterrupt: execute records it as interrupted
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for planned, submitted in pending.values():
            reporter.finished(Outcome(planned, "interrupted", seconds=time.monotonic() - submitted))
        raise


def _outcome(ray: Any, ref: Any, planned: PlannedRun, submitted: float) -> Outcome:
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the worker died (OOM, node lost) or the task was cancelled
        cause = getattr(exc, "cause", None) or exc
        message = f"{type(cause).__name__}: {cause}".splitlines()[0]
        return Outcome(planned, "failed", error=message, seconds=time.monotonic() - submitted)
    return Outcome(planned, **result)


def train_task(
    config: dict[str, Any], expected_hash: str, store_path: str, blocked: list[str], autoload: bool
) -> dict[str, Any]:
    """One run inside a Ray worker; returns the fields of its Outcome (never raises for a failed run)."""
    from harness.config import RunConfig, resolve
    from harness.plugins import load_plugins
    from harness.store import RunClaimed
    from harness.training.run import execute

    started = time.monotonic()
    try:
        registry = load_plugins(blocked=blocked, autoload=autoload)
        resolved = resolve(RunConfig.model_validate(config), registry)
        if resolved.hash != expected_hash:
            raise HarnessError(
                f"the configuration resolves to hash {resolved.hash} on this worker but "
                f"{expected_hash} on the driver: install the same harness and plugins on every node"
            )
        result = execute(resolved, store_path, registry, progress=False, exclusive=True)
    except RunClaimed as exc:  # another sweep on this store finished it or is training it now
        return {"status": "skipped", "error": str(exc), "seconds": time.monotonic() - started}
    except Exception as exc:  # recorded as failed by execute (if it got that far); the sweep goes on
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return {"status": "failed", "error": message, "seconds": time.monotonic() - started}
    return {
        "status": result.status,
        "run_id": result.run_id,
        "miou": result.miou,
        "error": result.error,
        "seconds": time.monotonic() - started,
    }
