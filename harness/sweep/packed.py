"""`harness sweep --jobs N`: N runs at once on one machine, each in a worker process of its own.

The cores are split between the workers: each gets `threads_per_job` threads, set both as
OMP_NUM_THREADS / MKL_NUM_THREADS in its environment (read once, when torch loads, so the workers are
started with `spawn`, a fresh interpreter that has not loaded torch yet) and by `torch.set_num_threads`.
On one GPU the N workers share it (CUDA time-slices between processes; with the CUDA MPS daemon running
their kernels overlap). The driver hands out each planned run exactly once through a queue; every worker
trains with `exclusive=True`, so the store's claim keeps it exact even against other sweeps on the same
store, and a killed sweep resumes like a sequential one.

`--jobs auto` (`auto_jobs`): on CUDA, 4 runs per visible GPU (the models here are 1-4 M parameters: one
run leaves most of a GPU idle); on a CPU, one run per 4 cores (at least 1): threads of one small run
scale well up to a few cores (on a 2-core CPU, 2 threads ran 79 img/s, two 1-thread processes 41.5 +
41.7), so packing pays only once there are more cores than one run uses well. Never more than the runs.

SIGINT or SIGTERM to the sweep: the driver sends SIGTERM to every worker; each records its run
'interrupted' (as a sequential sweep does) and ends; the driver waits for them, then re-raises.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import queue
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.plugins import AUTOLOAD_ENV
from harness.store import RunStore
from harness.sweep.local import Executor, Outcome, SweepReporter, outcome_fields
from harness.sweep.plan import PlannedRun

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# How long an interrupted sweep waits for its workers to record their runs as interrupted.
STOP_GRACE_S = 60.0
CORES_PER_CPU_JOB = 4
JOBS_PER_GPU = 4


def cpu_cores() -> int:
    """The cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs(device: str, runs: int) -> int:
    """`--jobs auto`: the documented rule of the module docstring."""
    import torch

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") or device.startswith("cuda") else 0
    if device.startswith("cuda:"):
        gpus = min(gpus, 1)
    jobs = JOBS_PER_GPU * gpus if gpus else max(1, cpu_cores() // CORES_PER_CPU_JOB)
    return max(1, min(jobs, runs))


def parse_jobs(text: str) -> int | str:
    """`--jobs`: a positive integer or `auto`."""
    if text == "auto":
        return text
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer or auto, got {text!r}")
    return jobs


def threads_per_job(jobs: int) -> int:
    return max(1, cpu_cores() // jobs)


def packed_executor(jobs: int, threads: int | None = None) -> Executor:
    """An executor (see harness.sweep.local.Executor) training up to `jobs` runs at once, each in a
    spawned worker process with `threads` threads (default: the cores split evenly)."""
    threads = threads or threads_per_job(jobs)

    def execute_runs(runs: list[PlannedRun], store_path: Path, registry: Any, reporter: SweepReporter):
        if not runs:
            return
        store_path = Path(store_path).expanduser().resolve()
        RunStore(store_path).close()  # schema and WAL mode made once, before the workers race to
        _drive(runs, store_path, registry, reporter, min(jobs, len(runs)), threads)

    return execute_runs


@contextmanager
def _thread_env(threads: int):
    """The environment a worker is spawned with: its share of the cores (restored afterwards here)."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _drive(runs, store_path: Path, registry, reporter: SweepReporter, jobs: int, threads: int) -> None:
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    blocked = [name for name, plugin in registry.manager.list_name_plugin() if plugin is None]
    autoload = not os.environ.get(AUTOLOAD_ENV)
    for index, planned in enumerate(runs):
        tasks.put((index, planned.config.model_dump(mode="json"), planned.resolved.hash))
    for _ in range(jobs):
        tasks.put(None)  # one stop mark per worker
    args = (tasks, results, str(store_path), blocked, autoload, threads)
    with _thread_env(threads):
        # Not daemons: a run may start processes of its own (torch.compile's workers).
        workers = [context.Process(target=worker_main, args=args) for _ in range(jobs)]
        for worker in workers:
            worker.start()
    running: dict[int, tuple[int, float]] = {}  # pid -> (run index, started)
    reported: set[int] = set()  # the run indices with an outcome
    try:
        _collect(runs, workers, results, reporter, running, reported)
    except KeyboardInterrupt:
        _stop(workers, results, runs, reporter, running, reported)
        raise
    finally:
        for worker in workers:
            worker.join(timeout=STOP_GRACE_S)
        for channel in (tasks, results):  # end their feeder threads: none left behind in the driver
            channel.close()
            channel.cancel_join_thread()


def _collect(runs, workers, results, reporter: SweepReporter, running: dict, reported: set) -> None:
    """Report each worker's messages until every run has an outcome."""
    while len(reported) < len(runs):
        try:
            _handle(results.get(timeout=0.5), runs, reporter, running, reported)
        except queue.Empty:
            gone = [worker for worker in workers if worker.exitcode is not None]
            if any(worker.pid in running for worker in gone) or len(gone) == len(workers):
                _drain(results, runs, reporter, running, reported)  # what it sent before it ended
                _lost(runs, workers, reporter, running, reported)


def _handle(message, runs, reporter: SweepReporter, running: dict, reported: set) -> None:
    kind, pid, index, payload = message
    if kind == "started":
        running[pid] = (index, time.monotonic())
        reporter.started(runs[index])
        return
    running.pop(pid, None)
    if index not in reported:
        reported.add(index)
        reporter.finished(Outcome(runs[index], **payload))


def _drain(results, runs, reporter: SweepReporter, running: dict, reported: set) -> None:
    while True:
        try:
            _handle(results.get(timeout=0.2), runs, reporter, running, reported)
        except queue.Empty:
            return


def _lost(runs, workers, reporter: SweepReporter, running: dict, reported: set) -> None:
    """Runs whose worker died without reporting (killed, out of memory) are failed; once every worker is
    gone, so are the runs nobody took."""
    for worker in workers:
        if worker.exitcode is not None and worker.pid in running:
            index, started = running.pop(worker.pid)
            reported.add(index)
            error = f"the worker process died (exit code {worker.exitcode})"
            reporter.finished(Outcome(runs[index], "failed", error=error, seconds=time.monotonic() - started))
    if all(worker.exitcode is not None for worker in workers) and not running:
        for index, planned in enumerate(runs):
            if index not in reported:
                reported.add(index)
                reporter.finished(Outcome(planned, "failed", error="no worker left to train it"))


def _stop(workers, results, runs, reporter: SweepReporter, running: dict, reported: set) -> None:
    """SIGTERM every worker, report what they record, then the runs still open as interrupted."""
    for worker in workers:
        if worker.exitcode is None:
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        alive = any(worker.exitcode is None for worker in workers)
        try:  # after the last worker is gone, what it sent before it ended is still in the queue
            _handle(results.get(timeout=0.2), runs, reporter, running, reported)
        except queue.Empty:
            if not alive:
                break
    for index, started in running.values():
        reporter.finished(Outcome(runs[index], "interrupted", seconds=time.monotonic() - started))


def worker_main(tasks, results, store_path: str, blocked, autoload: bool, threads: int) -> None:
    """One worker: take runs from `tasks` until the stop mark, train each, send what became of it."""
    from harness.training.signals import stop_signals

    driver = os.getppid()
    with stop_signals():  # SIGTERM from the driver records the run in progress 'interrupted'
        try:
            import torch

            from harness.config import RunConfig, resolve
            from harness.plugins import load_plugins

            torch.set_num_threads(threads)
            registry = load_plugins(blocked=blocked, autoload=autoload)
            pid = os.getpid()
            # A driver killed outright leaves no one to report to: stop before the next run.
            while os.getppid() == driver and (task := tasks.get()) is not None:
                index, config, expected = task
                results.put(("started", pid, index, None))
                started = time.monotonic()
                try:
                    resolved = resolve(RunConfig.model_validate(config), registry)
                    outcome = train_one(resolved, expected, store_path, registry)
                except KeyboardInterrupt:  # execute recorded the run 'interrupted'
                    outcome = {"status": "interrupted", "seconds": time.monotonic() - started}
                    results.put(("done", pid, index, outcome))
                    return
                results.put(("done", pid, index, outcome))
        except KeyboardInterrupt:  # between runs: nothing to record
            return


def train_one(resolved, expected_hash: str, store_path: str, registry) -> dict[str, Any]:
    """One run in a worker: the fields of its Outcome (KeyboardInterrupt propagates)."""
    from harness.training.run import execute

    if resolved.hash != expected_hash:  # the driver's skip logic relies on the same hash
        error = f"the configuration resolves to hash {resolved.hash} in the worker, {expected_hash} here"
        return {"status": "failed", "error": error}
    return outcome_fields(
        functools.partial(execute, resolved, store_path, registry, progress=False, exclusive=True)
    )
