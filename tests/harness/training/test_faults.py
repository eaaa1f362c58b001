"""Faults: signals, SIGKILL, concurrent sweeps, divergence, out of memory (checkpoints: test_checkpoints.py).

Each asserts what the store holds afterwards: the promise is that nothing is lost or recorded twice.
Subprocess tests signal a real `python -m harness` once the store shows the run under way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from harness import api
from harness.store import Heartbeat, RunClaimed, RunStore
from harness.sweep.plan import done_keys
from harness.training.checkpoints import load_checkpoint
from tests_support import TINY_ARGS, integrity, query, run_cli, start_fields, tiny

ROOT = Path(__file__).resolve().parents[3]
LONG = ["--set", "train.early_stop_patience=50"]  # no early stop: the epoch limit decides


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "harness", *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        argv, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the process ended before {what}: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def epoch_logged(store_path: Path) -> bool:
    return bool(
        query(
            store_path,
            "SELECT 1 FROM runs JOIN epochs USING (run_id) WHERE status = 'running' LIMIT 1",
        )
    )


# --- SIGINT and SIGTERM -------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_run_records_it_interrupted(store_path, sig, code):
    proc = harness("run", *TINY_ARGS, "--epochs", "200", *LONG, "--store", str(store_path))
    checkpointed = lambda: any(store_path.parent.glob("*/last.pt"))  # noqa: E731
    wait_for(lambda: epoch_logged(store_path) and checkpointed(), proc, "an epoch was checkpointed")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    ((run_id, status, epochs),) = query(store_path, "SELECT run_id, status, epochs FROM runs")
    assert status == "interrupted" and epochs >= 1
    assert err.strip().splitlines() == [err.strip()]  # one line, naming the run and how to go on
    assert run_id in err and f"--resume {run_id}" in err
    assert integrity(store_path) == "ok"
    assert load_checkpoint(store_path.parent / run_id / "last.pt")["epoch"] >= 1


@pytest.mark.parametrize(
    ("sig", "code", "line"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_signal_during_the_imports_ends_with_one_line_and_the_exit_code(store_path, sig, code, line):
    proc = harness("run", *TINY_ARGS, "--store", str(store_path))
    time.sleep(0.3)  # python is up, torch and the plugins are still importing
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and line in err, err
    assert not store_path.exists() or query(store_path, "SELECT status FROM runs") in ([], [("interrupted",)])


def test_repeated_sigints_mid_run_still_end_with_130_and_one_line(store_path):
    proc = harness("run", *TINY_ARGS, "--epochs", "200", *LONG, "--store", str(store_path))
    wait_for(lambda: epoch_logged(store_path), proc, "an epoch was logged")
    for _ in range(5):  # an impatient user: the first stops the run, the others must not kill the recording
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "recorded as 'interrupted'" in err, err
    assert query(store_path, "SELECT status FROM runs") == [("interrupted",)]
    assert integrity(store_path) == "ok"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_sweep_then_rerun_trains_only_what_is_missing(store_path, sig, code):
    argv = ["sweep", *TINY_ARGS, "--seeds", "2", "--epochs", "5", *LONG, "--store", str(store_path)]
    proc = harness(*argv)

    def one_done_and_next_under_way() -> bool:
        finished = query(store_path, "SELECT 1 FROM runs WHERE status = 'finished'")
        return bool(finished) and epoch_logged(store_path)

    wait_for(one_done_and_next_under_way, proc, "a run finished and the next logged an epoch")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert len(err.strip().splitlines()) == 1 and "rerun the same command" in err
    statuses = [row[0] for row in query(store_path, "SELECT status FROM runs")]
    assert statuses.count("interrupted") == 1 and "running" not in statuses
    done = statuses.count("finished")
    assert done == 1
    assert integrity(store_path) == "ok"

    rerun = harness(*argv)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "1 runs to train (1 already finished, skipped)" in out
    keys = query(store_path, "SELECT config_hash, seed FROM runs WHERE status = 'finished'")
    assert len(keys) == 2 and len(set(keys)) == 2  # each configuration finished exactly once
    assert integrity(store_path) == "ok"


# --- SIGKILL: heartbeats and the lease -----------------------------------------------------------------


def test_heartbeat_thread_keeps_a_run_alive_and_a_silent_one_is_reaped(store_path):
    with RunStore(store_path) as store:
        store.start_run(**start_fields("alive"))
        store.start_run(**start_fields("dead"))
        with Heartbeat(store_path, "alive", interval=0.05):
            time.sleep(0.6)
            assert [run["run_id"] for run in store.reap_stale(lease=0.3)] == ["dead"]
        time.sleep(0.4)
        assert [run["run_id"] for run in store.reap_stale(lease=0.3)] == ["alive"]
        dead = store.get_run("dead")
    assert dead["status"] == "interrupted" and "heartbeat went stale" in dead["error"]


def test_sigkill_leaves_running_until_the_next_start_marks_it_interrupted(store_path, caplog):
    proc = harness(
        "run", *TINY_ARGS, "--epochs", "200", *LONG, "--store", str(store_path),
        env={"HARNESS_HEARTBEAT_SECONDS": "0.05"},
    )  # fmt: skip
    wait_for(lambda: epoch_logged(store_path), proc, "an epoch was logged")
    # Alive: a later start with a 1 s lease never takes it for dead (test_heartbeat_thread_... shows the
    # thread keeps it fresh through epochs longer than the lease).
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        with RunStore(store_path) as store:
            assert store.reap_stale(lease=1.0) == []
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    before_runs = query(store_path, "SELECT * FROM runs")
    before_epochs = query(store_path, "SELECT * FROM epochs ORDER BY epoch")
    assert [row[2] for row in before_runs] == ["running"]
    # Its process is gone (same machine): no need to wait for the lease (the test above covers that).
    with caplog.at_level(logging.WARNING, logger="harness"):
        result = api.run(tiny(), store=store_path)  # the next start
    assert result.status == "finished"
    assert f"run {before_runs[0][0]} was still 'running'" in caplog.text
    with closing(sqlite3.connect(store_path)) as conn:
        conn.row_factory = sqlite3.Row
        killed = dict(conn.execute("SELECT * FROM runs WHERE run_id = ?", (before_runs[0][0],)).fetchone())
    assert killed["status"] == "interrupted" and "killed" in killed["error"]
    columns = [c[1] for c in query(store_path, "PRAGMA table_info(runs)")]
    unchanged = {k: v for k, v in zip(columns, before_runs[0], strict=True) if k not in ("status", "error")}
    assert {k: killed[k] for k in unchanged} == unchanged  # nothing else changes
    assert query(store_path, "SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", killed["run_id"]) == [
        row for row in before_epochs if row[0] == killed["run_id"]
    ]
    assert integrity(store_path) == "ok"


# --- Two sweeps, one store -----------------------------------------------------------------------------


def test_two_sweeps_at_once_record_every_run_exactly_once(store_path):
    env = {"HARNESS_HEARTBEAT_SECONDS": "0.02"}  # many small writes: the processes contend for the lock
    common = [*TINY_ARGS, "--store", str(store_path), "--format", "json"]
    first = harness("sweep", "--arch", "unet,attunet", *common, env=env)
    second = harness("sweep", "--arch", "attunet,segnet", *common, env=env)
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    for proc, (_, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    rows = query(store_path, "SELECT arch, seed, status FROM runs")
    assert sorted(rows) == sorted((arch, 0, "finished") for arch in ("unet", "attunet", "segnet"))
    statuses = [o["status"] for out, _ in outputs for o in json.loads(out)]
    assert statuses.count("finished") == 3 and statuses.count("skipped") == 1  # the shared one, once
    assert integrity(store_path) == "ok"


def test_a_write_waits_out_a_lock_held_past_the_busy_timeout(store_path):
    with RunStore(store_path) as store:
        store.start_run(**start_fields("r1"))
        store._require().execute("PRAGMA busy_timeout = 20")  # give up waiting at once: the retries must cope
        holder = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write
        release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
        release.start()
        try:
            store.log_epoch("r1", 1, {"train_loss": 1.0})
        finally:
            release.join()
            holder.close()
        assert store.history("r1") == [{"epoch": 1, "train_loss": 1.0}]


def test_an_exclusive_start_refuses_what_is_finished_or_live_elsewhere(store_path):
    with RunStore(store_path) as store:
        store.start_run(**start_fields("a"))  # running, fresh heartbeat
        with pytest.raises(RunClaimed, match="already running as run a"):
            store.start_run(**start_fields("b", config_hash="a"), exclusive=True)
        store.finish_run("a", status="finished")
        with pytest.raises(RunClaimed, match="already finished"):
            store.start_run(**start_fields("b", config_hash="a"), exclusive=True)
        store.start_run(**start_fields("c", config_hash="a", seed=1), exclusive=True)  # another seed
        assert {r["run_id"] for r in store.list_runs()} == {"a", "c"}


def test_a_store_being_created_counts_as_empty_for_a_sweep(store_path):
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(b"")  # what a second sweep sees while the first is creating the store
    assert done_keys(store_path) == set()


# --- NaN / inf loss ------------------------------------------------------------------------------------


def test_nan_loss_records_diverged_with_the_epoch_and_the_sweep_goes_on(capsys, store_path, tmp_path):
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text("[[runs]]\ntrain = { lr = 1e30 }\n\n[[runs]]\ntrain = { lr = 1e-3 }\n")
    store = ["--store", str(store_path)]
    code, out, _ = run_cli(capsys, "sweep", "--config", str(sweep_file), *TINY_ARGS, *store)
    assert code == 1
    assert "1 finished" in out and "1 diverged" in out
    assert "diverged: unet" in out and "epoch 1" in out
    ((status, epochs, error),) = query(
        store_path, "SELECT status, epochs, error FROM runs WHERE status != 'finished'"
    )
    assert status == "diverged" and epochs == 1 and "nan" in error and "epoch 1" in error
    code, out, _ = run_cli(
        capsys, "leaderboard", "--status", "diverged", "--by", "run", "--format", "json", *store
    )
    assert code == 0 and [row["status"] for row in json.loads(out)] == ["diverged"]


# --- Out of memory -------------------------------------------------------------------------------------

OOM_PLUGIN = """
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 4
    depth: int = 2


