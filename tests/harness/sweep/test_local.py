"""Running a sweep: resumability (skip finished, rerun the rest), a killed sweep, failure isolation."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.store import RunStore
from tests_support import TINY_ARGS, run_cli, start_fields

GRID = ["--arch", "unet,attunet", "--loss", "ce,dice", "--balancer", "none,classweights"]
TINY = TINY_ARGS  # the tiny run of tests_support; --no-progress suits a sweep too


def finished_keys(store_path) -> list[tuple[str, int]]:
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute("SELECT config_hash, seed FROM runs WHERE status = 'finished'")
        return [tuple(r) for r in rows]


def test_sweep_runs_the_grid_then_skips_every_finished_run(capsys, store_path):
    store = ["--store", str(store_path)]
    code, out, err = run_cli(capsys, "sweep", *GRID, *TINY, *store, "--no-progress", "--format", "json")
    assert code == 0, err
    outcomes = json.loads(out)
    assert [o["status"] for o in outcomes] == ["finished"] * 8
    assert len(set(finished_keys(store_path))) == 8

    code, out, _ = run_cli(capsys, "sweep", *GRID, *TINY, *store, "--no-progress", "--format", "json")
    assert code == 0
    assert [o["status"] for o in json.loads(out)] == ["skipped"] * 8
    assert len(finished_keys(store_path)) == 8  # nothing trained twice

    code, out, _ = run_cli(capsys, "leaderboard", "--format", "json", *store)
    groups = json.loads(out)
    assert len(groups) == 8 and all(g["n"] == 1 for g in groups)
    code, out, _ = run_cli(capsys, "leaderboard", "--format", "json", "--by", "arch", *store)
    assert sorted(g["arch"] for g in json.loads(out)) == ["attunet", "unet"]


def test_killed_sweep_resumes_without_duplicates(store_path, tmp_path):
    argv = [sys.executable, "-m", "harness", "sweep", *GRID, *TINY, "--no-progress"]
    argv += ["--store", str(store_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if store_path.exists() and len(finished_keys(store_path)) >= 2:
                break
            if first.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("the sweep finished no run in time")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done_before = len(finished_keys(store_path))
    assert 2 <= done_before < 8

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    keys = finished_keys(store_path)
    assert len(keys) == 8 and len(set(keys)) == 8  # every configuration finished exactly once
    assert f"{8 - done_before} runs to train ({done_before} already finished, skipped)" in second.stdout


CRASHY = """
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 4
    depth: int = 2


class Crashy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 1)

    def forward(self, x):
        if self.training:
            raise RuntimeError("boom in training")
        return self.conv(x)


@hookimpl
def harness_architectures():
    return [ArchitectureSpec(name="crashy", summary="fails in training", params=Params,
                             build=lambda p, **_: Crashy())]
"""


def test_one_failing_run_does_not_stop_the_sweep(capsys, store_path, third_party):
    third_party({"crashy": CRASHY})
    store = ["--store", str(store_path)]
    code, out, _ = run_cli(capsys, "sweep", "--arch", "crashy,unet", *TINY, *store, "--no-progress")
    assert code == 1
    assert "1 finished" in out and "1 failed" in out
    assert "failed: crashy" in out and "boom in training" in out
    with sqlite3.connect(store_path) as conn:
        statuses = dict(conn.execute("SELECT arch, status FROM runs"))
    assert statuses == {"crashy": "failed", "unet": "finished"}
    # The failed configuration is tried again on the next invocation; the finished one is not.
    code, out, _ = run_cli(capsys, "sweep", "--arch", "crashy,unet", *TINY, *store, "--no-progress")
    assert "1 skipped" in out and "1 failed" in out


def test_a_killed_five_fold_sweep_rerun_trains_only_the_missing_folds(capsys, store_path):
    store = ["--store", str(store_path)]
    folds = ["--folds", "5", *TINY, *store, "--format", "json"]
    code, out, err = run_cli(capsys, "sweep", *folds, "--dry-run")
    assert code == 0, err
    (planned,) = {p.resolved.hash for p in tiny_plan()}
    assert {r["config"] for r in json.loads(out)} == {planned[:8]}  # the command plans the same runs
    with RunStore(store_path) as runs:  # what the killed sweep left: folds 1 and 3 done, fold 2 cut short
        for fold, status in ((1, "finished"), (3, "finished"), (2, "interrupted")):
            runs.start_run(**start_fields(f"old-{fold}", config_hash=planned, fold=fold))
            runs.finish_run(f"old-{fold}", status=status)
    code, out, err = run_cli(capsys, "sweep", *folds)
    assert code == 0, err
    statuses = {o["fold"]: o["status"] for o in json.loads(out)}
    assert statuses == {0: "finished", 1: "skipped", 2: "finished", 3: "skipped", 4: "finished"}
    with RunStore(store_path) as runs:
        finished = [r for r in runs.list_runs(status="finished") if r["config_hash"] == planned]
    assert sorted(r["fold"] for r in finished) == [0, 1, 2, 3, 4]  # each fold exactly once
    assert {r["run_id"] for r in finished if r["fold"] in (1, 3)} == {"old-1", "old-3"}


def tiny_plan():
    """The plan of a sweep of TINY with `--folds 5`."""
    from harness.plugins import load_plugins
    from harness.sweep.plan import plan

    settings = ["data.folds=5", "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=16"]
    params = {"arch": ["width=4", "depth=2"], "loss": [], "balancer": [], "data": ["n=24", "test_n=3"]}
    return plan({}, load_plugins(), settings=settings, plugin_params=params)


def test_every_executor_turns_what_execute_did_into_an_outcome_the_same_way():
    from types import SimpleNamespace

    from harness.store import RunClaimed
    from harness.sweep.local import outcome_fields

    def claimed():
        raise RunClaimed("seed 0 is already running as run r1")

    def broken():
        raise ValueError("bad shape\nthe rest of a long message")

    def interrupted():
        raise KeyboardInterrupt

    ran = SimpleNamespace(status="finished", run_id="r2", miou=0.5, error=None)
    assert outcome_fields(lambda: ran).items() >= {"status": "finished", "run_id": "r2", "miou": 0.5}.items()
    assert outcome_fields(claimed)["status"] == "skipped"
    assert outcome_fields(broken)["error"] == "ValueError: bad shape"  # one line: the sweep's summary
    with pytest.raises(KeyboardInterrupt):  # the executor reports it interrupted and stops the sweep
        outcome_fields(interrupted)
