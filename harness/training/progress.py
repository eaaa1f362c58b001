"""The console view of one run: a rich bar over its steps and one line per epoch (a sweep's views, which
share the bar, are harness.sweep.progress)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.training.state import LoopState


def progress_bar(*, transient: bool, console: Any = None):
    """The rich Progress every bar of the harness uses: description, bar, n/total, elapsed, eta, status
    (on `console`, default rich's stdout console)."""
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
        console=console,
    )


def epoch_text(epoch: int, total_epochs: int, budget_minutes: float | None) -> str:
    """`epoch 3/20`; under a minute budget the epoch limit is rarely what ends the run, so the budget is
    named instead: `epoch 3 · 1.5 min budget`."""
    if budget_minutes is None:
        return f"epoch {epoch}/{total_epochs}"
    return f"epoch {epoch} · {budget_minutes:g} min budget"


class ConsoleProgress:
    """A rich progress bar over the training steps of the current epoch, and one line per epoch.

    Given `shared` (a running rich Progress owned by a sweep), it adds its task there instead of
    starting its own display, so a sweep shows its overall bar and the current run's bar together.
    """

    def __init__(
        self,
        total_epochs: int,
        steps: int,
        shared: Any = None,
        prefix: str = "",
        budget_minutes: float | None = None,
    ):
        self.total_epochs, self.steps, self.prefix = total_epochs, steps, prefix
        self.budget_minutes = budget_minutes
        self.owned = shared is None
        self.bar = progress_bar(transient=True) if shared is None else shared
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
        description = f"{self.prefix}{epoch_text(epoch, self.total_epochs, self.budget_minutes)}"
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
