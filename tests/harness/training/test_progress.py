"""harness.training.progress: one line per epoch (the best marked " *"), a bar per epoch whose status is the
previous epoch's numbers, and a task on a sweep's shared bar that goes away with the run."""

from __future__ import annotations

import io

from rich.console import Console

from harness.training.progress import ConsoleProgress, epoch_text, progress_bar
from harness.training.state import LoopState

VALUES = {
    "epoch": 3,
    "train_loss": 0.123456,
    "val_loss": 0.5,
    "val_miou": 0.41234,
    "val_miou_fg": 0.3,
    "lr": 0.0005,
    "img_s": 123.4,
}


def _shared():
    console = Console(file=io.StringIO(), width=200)
    bar = progress_bar(transient=True)
    bar.live.console = console  # the bar (and its `console`) print where the test can read
    return bar, console


def test_epoch_line_prints_the_values_and_marks_the_best_epoch():
    bar, console = _shared()
    view = ConsoleProgress(total_epochs=5, steps=2, shared=bar, prefix="> ")
    view.epoch_line(VALUES, best=True)
    view.epoch_line({**VALUES, "epoch": 4}, best=False)
    lines = console.file.getvalue().splitlines()
    assert lines == [
        "> epoch   3  loss 0.1235  val loss 0.5000  val mIoU 0.4123  fg 0.3000  lr 5.00e-04  123 img/s *",
        "> epoch   4  loss 0.1235  val loss 0.5000  val mIoU 0.4123  fg 0.3000  lr 5.00e-04  123 img/s",
    ]


def test_start_epoch_shows_the_previous_epoch_status_on_the_new_task():
    bar, _ = _shared()
    view = ConsoleProgress(total_epochs=5, steps=4, shared=bar)
    state = LoopState()
    view.start_epoch(1, state)
    (first,) = bar.tasks
    assert first.description == "epoch 1/5" and first.total == 4 and first.fields["status"] == ""
    view.advance()
    assert first.completed == 1
    state.history.append({"train_loss": 0.25, "val_miou": None, "img_s": 99.6})
    state.best_score = 0.5
    view.start_epoch(2, state)
    (second,) = bar.tasks  # the previous epoch's task was replaced
    assert second.id != first.id and second.description == "epoch 2/5" and second.completed == 0
    assert second.fields["status"] == "loss 0.2500 | val mIoU 0.0000 (best 0.5000) | 100 img/s"
    state.history.append({"train_loss": 0.125, "val_miou": 0.75, "img_s": 50.0})
    state.best_score = 0.75
    view.start_epoch(3, state)
    (third,) = bar.tasks  # the status is the latest epoch's, not the first's
    assert third.fields["status"] == "loss 0.1250 | val mIoU 0.7500 (best 0.7500) | 50 img/s"


def test_a_shared_bar_gets_a_task_removed_on_exit_and_keeps_running():
    bar, _ = _shared()
    bar.start()
    try:
        other = bar.add_task("sweep", total=3, status="")
        with ConsoleProgress(total_epochs=2, steps=3, shared=bar, prefix="  ") as view:
            assert not view.owned and view.bar is bar
            view.start_epoch(1, LoopState())
            assert [t.description for t in bar.tasks] == ["sweep", "  epoch 1/2"]
        assert [t.id for t in bar.tasks] == [other]  # only the run's task went away
        assert bar.live.is_started  # the sweep still owns the display
    finally:
        bar.stop()


def test_without_a_shared_bar_the_view_owns_and_stops_its_own():
    view = ConsoleProgress(total_epochs=1, steps=1)
    assert view.owned
    view.bar.live.console = Console(file=io.StringIO(), width=200)
    with view:
        assert view.bar.live.is_started
        view.start_epoch(1, LoopState())
    assert not view.bar.live.is_started
    assert len(view.bar.tasks) == 1  # an owned bar is stopped, not emptied task by task


def test_under_a_minute_budget_the_bar_names_the_budget_not_the_epoch_limit():
    assert epoch_text(3, 200, None) == "epoch 3/200"
    assert epoch_text(3, 200, 1.5) == "epoch 3 · 1.5 min budget"
    bar = progress_bar(transient=False)
    view = ConsoleProgress(total_epochs=200, steps=2, shared=bar, budget_minutes=1.5)
    view.start_epoch(1, LoopState())
    assert bar.tasks[-1].description == "epoch 1 · 1.5 min budget"
