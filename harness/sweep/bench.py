"""`harness bench --sweep`: runs per hour of one small fixed grid, one run after another against packed.

The grid (each architecture once, a few epochs, a `--limit` of the data) is trained in full by each way
of running it, `--jobs 1` (the sequential executor, in this process) and every packed `--jobs N` (N
worker processes, harness.sweep.packed), in alternating repeats so that noise on a shared machine hits
each alike. Every pass trains into a fresh throwaway store, so nothing is skipped; what is timed is the
whole wall time of the pass, worker start-up included: what a user waits for.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.sweep.local import local_executor, run_sweep
from harness.sweep.packed import packed_executor, threads_per_job
from harness.sweep.plan import plan

SWEEP_ARCHS = ("unet", "unetpp", "segnet", "deeplab")


@dataclass(frozen=True)
class SweepBenchSettings:
    archs: tuple[str, ...] = SWEEP_ARCHS
    data: str = "synthetic"
    limit: int | None = 256
    epochs: int = 1
    jobs: tuple[int, ...] = (1, 2)
    repeats: int = 2
    device: str = "auto"
    settings: tuple[str, ...] = ()  # extra --set assignments for every run


def sweep_plan(settings: SweepBenchSettings, registry) -> list:
    assignments = [
        f"data.source={settings.data}",
        f"train.epochs={settings.epochs}",
        f"train.device={settings.device}",
        *([f"data.limit={settings.limit}"] if settings.limit else []),
        *settings.settings,
    ]
    return plan({}, registry, archs=list(settings.archs), settings=assignments)


def one_pass(runs: list, jobs: int, registry) -> dict[str, Any]:
    """Train `runs` into a fresh store with `jobs` at once; wall seconds and how many finished."""
    executor = local_executor if jobs == 1 else packed_executor(jobs)
    with tempfile.TemporaryDirectory(prefix="harness-bench-sweep-") as folder:
        started = time.perf_counter()
        result = run_sweep(runs, Path(folder) / "harness.sqlite", registry, executor=executor)
        seconds = time.perf_counter() - started
    failed = [f"{o.planned.label}: {o.error}" for o in result.failures]
    return {"seconds": seconds, "finished": result.count("finished"), "failed": failed}


def run_sweep_bench(
    settings: SweepBenchSettings, registry, on_step: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Every `jobs` value over the same grid, alternating, `repeats` times; runs/hour of each."""
    runs = sweep_plan(settings, registry)
    passes: dict[int, list[dict[str, Any]]] = {jobs: [] for jobs in settings.jobs}
    for repeat in range(settings.repeats):
        for jobs in settings.jobs:
            on_step(f"sweep of {len(runs)} runs, --jobs {jobs}, repeat {repeat + 1}/{settings.repeats}")
            passes[jobs].append(one_pass(runs, jobs, registry))
    rows = []
    for jobs, done in passes.items():
        rates = [3600 * len(runs) / p["seconds"] for p in done]
        rows.append(
            {
                "jobs": jobs,
                "threads_per_job": threads_per_job(jobs),
                "runs_per_hour": statistics.median(rates),
                "runs_per_hour_min": min(rates),
                "runs_per_hour_max": max(rates),
                "seconds": [p["seconds"] for p in done],
                "failed": [f for p in done for f in p["failed"]],
            }
        )
    base = rows[0]["runs_per_hour"]
    for row in rows:
        row["vs_first"] = row["runs_per_hour"] / base
    return {"runs": [r.label for r in runs], "settings": settings.__dict__, "rows": rows}
