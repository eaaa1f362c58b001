"""Sweeps: grid expansion, resumability (skip finished, rerun the rest), failure isolation, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from harness.cli.app import main
from harness.plugins import load_plugins
from harness.sweep.plan import plan, seed_list, split_list
from tests_support import TINY_ARGS

GRID = ["--arch", "unet,attunet", "--loss", "ce,dice", "--balancer", "none,classweights"]
TINY = TINY_ARGS  # the tiny run of tests_support; --no-progress suits a sweep too


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def finished_keys(store_path) -> list[tuple[str, int]]:
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute("SELECT config_hash, seed FROM runs WHERE status = 'finished'")
        return [tuple(r) for r in rows]


def test_grid_expands_every_combination_and_seed():
    registry = load_plugins()
    runs = plan(
        {},
        registry,
        archs=["unet", "attunet"],
        losses=["ce", "dice"],
        balancers=["none", "classweights"],
        seeds=2,
    )
    assert len(runs) == 16
    assert len({r.key for r in runs}) == 16
    assert len({r.resolved.hash for r in runs}) == 8  # seeds share a config hash
    assert Counter(r.config.seed for r in runs) == {0: 8, 1: 8}
    assert {r.config.arch.name for r in runs} == {"unet", "attunet"}


def test_sweep_file_lists_runs_over_a_base():
    registry = load_plugins()
    base = {
        "train": {"epochs": 3},
        "arch": {"name": "unet", "params": {"width": 8}},
        "runs": [{"arch": {"params": {"depth": 2}}}, {"arch": {"name": "segnet"}, "loss": {"name": "dice"}}],
    }
    first, second = plan(base, registry)
    assert first.config.arch.params["width"] == 8 and first.config.arch.params["depth"] == 2
    assert second.config.arch.name == "segnet" and second.config.loss.name == "dice"
    assert first.config.train.epochs == second.config.train.epochs == 3


def test_list_and_seed_parsing():
    assert split_list("a, b,a", "--arch") == ["a", "b"]
    assert split_list(None, "--arch") is None
    assert seed_list(3, 5) == [5, 6, 7]
    with pytest.raises(Exception, match="comma-separated"):
        split_list("a,,b", "--arch")
    with pytest.raises(Exception, match="--seeds"):
        seed_list(0, 0)


def test_bad_name_anywhere_in_the_grid_fails_before_anything_runs(capsys, store_path):
    code, _, err = run_cli(capsys, "sweep", "--arch", "unet,unetp", *TINY, "--store", str(store_path))
    assert code == 2
    assert "unetp" in err and "did you mean 'unetpp'" in err
    assert len(err.strip().splitlines()) == 1
    assert not store_path.exists()


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "sweep", *GRID, "--seeds", "2", *TINY, "--dry-run", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 16 and all(r["action"] == "run" for r in rows)
    assert not store_path.exists()


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
