"""`harness sweep --jobs N`: N worker processes, each configuration trained exactly once, SIGTERM recorded."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from harness.errors import ConfigError
from harness.sweep import packed
from harness.sweep.local import SweepReporter
from tests_support import TINY_ARGS, run_cli

GRID = ["--arch", "unet,attunet", "--loss", "ce,dice"]


def statuses(store_path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(store_path) as conn:
        return list(conn.execute("SELECT config_hash, seed, status FROM runs"))


def test_jobs_2_trains_every_configuration_exactly_once(capsys, store_path):
    argv = ["sweep", *GRID, *TINY_ARGS, "--jobs", "2", "--format", "json", "--store", str(store_path)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    outcomes = json.loads(out)
    assert sorted(o["status"] for o in outcomes) == ["finished"] * 4
    rows = statuses(store_path)
    assert len(rows) == 4 and len({(h, s) for h, s, _ in rows}) == 4  # none twice, none lost
    with sqlite3.connect(store_path) as conn:
        assert {o["run_id"] for o in outcomes} == {r for (r,) in conn.execute("SELECT run_id FROM runs")}

    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and [o["status"] for o in json.loads(out)] == ["skipped"] * 4
    assert len(statuses(store_path)) == 4


def test_sigterm_to_a_packed_sweep_leaves_no_run_running(store_path):
    argv = [sys.executable, "-m", "harness", "sweep", *GRID, *TINY_ARGS, "--epochs", "500", "--jobs", "2"]
    sweep = subprocess.Popen([*argv, "--store", str(store_path)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while sum(s == "running" for *_, s in (statuses(store_path) if store_path.exists() else [])) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, "two runs never ran at once"
            time.sleep(0.2)
        sweep.send_signal(signal.SIGTERM)
        out, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 128 + signal.SIGTERM
    final = [s for *_, s in statuses(store_path)]
    assert len(final) == 2 and set(final) <= {"finished", "interrupted"}, final
    assert out.count("interrupted") >= 2


def test_jobs_is_a_positive_number_or_auto():
    assert packed.parse_jobs("3") == 3 and packed.parse_jobs("auto") == "auto"
    for bad in ("0", "-1", "two"):
        with pytest.raises(ConfigError, match="--jobs"):
            packed.parse_jobs(bad)


@pytest.mark.parametrize(
    "device, gpus, cores, runs, expected",
    [
        ("auto", 0, 2, 8, 1),  # a 2-core CPU: one run uses both cores well
        ("auto", 0, 16, 8, 4),  # one run per 4 cores
        ("cpu", 2, 16, 8, 4),  # --device cpu ignores the GPUs
        ("auto", 1, 16, 8, 4),  # 4 runs share a GPU
        ("cuda:1", 2, 16, 8, 4),  # one named GPU
        ("auto", 2, 16, 8, 8),
        ("auto", 2, 16, 3, 3),  # never more than the runs
    ],
)
def test_auto_jobs_follows_the_documented_rule(monkeypatch, device, gpus, cores, runs, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(packed, "cpu_cores", lambda: cores)
    assert packed.auto_jobs(device, runs) == expected


def test_workers_are_spawned_with_their_share_of_the_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(packed, "cpu_cores", lambda: 8)
    assert packed.threads_per_job(2) == 4 and packed.threads_per_job(16) == 1
    with packed._thread_env(4):
        assert os.environ["OMP_NUM_THREADS"] == "4" and os.environ["MKL_NUM_THREADS"] == "4"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ  # restored


def test_a_worker_that_dies_fails_its_run_and_the_sweep_goes_on():
    runs = [SimpleNamespace(label=f"run {i}") for i in range(3)]
    reporter, reported = SweepReporter(3), set()
    workers = [SimpleNamespace(pid=11, exitcode=-9), SimpleNamespace(pid=12, exitcode=None)]
    running = {11: (0, time.monotonic()), 12: (1, time.monotonic())}
    packed._lost(runs, workers, reporter, running, reported)
    [outcome] = reporter.result.outcomes
    assert outcome.planned is runs[0] and outcome.status == "failed" and "exit code -9" in outcome.error
    assert list(running) == [12] and reported == {0}  # the live worker's run is still its own
    packed._handle(("done", 12, 1, {"status": "finished"}), runs, reporter, running, reported)
    packed._handle(("done", 11, 0, {"status": "finished"}), runs, reporter, running, reported)  # late
    workers[1].exitcode = 0
    packed._lost(runs, workers, reporter, running, reported)  # nobody is left to train run 2
    assert [o.status for o in reporter.result.outcomes] == ["failed", "finished", "failed"]
    assert reported == {0, 1, 2}  # every run once: the late message of run 0 was not counted again
