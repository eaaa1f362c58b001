"""Running a planned sweep: skip what the store has finished, train the rest, collect every outcome.

An executor trains the runs it is given: `local_executor` one after another in this process (the
default), harness.sweep.ray_executor each as a Ray task. One failing run (an exception, a NaN loss, out
of memory) does not stop the others; the summary lists every failure with its error. Several sweeps may
share one store at once: each run starts with an exclusive claim on its (config hash, seed), so none is
trained twice.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store import RunClaimed
from harness.sweep.plan import PlannedRun, done_keys


@dataclass
class Outcome:
    """What became of one planned run."""

    planned: PlannedRun
    status: str  # finished, failed, interrupted, diverged... or skipped (already in the store)
    run_id: str | None = None
    miou: float | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status not in ("finished", "skipped")]


# An executor trains the planned runs it is given and reports each outcome through `report` as soon as
# it is known (so the progress view and the summary follow along); it returns when all are done or
# re-raises KeyboardInterrupt after recording the interrupted run.
Executor = Callable[[list[PlannedRun], Path, Any, "SweepReporter"], None]


class SweepReporter:
    """Collects outcomes and drives the progress view; executors call it, the CLI reads it."""

    def __init__(self, total: int, progress: Any = None):
        self.result = SweepResult()
        self.total = total
        self.progress = progress

    def started(self, planned: PlannedRun) -> None:
        if self.progress is not None:
            self.progress.start_run(planned.label)

    def finished(self, outcome: Outcome) -> None:
        self.result.outcomes.append(outcome)
        if self.progress is not None:
            self.progress.end_run(outcome)

    def run_progress(self) -> Any:
        """The per-run progress factory handed to `harness.training.run.execute` (None: no bar)."""
        return None if self.progress is None else self.progress.run_bar


def outcome_fields(train: Callable[[], Any]) -> dict[str, Any]:
    """What became of `train()` (a call of `harness.training.run.execute`) as the fields of its Outcome.

    Every executor trains through this, in its own process: skipped when another sweep holds the claim,
    failed (the error's first line; execute recorded it if it got that far) so that the sweep goes on.
    KeyboardInterrupt propagates: the executor reports the run interrupted and stops.
    """
    started = time.monotonic()
    try:
        result = train()
    except RunClaimed as exc:  # another sweep on this store finished it or is training it now
        return {"status": "skipped", "error": str(exc), "seconds": time.monotonic() - started}
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return {"status": "failed", "error": message, "seconds": time.monotonic() - started}
    return {
        "status": result.status,
        "run_id": result.run_id,
        "miou": result.miou,
        "error": result.error,
        "seconds": time.monotonic() - started,
    }


def local_executor(runs: list[PlannedRun], store_path: Path, registry: Any, reporter: SweepReporter) -> None:
    """Train the runs one after another in this process (the default executor)."""
    from harness.training.run import execute

    for planned in runs:
        reporter.started(planned)
        started = time.monotonic()
        progress = reporter.run_progress() or False
        try:
            train = functools.partial(
                execute, planned.resolved, store_path, registry, progress=progress, exclusive=True
            )
            fields = outcome_fields(train)
        except KeyboardInterrupt:
            reporter.finished(Outcome(planned, "interrupted", seconds=time.monotonic() - started))
            raise
        reporter.finished(Outcome(planned, **fields))


def run_sweep(
    runs: list[PlannedRun],
    store_path: Path,
    registry: Any,
    *,
    executor: Executor = local_executor,
    progress: Any = None,
) -> SweepResult:
    """Skip what the store already has finished, hand the rest to `executor`, return every outcome."""
    done = done_keys(store_path)
    todo = [p for p in runs if p.key not in done]
    reporter = SweepReporter(len(todo), progress)
    for planned in runs:
        if planned.key in done:
            reporter.result.outcomes.append(Outcome(planned, "skipped"))
    if progress is not None:
        progress.begin(len(todo), skipped=len(runs) - len(todo))
    executor(todo, store_path, registry, reporter)
    return reporter.result
