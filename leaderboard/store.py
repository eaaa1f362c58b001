"""The run store: one SQLite file holding every run's configuration, per-epoch history and final metrics.

Each write is its own committed transaction, so a process killed mid-run leaves the store consistent: the run
row keeps its last status ('running' if it never got to ``finish_run``) and every epoch logged so far.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DEFAULT_STORE = "runs/harness.sqlite"
STORE_ENV = "HARNESS_STORE"
SCHEMA_VERSION = 1
FINAL_STATUSES = frozenset({"finished", "failed", "interrupted"})

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
]
_FILTERS = ("arch", "loss", "balancer", "status")

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
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}


class StoreNotFound(HarnessError):
    """The run store file does not exist (readers never create one)."""


class StoreError(HarnessError):
    """The file is not a run store this version can use, or a write was refused."""


class RunNotFound(HarnessError):
    """No run has the given id, or the id prefix matches more than one run."""


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
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite run store: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this harness ({SCHEMA_VERSION}); "
                "upgrade harness to read it"
            )
        if version == 0 and not create:
            raise StoreError(f"{self.path} is not an initialised run store; open it with create=True first")
        conn.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            self._migrate()
        # WAL lets a leaderboard read while a training process writes; the setting persists in the file.
        conn.execute("PRAGMA journal_mode = WAL")

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
        conn.execute("BEGIN IMMEDIATE")
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
    ) -> None:
        """Record a new run with status 'running'; a run id already in the store raises ``StoreError``."""
        _check_run_id(run_id)
        row = {
            "run_id": run_id,
            "created": _utc_now(),
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
                conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run id {run_id!r} already exists in {self.path}; pick a new id") from exc

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        """Store one epoch's numbers; logging the same epoch again (a resumed run) replaces it."""
        try:
            with self._write() as conn:
                conn.execute(
                    'INSERT OR REPLACE INTO epochs (run_id, epoch, "values") VALUES (?, ?, ?)',
                    (run_id, int(epoch), _dumps(values)),
                )
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


def _run_dict(row: sqlite3.Row) -> dict:
    data = {key: row[key] for key in _RUN_KEYS}
    for key in _JSON_COLUMNS:
        if data[key] is not None:
            data[key] = json.loads(data[key])
    return data
