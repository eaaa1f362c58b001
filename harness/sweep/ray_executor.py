"""`harness sweep --executor ray`: every planned run is one Ray task, on a local Ray or a cluster.

The sweep is planned by harness.sweep.plan and filtered (finished runs skipped) by
harness.sweep.local's `run_sweep` exactly as for the local executor; Ray only decides where and when
each run trains. A task gets the run's configuration as plain data, loads the plugins in its own
process, resolves the configuration again (its hash must match the driver's, or the skip logic would
lie) and calls `harness.training.run.execute` like any other run. The task is given no store path: it
records into a `harness.cluster.recorder.RemoteStore`, which forwards every write to the sweep's one
`Recorder`, an actor on the driver's node that owns the store, and sends the run's files home to the
driver's run folder when the run ends. So workers may be on any machine of the cluster.

Resources (harness.cluster.session): one GPU per run when the cluster has GPUs, otherwise
`HARNESS_RAY_CPUS_PER_RUN` CPUs (default 1) per run; Ray queues what does not fit. A task whose worker
or node dies is recorded 'interrupted' with Ray's reason (a rerun trains it again). Ctrl-C cancels the
outstanding tasks (a run in progress records itself as interrupted) and re-raises.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.cluster.recorder import start_recorder
from harness.cluster.session import connect, cpus_per_run, import_ray, plugin_selection, task_options
from harness.cluster.worker import train_on_worker
from harness.store import RunStore
from harness.sweep.local import Executor, Outcome, SweepReporter, outcome_fields
from harness.sweep.plan import PlannedRun

# How long Ctrl-C waits for cancelled runs to record themselves as interrupted before the driver leaves.
CANCEL_GRACE_S = 10.0


def ray_executor(
    address: str | None, cpus: float | None = None, gpus_per_run: float | None = None
) -> Executor:
    """An executor (see harness.sweep.local.Executor) that trains each run as a Ray task.

    `address`: an existing cluster to join (`ray://head:10001`, `auto`, `host:6379`); None starts a local
    Ray instance sized to this machine for the sweep and stops it afterwards. A missing ray package is a
    HarnessError here, before anything runs.
    """
    ray = import_ray()
    cpus = cpus_per_run(cpus)

    def execute_runs(runs: list[PlannedRun], store_path: Path, registry: Any, reporter: SweepReporter):
        if not runs:
            return  # everything was finished already: no need to start Ray at all
        # Created (schema and WAL mode) here, so a bad store is refused before Ray starts.
        store_path = Path(store_path).expanduser().resolve()
        RunStore(store_path).close()
        started_ray = connect(ray, address)
        try:
            recorder = start_recorder(ray, store_path)
            try:
                _drive(ray, runs, recorder, registry, reporter, cpus, gpus_per_run)
            finally:
                ray.get(recorder.close.remote())
                ray.kill(recorder)
        finally:
            if started_ray:
                ray.shutdown()

    return execute_runs


def _drive(
    ray: Any,
    runs: list[PlannedRun],
    recorder: Any,
    registry: Any,
    reporter: SweepReporter,
    cpus: float,
    gpus: float | None = None,
) -> None:
    """Submit every run, then report each outcome as its task completes, in completion order."""
    blocked, autoload = plugin_selection(registry)
    task = ray.remote(train_task).options(**task_options(ray, cpus, gpus))
    pending: dict[Any, tuple[PlannedRun, str, float]] = {}  # task -> (run, its ticket, submitted)
    try:
        for number, planned in enumerate(runs):
            config, ticket = planned.config.model_dump(mode="json"), f"task-{number}"
            ref = task.remote(config, planned.resolved.hash, recorder, ticket, blocked, autoload)
            pending[ref] = (planned, ticket, time.monotonic())
            reporter.started(planned)  # handed to Ray: it starts when the cluster has room
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                planned, ticket, submitted = pending.pop(ref)
                reporter.finished(_outcome(ray, ref, recorder, planned, ticket, submitted))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a running task gets KeyboardInterrupt: execute records it as interrupted
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for planned, ticket, submitted in pending.values():
            run_id = ray.get(recorder.lost.remote(ticket, "the sweep was cancelled (Ctrl-C)"))
            reporter.finished(Outcome(planned, "interrupted", run_id, seconds=time.monotonic() - submitted))
        raise


def _outcome(
    ray: Any, ref: Any, recorder: Any, planned: PlannedRun, ticket: str, submitted: float
) -> Outcome:
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the worker died (OOM, node lost) or the task was cancelled
        cause = getattr(exc, "cause", None) or exc
        message = f"{type(cause).__name__}: {cause}".splitlines()[0]
        # Its run never recorded an outcome: the driver records it, so the store does not wait for a lease.
        run_id = ray.get(recorder.lost.remote(ticket, f"its Ray task was lost: {message}"))
        return Outcome(planned, "interrupted", run_id, error=message, seconds=time.monotonic() - submitted)
    return Outcome(planned, **result)


def train_task(
    config: dict[str, Any], expected_hash: str, recorder: Any, ticket: str, blocked: list[str], autoload: bool
) -> dict[str, Any]:
    """One run inside a Ray worker, recorded through `recorder` (the driver's; this process never opens
    the store); returns the fields of its Outcome (never raises for a failed run)."""

    def train():
        return train_on_worker(config, expected_hash, recorder, ticket, blocked, autoload, exclusive=True)

    return outcome_fields(train)
