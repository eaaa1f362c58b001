"""Opening a run store: which files are ours, readers that never write, writers that adopt only empty files.

A store is ours when its SQLite application id is `APPLICATION_ID`, or, for stores written before the id
existed, when the id is 0 and the file has our schema version and our tables and columns; a writer sets the
id on such a store, a reader leaves it. A file with other tables, another application id, missing columns
or damaged pages is refused in one line before anything is written to it. Readers open the file read-only
(SQLite's ``mode=ro``): no journal-mode switch, no migration, no schema created.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from functools import cache
from pathlib import Path

from harness.store.errors import StoreError, StoreNotFound, StoreNotInitialised
from harness.store.schema import MIGRATIONS, SCHEMA_VERSION

APPLICATION_ID = 0x48524E53  # "HRNS": the header field SQLite keeps for this (PRAGMA application_id)
# Writes retry "database is locked" (another writer held the lock past the busy timeout) this long in all.
WRITE_RETRY_SECONDS = 120.0


def locked(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says another process holds the lock (worth retrying), not that the file is bad."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def retrying(action, what: str):
    """``action()``, retried with jittered exponential backoff while another process holds the lock."""
    deadline = time.monotonic() + WRITE_RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not locked(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise StoreError(f"{what}: {exc} (another process kept it locked)") from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


@cache
def expected_columns(version: int) -> dict[str, frozenset[str]]:
    """The columns of each of our tables at schema ``version``, from the migrations themselves."""
    with sqlite3.connect(":memory:") as scratch:
        for step in range(1, version + 1):
            scratch.executescript(MIGRATIONS[step])
        tables = [row[0] for row in scratch.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        info = {name: scratch.execute(f'PRAGMA table_info("{name}")').fetchall() for name in tables}
        return {name: frozenset(row[1] for row in rows) for name, rows in info.items()}


def open_store(path: Path, *, create: bool) -> tuple[sqlite3.Connection, int]:
    """A connection to the store at ``path`` and its schema version, after checking the file is ours.

    ``create`` (writers): make the folder and the file if needed, adopt an empty file or one of ours
    (migrating it and setting the application id), switch to WAL. Otherwise (readers): open read-only,
    refuse a missing, empty or foreign file, write nothing.
    """
    if create:
        _check_writable(path)
    elif not path.is_file():
        raise StoreNotFound(f"no run store at {path}; train a run first or pass the right --store")
    # mode=ro: sqlite itself refuses to create or change the file; mode=rw(c) for writers.
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'ro'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    except sqlite3.OperationalError as exc:
        failure = StoreError if create else StoreNotFound
        raise failure(f"cannot open run store {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        version = _setup(conn, path, create)
    except BaseException:
        conn.close()
        raise
    return conn, version


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"run store {path} is a directory; pass the path of a .sqlite file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of run store {path}: {exc.strerror or exc}") from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"run store {path} is not writable; fix its permissions or pass another --store")
    # WAL keeps two side files next to the store, so its folder must be writable too.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"the folder of run store {path} is not writable; pass another --store")


def _setup(conn: sqlite3.Connection, path: Path, create: bool) -> int:
    what = f"cannot open run store {path}"
    try:
        app_id, version, empty = retrying(lambda: identify(conn, path), what)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a SQLite run store: {exc}") from None
    if not create:
        if empty:
            raise StoreNotInitialised(
                f"{path} is not an initialised run store; open it with create=True first"
            )
        return version
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        if version < SCHEMA_VERSION or app_id != APPLICATION_ID:
            _migrate(conn, path)
        # WAL lets a leaderboard read while a training process writes; the setting persists in the file.
        # Switching needs a moment alone with the file, so a second process opening it may have to wait.
        retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"), what)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot write to run store {path}: {exc}") from None
    return SCHEMA_VERSION


def identify(conn: sqlite3.Connection, path: Path) -> tuple[int, int, bool]:
    """(application id, schema version, empty) of an SQLite file; ``StoreError`` unless it is empty or ours.

    Reads only: the header fields, the table list, the columns of our tables and a quick page check.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"{path} belongs to another application (SQLite application id {app_id}), not a harness run "
            "store; pass another --store"
        )
    if not tables and version == 0:
        return app_id, version, True
    if version > SCHEMA_VERSION and (app_id == APPLICATION_ID or "runs" in tables):
        raise StoreError(
            f"{path} has schema version {version}, newer than this harness ({SCHEMA_VERSION}); "
            "upgrade harness to read it"
        )
    if version < 1 or version > SCHEMA_VERSION or "runs" not in tables:
        shown = ", ".join(sorted(tables)[:5]) or "none"
        raise StoreError(
            f"{path} is not a harness run store (schema version {version}, tables: {shown}); "
            "pass another --store"
        )
    for table, columns in expected_columns(version).items():
        found = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        missing = sorted(columns - found)
        if missing:
            raise StoreError(
                f"{path} is not a usable run store: table {table!r} lacks {', '.join(missing)} "
                "(damaged, or made by another program); pass another --store"
            )
    check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if check != "ok":
        raise StoreError(f"{path} is damaged ({check}); restore it from a copy or pass another --store")
    return app_id, version, False


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    retrying(lambda: conn.execute("BEGIN IMMEDIATE"), f"cannot write to run store {path}")
    try:
        # Re-read inside the write lock: another process may have created or migrated it since we looked.
        app_id, current, _ = identify(conn, path)
        for target in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            # PRAGMA takes no parameters; target is an int from our own table, never user input.
            conn.execute(f"PRAGMA user_version = {int(target)}")
        if app_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
