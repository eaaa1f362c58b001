"""The run store: one SQLite file holding every run's configuration, per-epoch history and final metrics.

Each write is its own committed transaction, so a process killed mid-run leaves the store consistent: the run
row keeps its last status ('running' if it never got to ``finish_run``) and every epoch logged so far.

A running run proves it is alive through its heartbeat (refreshed at every epoch and by a ``Heartbeat``
thread) and names its process (``owner``); a later writer marks 'interrupted' the running runs whose
heartbeat is older than the lease, or whose process on this machine is gone (``reap_stale``).
Writers take the write lock up front (BEGIN IMMEDIATE) and retry with backoff when another process holds
it longer than the busy timeout, so two sweeps can share one store.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DEFAULT_STORE = "runs/harness.sqlite"
STORE_ENV = "HARNESS_STORE"
SCHEMA_VERSION = 2
FINAL_STATUSES = frozenset({"finished", "failed", "interrupted", "diverged"})
HEARTBEAT_ENV = "HARNESS_HEARTBEAT_SECONDS"  # how often a running run refreshes its heartbeat (default 30)
LEASE_ENV = "HARNESS_LEASE_SECONDS"  # how old a heartbeat may get before its run counts as dead (default 3x)
DEFAULT_HEARTBEAT_SECONDS = 30.0
# Writes retry "database is locked" (another writer held the lock past the busy timeout) this long in all.
WRITE_RETRY_SECONDS = 120.0

_JSON_COLUMNS = ("config", "metrics", "class_names")
_RUN_KEYS = [
    "run_id",
    "created",
    "status",
    "config",
    "config_hash",
    "seed",
    "arch",
    "loss",
    "balancer",
    "dataset_id",
    "device",
    "torch_version",
    "params",
    "gflops",
    "epochs",
    "best_epoch",
    "wall_time",
    "train_img_s",
    "metrics",
    "error",
    "checkpoint",
    "class_names",
    "heartbeat",
    "owner",
]
_FILTERS = ("arch", "loss", "balancer", "status")
_BEAT = "UPDATE runs SET heartbeat = ? WHERE run_id = ? AND status = 'running'"

_SCHEMA_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    arch TEXT NOT NULL,
    loss TEXT NOT NULL,
    balancer TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    device TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    params INTEGER,
    gflops REAL,
    class_names TEXT NOT NULL,
    epochs INTEGER,
    best_epoch INTEGER,
    wall_time REAL,
    train_img_s REAL,
    miou_an2dl REAL,
    miou_fg REAL,
    metrics TEXT,
    error TEXT,
    checkpoint TEXT
);
CREATE INDEX runs_created ON runs (created);
CREATE INDEX runs_hash_seed ON runs (config_hash, seed);
CREATE TABLE epochs (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    "values" TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""

# version reached -> script that brings a store from the previous version to it; a later schema change adds
# an entry here and bumps SCHEMA_VERSION, and old stores are upgraded the first time they are opened.
_MIGRATIONS: dict[int, str] = {
    1: _SCHEMA_V1,
    # ISO UTC time of the last sign of life of a running run, and the process training it as
    # host/pid-namespace/pid (both NULL for runs recorded before version 2).
    2: "ALTER TABLE runs ADD COLUMN heartbeat TEXT; ALTER TABLE runs ADD COLUMN owner TEXT",
}


class StoreNotFound(HarnessError):
    """The run store file does not exist (readers never create one)."""


class StoreError(HarnessError):
    """The file is not a run store this version can use, or a write was refused."""


class RunNotFound(HarnessError):
    """No run has the given id, or the id prefix matches more than one run."""


class StoreNotInitialised(StoreError):
    """The file exists but holds no run store yet (empty, or another process is creating it now)."""


class RunClaimed(StoreError):
    """An exclusive start found the same configuration and seed finished or running in another process."""


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


def _owner() -> str:
    """This process as host/pid-namespace/pid: a pid means something only within its own namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}/{os.getpid()}"


def _process_gone(owner: str | None) -> bool:
    """Whether ``owner`` is a process of this machine (and pid namespace) that no longer exists."""
    if not owner or os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process
        return False
    host_ns, _, pid = owner.rpartition("/")
    if host_ns != _owner().rpartition("/")[0] or not pid.isdigit() or int(pid) == os.getpid():
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
    if _process_gone(run.get("owner")):
        pid = run["owner"].rpartition("/")[2]
        return f"its process (pid {pid} on this machine) ended without recording a status (killed?)"
    if beat < _ago(lease_seconds() if lease is None else lease):
        return f"heartbeat went stale (last {beat}): its process was killed or its machine stopped"
    return None


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retrying(action, what: str):
    """``action()``, retried with jittered exponential backoff while another process holds the lock."""
    deadline = time.monotonic() + WRITE_RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise StoreError(f"{what}: {exc} (another process kept it locked)") from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


