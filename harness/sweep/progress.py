"""The console views of a sweep: bars (`SweepProgress`) or plain lines (`SweepLines`), one line per run.

Both are handed to harness.sweep.local.run_sweep as its `progress`: `begin` once, then `start_run` and
`end_run` for every run; `run_bar` is the per-run bar factory handed to the training loop (None: none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.training.progress import ConsoleProgress, progress_bar

if TYPE_CHECKING:
    from harness.sweep.local import Outcome


def outcome_line(outcome: Outcome) -> str:
    """What a sweep says of a finished run: which run, its id, its score, its time and any error."""
    score = "" if outcome.miou is None else f" val mIoU {outcome.miou:.4f}"
    error = f" ({outcome.error})" if outcome.error else ""
    run = f" {outcome.run_id}" if outcome.run_id else ""
    return f"{outcome.planned.label}{run}{score} in {outcome.seconds:.0f} s{error}"


class SweepProgress:
    """An overall bar over the sweep's runs (with ETA), the current run's bar, and one line per run."""

    def __init__(self, epoch_lines: bool = False):
        self.bar = progress_bar(transient=False)
        self.overall = None
        self.label = ""
        self.epoch_lines = epoch_lines

    def __enter__(self) -> SweepProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def begin(self, total: int, skipped: int) -> None:
        note = f"{skipped} already finished, skipped" if skipped else ""
        self.overall = self.bar.add_task("sweep", total=total, status=note)

    def start_run(self, label: str) -> None:
        self.label = label
        self.bar.update(self.overall, status=label)

    def run_bar(self, total_epochs: int, steps: int, budget_minutes: float | None = None) -> ConsoleProgress:
        view = ConsoleProgress(
            total_epochs, steps, shared=self.bar, prefix="  ", budget_minutes=budget_minutes
        )
        if not self.epoch_lines:
            view.epoch_line = lambda values, best: None  # one line per run is enough in a sweep
        return view

    def end_run(self, outcome: Outcome) -> None:
        self.bar.console.print(f"{outcome.status:<11} {outcome_line(outcome)}", markup=False, soft_wrap=True)
        self.bar.advance(self.overall)


class SweepLines:
    """The sweep view without bars (`--no-progress`, logs): one line per finished run."""

    run_bar = None  # no per-run bar: execute() trains silently

    def __init__(self, stderr: bool = False) -> None:
        from rich.console import Console

        # stderr when stdout carries JSON, so the lines never break the machine-readable output
        self.console = Console(highlight=False, soft_wrap=True, stderr=stderr)
        self.done, self.total = 0, 0

    def __enter__(self) -> SweepLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def begin(self, total: int, skipped: int) -> None:
        self.total = total
        note = f" ({skipped} already finished, skipped)" if skipped else ""
        self.console.print(f"sweep: {total} runs to train{note}", markup=False)

    def start_run(self, label: str) -> None:
        pass

    def end_run(self, outcome: Outcome) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total}] {outcome.status} {outcome_line(outcome)}"
        self.console.print(line, markup=False)
        self.console.file.flush()
