"""The sweep's console views: one line per finished run (its label, id, score, time and error), to stdout
or, when stdout carries JSON, to stderr; the bars' view prints the same line and hides per-epoch lines."""

from __future__ import annotations

import pytest

from harness.plugins import load_plugins
from harness.sweep.local import Outcome, run_sweep
from harness.sweep.plan import plan
from harness.sweep.progress import SweepLines, SweepProgress, outcome_line
from harness.training.progress import ConsoleProgress


@pytest.fixture(scope="module")
def planned():
    registry = load_plugins()
    return plan({}, registry, archs=["unet", "segnet"], settings=["train.epochs=1"])


def test_outcome_line_names_the_run_its_id_score_time_and_error(planned):
    first = planned[0]
    done = Outcome(first, "finished", run_id="abc123", miou=0.51234, seconds=12.4)
    assert outcome_line(done) == "unet · ce · none · seed 0 abc123 val mIoU 0.5123 in 12 s"
    failed = Outcome(planned[1], "failed", error="RuntimeError: boom", seconds=3.6)
    assert outcome_line(failed) == "segnet · ce · none · seed 0 in 4 s (RuntimeError: boom)"


def test_sweep_lines_print_one_line_per_outcome_on_stdout(capsys, planned):
    view = SweepLines()
    with view:
        view.begin(2, skipped=1)
        view.start_run(planned[0].label)
        view.end_run(Outcome(planned[0], "finished", run_id="r1", miou=0.25, seconds=1.0))
        view.end_run(Outcome(planned[1], "diverged", run_id="r2", error="loss became nan", seconds=2.0))
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "sweep: 2 runs to train (1 already finished, skipped)",
        "[1/2] finished unet · ce · none · seed 0 r1 val mIoU 0.2500 in 1 s",
        "[2/2] diverged segnet · ce · none · seed 0 r2 in 2 s (loss became nan)",
    ]
    assert err == ""
    assert SweepLines.run_bar is None  # runs train without a bar


def test_sweep_lines_go_to_stderr_when_stdout_carries_json(capsys, planned):
    view = SweepLines(stderr=True)
    view.begin(1, skipped=0)
    view.end_run(Outcome(planned[0], "finished", seconds=0.0))
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["sweep: 1 runs to train", "[1/1] finished unet · ce · none · seed 0 in 0 s"]


def test_run_sweep_drives_the_view_once_per_run(capsys, planned, tmp_path):
    def executor(runs, store_path, registry, reporter):
        for item in runs:
            reporter.started(item)
            reporter.finished(Outcome(item, "finished", run_id=item.config.arch.name, miou=0.5))

    view = SweepLines()
    result = run_sweep(planned, tmp_path / "no-store.sqlite", None, executor=executor, progress=view)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sweep: 2 runs to train"
    assert [line.split()[0] for line in lines[1:]] == ["[1/2]", "[2/2]"]
    assert [o.run_id for o in result.outcomes] == ["unet", "segnet"]


def test_sweep_progress_prints_the_outcome_and_hides_epoch_lines(capsys, planned):
    view = SweepProgress()
    with view:
        view.begin(1, skipped=0)
        view.start_run(planned[0].label)
        bar = view.run_bar(total_epochs=2, steps=3)
        assert isinstance(bar, ConsoleProgress) and bar.bar is view.bar  # the run's bar shares the sweep's
        values = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_miou": 0.1, "val_miou_fg": 0.1}
        bar.epoch_line({**values, "lr": 1e-3, "img_s": 10.0}, best=True)
        view.end_run(Outcome(planned[0], "finished", run_id="r1", miou=0.75, seconds=5.0))
    out = capsys.readouterr().out
    assert "finished    unet · ce · none · seed 0 r1 val mIoU 0.7500 in 5 s" in out
    assert "epoch   1" not in out  # one line per run is enough in a sweep
    shown = SweepProgress(epoch_lines=True)
    with shown:
        shown.begin(1, skipped=0)
        shown.run_bar(total_epochs=2, steps=3).epoch_line({**values, "lr": 1e-3, "img_s": 10.0}, best=True)
    assert "epoch   1  loss 1.0000" in capsys.readouterr().out
