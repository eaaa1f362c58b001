"""The run store: one SQLite file holding every run's configuration, per-epoch history and final metrics.

Each write is its own committed transaction, so a process killed mid-run leaves the store consistent: the run
row keeps its last status ('running' if it never got to ``finish_run``) and every epoch logged so far.

A running run proves it is alive through its heartbeat (refreshed at every epoch and by a ``Heartbeat``
thread, `harness.store.heartbeat`) and names its process (``owner``); a later writer marks 'interrupted'
the running runs whose heartbeat is older than the lease, or whose process on this machine is gone
(``reap_stale``). Writers take the write lock up front (BEGIN IMMEDIATE) and retry with backoff when
another process holds it longer than the busy timeout, so two sweeps can share one store. The schema and
its migrations are in `harness.store.schema`, the store's location in `harness.store.paths`.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.store.errors import RunClaimed, RunNotFound, StoreError
from harness.store.heartbeat import BEAT, Heartbeat, ago, lease_seconds, presumed_dead, process_owner, utc_now
from harness.store.opening import open_store, retrying
from harness.store.schema import clean, dumps, run_dict

# pruned: a lifecycle hook stopped the run (harness tune's pruner)
FINAL_STATUSES = frozenset({"finished", "failed", "interrupted", "diverged", "pruned"})
_FILTERS = ("arch", "loss", "balancer", "status")


def _check_run_id(run_id: str) -> None:
    # Run ids name checkpoint directories, so anything that escapes the store directory is refused.
    if not isinstance(run_id, str) or not run_id.strip():
        raise StoreError("a run id must be a non-empty string")
    if any(sep in run_id for sep in ("/", "\\", "\0")) or run_id in (".", ".."):
        raise StoreError(f"run id {run_id!r} may not contain path separators or be '.'/'..'")


class RunStore:
    """A SQLite-backed record of training runs; use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path, *, create: bool = True):
        """Open the store at ``path``: a writer (``create``) makes or adopts it, a reader (``create=False``)
        opens it read-only and raises ``StoreNotFound`` when it is missing (`harness.store.opening`)."""
        self.path = Path(path).expanduser()
        self._conn: sqlite3.Connection | None = None
        if create:
            lease_seconds()  # a bad $HARNESS_HEARTBEAT_SECONDS or lease is refused before anything is written
        self._conn, self.version = open_store(self.path, create=create)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction per write; IMMEDIATE takes the write lock up front to avoid deadlocks."""
        conn = self._require()
        what = f"cannot write to run store {self.path}"
        try:
            retrying(lambda: conn.execute("BEGIN IMMEDIATE"), what)
        except sqlite3.DatabaseError as exc:  # read-only file, full disk, damaged pages
            raise StoreError(f"{what}: {exc}") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{what}: {exc}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read(self, sql: str, params=()) -> list[sqlite3.Row]:
        """Rows of a query; a damaged file raises one-line ``StoreError`` rather than sqlite's exception."""
        try:
            return self._require().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read run store {self.path}: {exc}") from None

    def _run(self, row: sqlite3.Row) -> dict:
        """The run dict of a row, its checkpoint path absolute (stored relative to the store's folder)."""
        run = run_dict(row, self.path)
        if run["checkpoint"]:
            run["checkpoint"] = str(self.path.parent.resolve() / run["checkpoint"])
        return run

    def _stored_path(self, checkpoint: str | Path) -> str:
        # Relative to the store's folder, so the run stays usable whatever the working directory of a reader.
        absolute = Path(checkpoint).resolve()
        try:
            return absolute.relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return str(absolute)

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
        fold: int | None = None,
    ) -> None:
        """Record a new run with status 'running'; a run id already in the store raises ``StoreError``.

        ``fold``: the fold the run validates on (None without folds). With ``exclusive`` (sweeps), raise
        ``RunClaimed`` instead when the same (config hash, seed, fold) is
        already finished or running with a live heartbeat: checked and inserted in one transaction, so two
        sweeps sharing a store never train one configuration twice.
        """
        _check_run_id(run_id)
        now = utc_now()
        row = {
            "run_id": run_id,
            "created": now,
            "heartbeat": now,
            "owner": process_owner(),
            "status": "running",
            "config": dumps(config),
            "config_hash": config_hash,
            "seed": int(seed),
            "arch": arch,
            "loss": loss,
            "balancer": balancer,
            "dataset_id": dataset_id,
            "device": device,
            "torch_version": torch_version,
            "params": clean(params),
            "gflops": clean(gflops),
            "class_names": dumps(list(class_names)),
            "fold": None if fold is None else int(fold),
        }
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        try:
            with self._write() as conn:
                if exclusive:
                    self._refuse_claimed(conn, config_hash, int(seed), fold)
                conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run id {run_id!r} already exists in {self.path}; pick a new id") from exc

    def _refuse_claimed(
        self, conn: sqlite3.Connection, config_hash: str, seed: int, fold: int | None
    ) -> None:
        cutoff = ago(lease_seconds())
        # `fold IS ?` (not =): NULL, a run without folds, matches NULL.
        row = conn.execute(
            "SELECT run_id, status FROM runs WHERE config_hash = ? AND seed = ? AND fold IS ? AND "
            "(status = 'finished' OR (status = 'running' AND COALESCE(heartbeat, created) >= ?)) LIMIT 1",
            (config_hash, seed, fold, cutoff),
        ).fetchone()
        if row is not None:
            which = "" if fold is None else f" fold {fold}"
            raise RunClaimed(
                f"configuration {config_hash[:8]} seed {seed}{which} is already {row['status']} "
                f"as run {row['run_id']}"
            )

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        """Store one epoch's numbers (and refresh the run's heartbeat); logging the same epoch again (a
        resumed run) replaces it."""
        try:
            with self._write() as conn:
                conn.execute(
                    'INSERT OR REPLACE INTO epochs (run_id, epoch, "values") VALUES (?, ?, ?)',
                    (run_id, int(epoch), dumps(values)),
                )
                conn.execute(BEAT, (utc_now(), run_id))
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
        metrics = clean(metrics)
        values = {
            "status": status,
            "metrics": None if metrics is None else dumps(metrics),
            "miou_an2dl": None if metrics is None else metrics.get("miou_an2dl"),
            "miou_fg": None if metrics is None else metrics.get("miou_fg"),
            "epochs": clean(epochs),
            "best_epoch": clean(best_epoch),
            "wall_time": clean(wall_time),
            "train_img_s": clean(train_img_s),
            "error": error,
            "checkpoint": None if checkpoint is None else self._stored_path(checkpoint),
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
                (utc_now(), process_owner(), dumps(config), config_hash, run_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"cannot resume run {run_id!r}: it is not in {self.path} or is running")
            conn.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, int(from_epoch)))

    def beat(self, run_id: str) -> None:
        """Refresh a running run's heartbeat (a no-op once the run has a final status)."""
        with self._write() as conn:
            conn.execute(BEAT, (utc_now(), run_id))

    def heartbeat(self, run_id: str) -> Heartbeat:
        """A `Heartbeat` keeping `run_id` alive while its ``with`` block runs (its own connection)."""
        return Heartbeat(self.path, run_id)

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
        if self._read("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
            return run_id
        if run_id:
            # substr, not LIKE: ids may contain % or _ and LIKE is case-insensitive.
            matches = [
                row[0]
                for row in self._read(
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
        known = [row[0] for row in self._read("SELECT run_id FROM runs")]
        if not known:
            return f"unknown run {run_id!r}: the store {self.path} has no runs yet"
        close = difflib.get_close_matches(run_id, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown run {run_id!r} in {self.path}{hint}"

    def get_run(self, run_id: str) -> dict:
        """The run dict for a full id or unique id prefix."""
        full_id = self.resolve_run_id(run_id)
        (row,) = self._read("SELECT * FROM runs WHERE run_id = ?", (full_id,))
        return self._run(row)

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
        rows = self._read(
            f"SELECT * FROM runs {where} ORDER BY created DESC, rowid DESC",
            {k: v for k, v in given.items() if v is not None} | ({"since": since} if since else {}),
        )
        return [self._run(row) for row in rows]

    def history(self, run_id: str) -> list[dict]:
        """Per-epoch values of a run in epoch order: dicts with an ``epoch`` key plus the logged values."""
        full_id = self.resolve_run_id(run_id)
        rows = self._read('SELECT epoch, "values" FROM epochs WHERE run_id = ? ORDER BY epoch', (full_id,))
        try:
            return [{"epoch": row["epoch"], **json.loads(row["values"])} for row in rows]
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"{self.path}: run {full_id} has a corrupt epoch row ({exc}); the store is damaged"
            ) from None

    def finished_hashes(self) -> set[tuple[str, int, int | None]]:
        """(config_hash, seed, fold) of finished runs (fold None without folds), so sweeps can skip work
        already done. A store older than version 3 has no fold column: its runs have no folds."""
        fold = "fold" if self.version >= 3 else "NULL"
        rows = self._read(f"SELECT config_hash, seed, {fold} FROM runs WHERE status = 'finished'")
        return {(row[0], int(row[1]), None if row[2] is None else int(row[2])) for row in rows}
