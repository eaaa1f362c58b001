"""Console views: a rich bar over a run's steps with one line per epoch, and a sweep's two bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.sweep.plan import Outcome
    from harness.training.loop import LoopState


def _progress(*, transient: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        transient=transient,
    )


class ConsoleProgress:
    """A rich progress bar over the training steps of the current epoch, and one line per epoch.

    Given `shared` (a running rich Progress owned by a sweep), it adds its task there instead of
    starting its own display, so a sweep shows its overall bar and the current run's bar together.
    """

    def __init__(self, total_epochs: int, steps: int, shared: Any = None, prefix: str = ""):
        self.total_epochs, self.steps, self.prefix = total_epochs, steps, prefix
        self.owned = shared is None
        self.bar = _progress(transient=True) if shared is None else shared
        self.task = None

    def __enter__(self) -> ConsoleProgress:
        if self.owned:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.task is not None and not self.owned:
            self.bar.remove_task(self.task)
        if self.owned:
            self.bar.stop()

    def start_epoch(self, epoch: int, state: LoopState) -> None:
        status = ""
        if state.history:
            last = state.history[-1]
            status = (
                f"loss {last['train_loss']:.4f} | val mIoU {last['val_miou'] or 0:.4f} "
                f"(best {state.best_score:.4f}) | {last['img_s']:.0f} img/s"
            )
        if self.task is not None:
            self.bar.remove_task(self.task)
        description = f"{self.prefix}epoch {epoch}/{self.total_epochs}"
        self.task = self.bar.add_task(description, total=self.steps, status=status)

    def advance(self) -> None:
        self.bar.advance(self.task)

    def epoch_line(self, values: dict[str, Any], best: bool) -> None:
        mark = " *" if best else ""
        self.bar.console.print(
            f"{self.prefix}epoch {values['epoch']:>3}  loss {values['train_loss']:.4f}  "
            f"val loss {values['val_loss']:.4f}  "
            f"val mIoU {values['val_miou']:.4f}  fg {values['val_miou_fg']:.4f}  "
            f"lr {values['lr']:.2e}  {values['img_s']:.0f} img/s{mark}",
            soft_wrap=True,
        )
        self.bar.console.file.flush()  # epoch lines reach a log file as they happen


def outcome_line(outcome: Outcome) -> str:
    """What a sweep says of a finished run: which run, its id, its score, its time and any error."""
    score = "" if outcome.miou is None else f" val mIoU {outcome.miou:.4f}"
    error = f" ({outcome.error})" if outcome.error else ""
    run = f" {outcome.run_id}" if outcome.run_id else ""
    return f"{outcome.planned.label}{run}{score} in {outcome.seconds:.0f} s{error}"


class SweepProgress:
    """An overall bar over the sweep's runs (with ETA), the current run's bar, and one line per run."""

    def __init__(self, epoch_lines: bool = False):
        self.bar = _progress(transient=False)
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

    def run_bar(self, total_epochs: int, steps: int) -> ConsoleProgress:
        view = ConsoleProgress(total_epochs, steps, shared=self.bar, prefix="  ")
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
