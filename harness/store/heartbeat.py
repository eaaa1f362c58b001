"""Whether a 'running' run is still alive: its heartbeat (refreshed at every epoch and by a `Heartbeat`
thread), the lease a heartbeat may age before its run is presumed dead, and the process that owns it.

A run names its process as host/pid-namespace/pid (`process_owner()`), so a later writer on the same
machine can tell a killed process at once, and any writer a heartbeat older than the lease (`presumed_dead`).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.store.errors import StoreError

HEARTBEAT_ENV = "HARNESS_HEARTBEAT_SECONDS"  # how often a running run refreshes its heartbeat (default 30)
LEASE_ENV = "HARNESS_LEASE_SECONDS"  # how old a heartbeat may get before its run counts as dead (default 3x)
DEFAULT_HEARTBEAT_SECONDS = 30.0
# The one statement that refreshes a heartbeat; a run with a final status keeps its last one.
BEAT = "UPDATE runs SET heartbeat = ? WHERE run_id = ? AND status = 'running'"


def utc_now() -> str:
    # Microseconds keep "newest first" ordering meaningful for runs started in the same second.
    return datetime.now(UTC).isoformat(timespec="microseconds")


def ago(seconds: float) -> str:
    """The ISO UTC time ``seconds`` ago, comparable as text with ``utc_now()`` values."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def _seconds_from_env(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text in (None, ""):
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise StoreError(f"${name} must be a positive number of seconds, got {text!r}")
    return value


def heartbeat_seconds() -> float:
    """How often a running run refreshes its heartbeat: ``$HARNESS_HEARTBEAT_SECONDS`` or 30."""
    return _seconds_from_env(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS)


def lease_seconds() -> float:
    """How old a heartbeat may be before its run is presumed dead: ``$HARNESS_LEASE_SECONDS`` or 3 beats."""
    return _seconds_from_env(LEASE_ENV, 3 * heartbeat_seconds())


def process_owner() -> str:
    """This process as host/pid-namespace/pid: a pid means something only within its own namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}/{os.getpid()}"


def process_gone(owner: str | None) -> bool:
    """Whether ``owner`` is a process of this machine (and pid namespace) that no longer exists."""
    if not owner or os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process
        return False
    host_ns, _, pid = owner.rpartition("/")
    if host_ns != process_owner().rpartition("/")[0] or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


def presumed_dead(run: dict, lease: float | None = None) -> str | None:
    """Why a 'running' run cannot still be training (its process is gone, or its heartbeat is older than
    ``lease`` seconds), or None while it may be alive."""
    beat = run.get("heartbeat") or run["created"]
    if process_gone(run.get("owner")):
        pid = run["owner"].rpartition("/")[2]
        return f"its process (pid {pid} on this machine) ended without recording a status (killed?)"
    if beat < ago(lease_seconds() if lease is None else lease):
        return f"heartbeat went stale (last {beat}): its process was killed or its machine stopped"
    return None


class Heartbeat:
    """Keeps a running run's heartbeat fresh from a daemon thread while the ``with`` block runs.

    The thread has its own connection (a sqlite3 connection belongs to one thread) and writes one small
    UPDATE every ``interval`` seconds, so a long epoch, validation or checkpoint never looks like a dead
    process. A failed beat (store busy) is skipped: the lease is several beats long.
    """

    def __init__(self, path: str | Path, run_id: str, interval: float | None = None):
        self.path, self.run_id = Path(path), run_id
        self.interval = heartbeat_seconds() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {run_id}", daemon=True)

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=min(self.interval, 5.0), isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute(BEAT, (utc_now(), self.run_id))
                except sqlite3.Error:
                    continue
        finally:
            conn.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=6.0)  # at most one busy wait of the thread's connection