SQLITE_URL = "sqlite:///"


def resolve_store_path(path: str | Path | None = None) -> Path:
    """Pick the store file: an explicit ``path`` wins, then ``$HARNESS_STORE``, then ``DEFAULT_STORE``.

    A store may be given as a path or as a URL ``sqlite:///relative/path`` or ``sqlite:////absolute/path``
    (SQLAlchemy's spelling, so one setting reads the same everywhere); other schemes are refused.
    """
    chosen = path if path not in (None, "") else os.environ.get(STORE_ENV) or DEFAULT_STORE
    text = str(chosen)
    if text.startswith(SQLITE_URL):
        text = text[len(SQLITE_URL) :]
        if not text:
            raise StoreError(f"store URL {chosen!r} names no file: use sqlite:///path/to/harness.sqlite")
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"store URL scheme '{scheme}' is not supported: the run store is SQLite "
            "(a path or sqlite:///path)"
        )
    return Path(text).expanduser()


def _utc_now() -> str:
    # Microseconds keep "newest first" ordering meaningful for runs started in the same second.
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _clean(value: Any) -> Any:
    """Plain-Python copy of ``value`` with NaN/inf as None, so stored JSON stays standard and sorts sanely.

    numpy scalars (which sqlite cannot bind and json cannot encode) become int/float via the numbers ABCs,
    keeping this module free of numpy and torch imports.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    # default=str: configs may carry Paths or enums; the stored copy is for reading back, not re-execution.
    return json.dumps(_clean(value), default=str, allow_nan=False)


def _check_run_id(run_id: str) -> None:
    # Run ids name checkpoint directories, so anything that escapes the store directory is refused.
    if not isinstance(run_id, str) or not run_id.strip():
        raise StoreError("a run id must be a non-empty string")
    if any(sep in run_id for sep in ("/", "\\", "\0")) or run_id in (".", ".."):
        raise StoreError(f"run id {run_id!r} may not contain path separators or be '.'/'..'")


class RunStore:
    """A SQLite-backed record of training runs; use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path, *, create: bool = True):
        """Open the store at ``path``; with ``create=False`` a missing file raises ``StoreNotFound``."""
        self.path = Path(path).expanduser()
        if not create and not self.path.is_file():
            raise StoreNotFound(f"no run store at {self.path}; train a run first or pass the right --store")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # mode=rw makes sqlite itself refuse to create the file, closing the race with the check above.
        mode = "rwc" if create else "rw"
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                uri, uri=True, timeout=30.0, isolation_level=None
            )
        except sqlite3.OperationalError as exc:
            raise StoreNotFound(f"cannot open run store {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup(create)
        except BaseException:
            self.close()
            raise

    def _setup(self, create: bool) -> None:
        conn = self._require()
        try:
            what = f"cannot open run store {self.path}"
            version = _retrying(lambda: conn.execute("PRAGMA user_version").fetchone()[0], what)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite run store: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this harness ({SCHEMA_VERSION}); "
                "upgrade harness to read it"
            )
        if version == 0 and not create:
            raise StoreNotInitialised(
                f"{self.path} is not an initialised run store; open it with create=True first"
            )
        conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            self._migrate()
        # WAL lets a leaderboard read while a training process writes; the setting persists in the file.
        # Switching needs a moment alone with the file, so a second process opening it may have to wait.
        _retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"), f"cannot open run store {self.path}")

    def _migrate(self) -> None:
        with self._write() as conn:
            # Re-read inside the write lock: another process may have migrated since we looked.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                # PRAGMA takes no parameters; target is an int from our own table, never user input.
                conn.execute(f"PRAGMA user_version = {int(target)}")

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction per write; IMMEDIATE takes the write lock up front to avoid deadlocks."""
        conn = self._require()
        _retrying(lambda: conn.execute("BEGIN IMMEDIATE"), f"cannot write to run store {self.path}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run_dir(self, run_id: str) -> Path:
        """Directory for a run's files (checkpoints) next to the store; the caller creates it when needed."""
        _check_run_id(run_id)
        return self.path.parent / run_id

    def start_run(
        self,
        *,
        run_id: str,
        config: dict,
        config_hash: str,
        seed: int,
        arch: str,
        loss: str,
        balancer: str,
        dataset_id: str,
        device: str,
        torch_version: str,
        params: int | None,
        gflops: float | None,
        class_names: list[str],
        exclusive: bool = False,
    ) -> None:
        """Record a new run with status 'running'; a run id already in the store raises ``StoreError``.

        With ``exclusive`` (sweeps), raise ``RunClaimed`` instead when the same (config hash, seed) is
        already finished or running with a live heartbeat: checked and inserted in one transaction, so two
        sweeps sharing a store never train one configuration twice.
        """
        _check_run_id(run_id)
        now = _utc_now()
        row = {
            "run_id": run_id,
            "created": now,
            "heartbeat": now,
            "owner": _owner(),
            "status": "running",
            "config": _dumps(config),
            "config_hash": config_hash,
            "seed": int(seed),
            "arch": arch,
            "loss": loss,
            "balancer": balancer,
            "dataset_id": dataset_id,
            "device": device,
            "torch_version": torch_version,
            "params": _clean(params),
            "gflops": _clean(gflops),
            "class_names": _dumps(list(class_names)),
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        try:
            with self._write() as conn:
                if exclusive:
                    self._refuse_claimed(conn, config_hash, int(seed))
                conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run id {run_id!r} already exists in {self.path}; pick a new id") from exc

    def _refuse_claimed(self, conn: sqlite3.Connection, config_hash: str, seed: int) -> None:
        cutoff = _ago(lease_seconds())
        row = conn.execute(
            "SELECT run_id, status FROM runs WHERE config_hash = ? AND seed = ? AND (status = 'finished' "
            "OR (status = 'running' AND COALESCE(heartbeat, created) >= ?)) LIMIT 1",
            (config_hash, seed, cutoff),
        ).fetchone()
        if row is not None:
            raise RunClaimed(
                f"configuration {config_hash[:8]} seed {seed} is already {row['status']} "
                f"as run {row['run_id']}"
            )

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        """Store one epoch's numbers (and refresh the run's heartbeat); logging the same epoch again (a
        resumed run) replaces it."""
        try:
            with self._write() as conn:
                conn.execute(
                    'INSERT OR REPLACE INTO epochs (run_id, epoch, "values") VALUES (?, ?, ?)',
                    (run_id, int(epoch), _dumps(values)),
                )
                conn.execute(_BEAT, (_utc_now(), run_id))
        except sqlite3.IntegrityError as exc:
            raise RunNotFound(f"cannot log epoch {epoch}: no run {run_id!r} in {self.path}") from exc

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        metrics: dict | None = None,
        epochs: int | None = None,
        best_epoch: int | None = None,
        wall_time: float | None = None,
        train_img_s: float | None = None,
        error: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        """Set a run's final status and results; fields passed as None keep what was stored before."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, got {status!r}")
        metrics = _clean(metrics)
        values = {
            "status": status,
            "metrics": None if metrics is None else _dumps(metrics),
            "miou_an2dl": None if metrics is None else metrics.get("miou_an2dl"),
            "miou_fg": None if metrics is None else metrics.get("miou_fg"),
            "epochs": _clean(epochs),
            "best_epoch": _clean(best_epoch),
            "wall_time": _clean(wall_time),
            "train_img_s": _clean(train_img_s),
            "error": error,
            "checkpoint": None if checkpoint is None else str(checkpoint),
        }
        # COALESCE keeps earlier values, e.g. an interrupt handler must not erase metrics already written.
        assignments = ", ".join(f"{name} = COALESCE(:{name}, {name})" for name in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = :run_id", {**values, "run_id": run_id}
            )
            if cursor.rowcount == 0:
                raise RunNotFound(f"cannot finish run {run_id!r}: it is not in {self.path}")

    def resume_run(self, run_id: str, *, config: dict, config_hash: str, from_epoch: int) -> None:
        """Mark a stopped run 'running' again to continue it after epoch ``from_epoch``.

        The config (a resumed run may get a new epoch limit) and its hash are replaced, the error cleared,
        and epochs logged after ``from_epoch`` (trained after the last checkpoint) dropped: they are trained
        again.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = 'running', error = NULL, heartbeat = ?, owner = ?, config = ?, "
                "config_hash = ? WHERE run_id = ? AND status != 'running'",
                (_utc_now(), _owner(), _dumps(config), config_hash, run_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"cannot resume run {run_id!r}: it is not in {self.path} or is running")
            conn.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, int(from_epoch)))

    def beat(self, run_id: str) -> None:
        """Refresh a running run's heartbeat (a no-op once the run has a final status)."""
        with self._write() as conn:
            conn.execute(_BEAT, (_utc_now(), run_id))

    def reap_stale(self, lease: float | None = None) -> list[dict]:
        """Mark 'interrupted' every running run that cannot still be training (``presumed_dead``): its
        process was killed (SIGKILL, OOM killer, power loss) before it could record a status.

        Only the status and the error change. Returns the reaped runs (``run_id``, ``heartbeat``, ``error``).
        """
        reaped = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT run_id, created, heartbeat, owner FROM runs WHERE status = 'running'"
            ).fetchall()
            for row in rows:
                reason = presumed_dead(dict(row), lease)
                if reason is None:
                    continue
                error = f"{reason}; marked interrupted by a later start"
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', error = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (error, row["run_id"]),
                )
                reaped.append({"run_id": row["run_id"], "heartbeat": row["heartbeat"], "error": error})
        return reaped

    def resolve_run_id(self, run_id: str) -> str:
        """Full id for ``run_id`` or a unique prefix of one; otherwise ``RunNotFound`` with suggestions."""
        conn = self._require()
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
            return run_id
        if run_id:
            # substr, not LIKE: ids may contain % or _ and LIKE is case-insensitive.
            matches = [
                row[0]
                for row in conn.execute(
                    "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id",
                    (len(run_id), run_id),
                )
            ]
            if len(matches) == 1:
                return matches[0]
            if matches:
                shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
                raise RunNotFound(f"run id prefix {run_id!r} is ambiguous ({shown}); give more characters")
        raise RunNotFound(self._unknown_message(run_id))

    def _unknown_message(self, run_id: str) -> str:
        known = [row[0] for row in self._require().execute("SELECT run_id FROM runs")]
        if not known:
            return f"unknown run {run_id!r}: the store {self.path} has no runs yet"
        close = difflib.get_close_matches(run_id, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown run {run_id!r} in {self.path}{hint}"

    def get_run(self, run_id: str) -> dict:
        """The run dict for a full id or unique id prefix."""
        full_id = self.resolve_run_id(run_id)
        row = self._require().execute("SELECT * FROM runs WHERE run_id = ?", (full_id,)).fetchone()
        return _run_dict(row)

    def list_runs(
        self,
        *,
        arch: str | None = None,
        loss: str | None = None,
        balancer: str | None = None,
        status: str | None = None,
        since: str | None = None,
    ) -> list[dict]:
        """Runs matching every given filter exactly (and created at or after the ISO UTC `since`), newest
        first."""
        given = {"arch": arch, "loss": loss, "balancer": balancer, "status": status}
        # Column names come from the fixed _FILTERS tuple; only the values are user input, and they are bound.
        clauses = [f"{name} = :{name}" for name in _FILTERS if given[name] is not None]
        if since is not None:
            clauses.append("created >= :since")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._require().execute(
            f"SELECT * FROM runs {where} ORDER BY created DESC, rowid DESC",
            {k: v for k, v in given.items() if v is not None} | ({"since": since} if since else {}),
        )
        return [_run_dict(row) for row in rows]

    def history(self, run_id: str) -> list[dict]:
        """Per-epoch values of a run in epoch order: dicts with an ``epoch`` key plus the logged values."""
        full_id = self.resolve_run_id(run_id)
        rows = self._require().execute(
            'SELECT epoch, "values" FROM epochs WHERE run_id = ? ORDER BY epoch', (full_id,)
        )
        return [{"epoch": row["epoch"], **json.loads(row["values"])} for row in rows]

    def finished_hashes(self) -> set[tuple[str, int]]:
        """(config_hash, seed) pairs of finished runs, so sweeps can skip work already done."""
        rows = self._require().execute("SELECT config_hash, seed FROM runs WHERE status = 'finished'")
        return {(row[0], int(row[1])) for row in rows}


def _ago(seconds: float) -> str:
    """The ISO UTC time ``seconds`` ago, comparable as text with ``_utc_now()`` values."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="microseconds")


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
                    conn.execute(_BEAT, (_utc_now(), self.run_id))
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


def _run_dict(row: sqlite3.Row) -> dict:
    data = {key: row[key] for key in _RUN_KEYS}
    for key in _JSON_COLUMNS:
        if data[key] is not None:
            data[key] = json.loads(data[key])
    return data