class Hungry(nn.Module):
    def __init__(self, in_training):
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 1)
        self.in_training = in_training

    def forward(self, x):
        if self.training == self.in_training:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


@hookimpl
def harness_architectures():
    return [
        ArchitectureSpec(name="oomtrain", summary="OOM in training", params=Params,
                         build=lambda p, **_: Hungry(True)),
        ArchitectureSpec(name="oomval", summary="OOM in validation", params=Params,
                         build=lambda p, **_: Hungry(False)),
    ]
"""


def test_out_of_memory_names_run_and_batch_size_and_the_sweep_goes_on(capsys, store_path, third_party):
    third_party({"hungry": OOM_PLUGIN})
    store = ["--store", str(store_path)]
    code, out, _ = run_cli(capsys, "sweep", "--arch", "oomtrain,oomval,unet", *TINY_ARGS, *store)
    assert code == 1
    assert "1 finished" in out and "2 failed" in out
    errors = dict(query(store_path, "SELECT arch, error FROM runs"))
    ids = dict(query(store_path, "SELECT arch, run_id FROM runs"))
    assert errors["unet"] is None
    assert ids["oomtrain"] in errors["oomtrain"]
    assert "in training at train.batch_size=8" in errors["oomtrain"]
    assert "--set train.batch_size=4" in errors["oomtrain"]
    assert "in validation at train.eval_batch_size=16" in errors["oomval"]
    assert "--set train.eval_batch_size=8" in errors["oomval"]
    assert "--set train.batch_size=4" in out  # the summary says it too
