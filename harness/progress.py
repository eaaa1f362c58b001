"""The console view of a training run: a rich bar over the epoch's steps and one line per epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.train import LoopState


class ConsoleProgress:
    """A rich progress bar over the training steps of the current epoch, and one line per epoch."""

    def __init__(self, total_epochs: int, steps: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total_epochs, self.steps = total_epochs, steps
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            transient=True,
        )
        self.task = None

    def __enter__(self) -> ConsoleProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
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
        self.task = self.bar.add_task(f"epoch {epoch}/{self.total_epochs}", total=self.steps, status=status)

    def advance(self) -> None:
        self.bar.advance(self.task)

    def epoch_line(self, values: dict[str, Any], best: bool) -> None:
        mark = " *" if best else ""
        self.bar.console.print(
            f"epoch {values['epoch']:>3}  loss {values['train_loss']:.4f}  "
            f"val loss {values['val_loss']:.4f}  "
            f"val mIoU {values['val_miou']:.4f}  fg {values['val_miou_fg']:.4f}  "
            f"lr {values['lr']:.2e}  {values['img_s']:.0f} img/s{mark}",
            soft_wrap=True,
        )
        self.bar.console.file.flush()  # epoch lines reach a log file as they happen
