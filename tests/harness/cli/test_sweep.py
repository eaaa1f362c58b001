"""`harness sweep` the command: its flags, the --dry-run plan (table or JSON), the summary it prints (counts,
failures, where to see the ranking) and its exit code (the sweep itself: tests/harness/sweep/)."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.cli import sweep as sweep_cli
from harness.cli.app import build_parser
from harness.sweep.local import Outcome, SweepResult
from tests_support import TINY_ARGS, assert_bad_input, run_cli

GRID = ["--arch", "unet,attunet", "--loss", "ce,dice", "--balancer", "none,classweights"]
TINY = TINY_ARGS  # the tiny run of tests_support; --no-progress suits a sweep too


@pytest.fixture
def copied(trained, tmp_path):
    """A private copy of the trained store (a sweep may write to its store)."""
    shutil.copytree(trained.store.parent, tmp_path / "copy")
    return tmp_path / "copy" / trained.store.name


def cells(out: str) -> list[list[str]]:
    """The body rows of a rich table, cell by cell."""
    return [
        [c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│")
    ]


def test_the_flags_and_their_defaults():
    args = build_parser().parse_args(["sweep"])
    assert (args.executor, args.format, args.seeds, args.max_minutes, args.address) == (
        "local",
        "text",
        None,
        None,
        None,
    )
    assert not args.dry_run and not args.no_progress and args.device is None
    args = build_parser().parse_args(
        ["sweep", "--arch", "unet,segnet", "--max-minutes-per-run", "2.5", "--seeds", "3"]
    )
    assert (args.arch, args.max_minutes, args.seeds) == ("unet,segnet", 2.5, 3)


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, store_path):
    code, out, _ = run_cli(
        capsys,
        "sweep",
        *GRID,
        "--seeds",
        "2",
        *TINY,
        "--dry-run",
        "--format",
        "json",
        "--store",
        str(store_path),
    )
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 16 and all(r["action"] == "run" for r in rows)
    assert not store_path.exists()


def test_dry_run_table_marks_what_the_store_already_finished(capsys, trained):
    code, out, err = run_cli(
        capsys, "sweep", *TINY, "--seeds", "2", "--dry-run", "--store", str(trained.store)
    )
    assert code == 0 and err == ""
    assert "sweep plan: 1 to run, 2 in all" in out
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃ ").split("┃")] == [
        "#",
        "arch",
        "arch params",
        "loss",
        "balancer",
        "seed",
        "config",
        "epochs",
        "max minutes",
        "action",
    ]
    first, second = cells(out)
    assert first[:6] == ["1", "unet", "depth=2, width=4", "ce", "none", "0"]
    assert first[7:] == ["1", "–", "skip (finished)"] and second[5] == "1" and second[-1] == "run"
    assert first[6] == second[6] and len(first[6]) == 8  # one configuration, two seeds


def test_a_sweep_with_nothing_left_skips_and_says_where_the_ranking_is(capsys, copied):
    code, out, err = run_cli(capsys, "sweep", *TINY, "--store", str(copied))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sweep: 0 runs to train (1 already finished, skipped)"
    assert lines[-2:] == [
        f"sweep done: 1 skipped (store {copied})",
        f"see the ranking: harness leaderboard --store {copied}",
    ]


def test_json_summary_is_the_only_thing_on_stdout(capsys, copied):
    code, out, err = run_cli(capsys, "sweep", *TINY, "--store", str(copied), "--format", "json")
    assert code == 0
    (outcome,) = json.loads(out)  # the per-run lines went to stderr
    assert (outcome["arch"], outcome["loss"], outcome["balancer"], outcome["seed"]) == (
        "unet",
        "ce",
        "none",
        0,
    )
    assert outcome["status"] == "skipped" and len(outcome["config"]) == 8 and outcome["error"] is None
    assert "sweep: 0 runs to train" in err


def test_failures_are_listed_and_make_exit_code_1(capsys, monkeypatch, store_path):
    def fake_sweep(runs, path, registry, *, executor, progress):
        first, second = runs
        return SweepResult(
            [
                Outcome(first, "finished", run_id="r1", miou=0.5, seconds=1.0),
                Outcome(second, "failed", error="RuntimeError: boom"),
                Outcome(second, "diverged"),
            ]
        )

    monkeypatch.setattr(sweep_cli, "run_sweep", fake_sweep)
    code, out, _ = run_cli(
        capsys, "sweep", "--arch", "unet,segnet", "--no-progress", "--store", str(store_path)
    )
    assert code == 1
    assert out.splitlines() == [
        f"sweep done: 1 finished, 1 failed, 1 diverged (store {store_path})",
        "  failed: segnet · ce · none · seed 0: RuntimeError: boom",
        "  diverged: segnet · ce · none · seed 0: no error message",
        f"see the ranking: harness leaderboard --store {store_path}",
    ]
    monkeypatch.setattr(sweep_cli, "run_sweep", lambda *args, **kwargs: SweepResult())
    code, out, _ = run_cli(capsys, "sweep", "--no-progress", "--store", str(store_path))
    assert code == 0 and out.splitlines()[0] == f"sweep done: nothing to do (store {store_path})"


def test_address_without_ray_is_one_line_before_anything_runs(capsys, store_path):
    code, out, err = run_cli(
        capsys, "sweep", *TINY, "--address", "ray://head:10001", "--store", str(store_path)
    )
    assert code == 2 and out == ""
    assert err.strip() == "harness: error: --address joins a Ray cluster; it needs --executor ray"
    assert not store_path.exists()


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--jobs", "0"], "--jobs"),
        (["--jobs", "two"], "--jobs"),
        (["--cpus-per-run", "2"], "--cpus-per-run"),
        (["--gpus-per-run", "0.25"], "--gpus-per-run"),
        (["--executor", "ray", "--jobs", "2"], "--jobs"),
        (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run"),
    ],
)
def test_bad_packing_flags_are_one_line_and_write_no_store(flags, match, capsys, store_path):
    assert_bad_input(capsys, store_path, "sweep", "--arch", "unet", *flags, match=match)


def test_jobs_picks_the_executor(monkeypatch):
    from harness.sweep import packed

    parser = build_parser()
    monkeypatch.setattr(packed, "cpu_cores", lambda: 8)
    monkeypatch.setattr(sweep_cli, "auto_jobs", lambda device, runs: 2)
    made = []
    monkeypatch.setattr(sweep_cli, "packed_executor", lambda jobs: made.append(jobs) or "packed")
    assert sweep_cli.pick_executor(parser.parse_args(["sweep"]), 4) is sweep_cli.local_executor
    assert sweep_cli.pick_executor(parser.parse_args(["sweep", "--jobs", "3"]), 4) == "packed"
    assert sweep_cli.pick_executor(parser.parse_args(["sweep", "--jobs", "auto"]), 4) == "packed"
    assert made == [3, 2]
