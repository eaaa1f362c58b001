"""harness.store.heartbeat: the heartbeat and lease settings, and when a 'running' run is presumed dead."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import Heartbeat, RunStore, StoreError, heartbeat_seconds, lease_seconds, presumed_dead
from harness.store.heartbeat import ago, process_owner, utc_now
from tests_support import start_fields


def test_heartbeat_and_lease_default_and_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_HEARTBEAT_SECONDS", raising=False)
    monkeypatch.delenv("HARNESS_LEASE_SECONDS", raising=False)
    assert (heartbeat_seconds(), lease_seconds()) == (30.0, 90.0)
    monkeypatch.setenv("HARNESS_HEARTBEAT_SECONDS", "2")
    assert (heartbeat_seconds(), lease_seconds()) == (2.0, 6.0)  # the lease is three beats
    monkeypatch.setenv("HARNESS_LEASE_SECONDS", "5")
    assert lease_seconds() == 5.0


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "nan", "inf"])
def test_bad_seconds_name_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("HARNESS_LEASE_SECONDS", bad)
    with pytest.raises(StoreError, match=r"\$HARNESS_LEASE_SECONDS must be a positive number of seconds"):
        lease_seconds()


def _ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_presumed_dead_by_heartbeat_age_and_by_process() -> None:
    host_ns = process_owner().rpartition("/")[0]
    alive = {"created": utc_now(), "heartbeat": utc_now(), "owner": process_owner()}
    assert presumed_dead(alive, lease=60) is None
    stale = {**alive, "heartbeat": ago(120)}
    assert "heartbeat went stale" in presumed_dead(stale, lease=60)
    assert presumed_dead(stale, lease=600) is None
    pid = _ended_pid()
    gone = {**alive, "owner": f"{host_ns}/{pid}"}
    assert f"its process (pid {pid} on this machine) ended" in presumed_dead(gone, lease=60)
    # Another machine's process cannot be probed: only its heartbeat tells.
    elsewhere = {**alive, "owner": f"other-host/ns/{pid}"}
    assert presumed_dead(elsewhere, lease=60) is None
    # Runs recorded before heartbeats existed fall back to their creation time.
    old = {"created": ago(120), "heartbeat": None, "owner": None}
    assert "went stale" in presumed_dead(old, lease=60)


def test_process_owner_names_this_process() -> None:
    assert process_owner().endswith(f"/{os.getpid()}")


def test_heartbeat_thread_refreshes_a_running_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.start_run(**start_fields("r1", class_names=["a", "b"]))
        first = store.get_run("r1")["heartbeat"]
        with Heartbeat(path, "r1", interval=0.05):
            deadline = time.monotonic() + 5.0
            while store.get_run("r1")["heartbeat"] == first and time.monotonic() < deadline:
                time.sleep(0.02)
        assert store.get_run("r1")["heartbeat"] > first
        store.finish_run("r1", status="finished")
        finished = store.get_run("r1")["heartbeat"]
        with Heartbeat(path, "r1", interval=0.05):
            time.sleep(0.2)
        assert store.get_run("r1")["heartbeat"] == finished  # a finished run keeps its last beat
