"""harness.store.opening: which files are ours (application id, or our layout from before it), readers that
open read-only, writers that adopt only empty files and refuse the rest before writing a byte."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from harness.store import RunStore, StoreError, StoreNotInitialised
from harness.store.opening import APPLICATION_ID, expected_columns, open_store
from harness.store.schema import RUN_KEYS, SCHEMA_VERSION
from tests_support import TINY_ARGS, assert_refused, digest, run_cli, start_fields


def _pragma(path, name: str) -> int:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_expected_columns_come_from_the_migrations():
    assert set(RUN_KEYS) <= expected_columns(SCHEMA_VERSION)["runs"]
    assert {"heartbeat", "owner"}.isdisjoint(expected_columns(1)["runs"])
    assert expected_columns(1)["epochs"] == {"run_id", "epoch", "values"}


def test_a_writer_makes_a_store_with_our_id_and_version_a_reader_opens_it_read_only(tmp_path):
    path = tmp_path / "new" / "harness.sqlite"
    conn, version = open_store(path, create=True)
    conn.close()
    assert version == SCHEMA_VERSION and _pragma(path, "application_id") == APPLICATION_ID
    conn, version = open_store(path, create=False)
    with closing(conn), pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("CREATE TABLE x (y)")


def test_a_reader_refuses_an_empty_file_and_a_writer_adopts_it(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StoreNotInitialised):
        RunStore(path, create=False)
    assert path.read_bytes() == b""
    RunStore(path).close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_a_version_1_store_reads_without_migrating_and_its_rows_lack_nothing(tmp_path):
    path = tmp_path / "v1.sqlite"
    with RunStore(path) as store:
        store.start_run(**start_fields("a"))
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # back to how version 1 looked
        db.execute("ALTER TABLE runs DROP COLUMN heartbeat")
        db.execute("ALTER TABLE runs DROP COLUMN owner")
        db.execute("PRAGMA user_version = 1")
        db.execute("PRAGMA application_id = 0")
    before = digest(path)
    with RunStore(path, create=False) as reader:
        run = reader.get_run("a")
    assert run["heartbeat"] is None and run["owner"] is None and reader.version == 1
    assert digest(path) == before


def test_a_foreign_file_is_refused_by_writers_before_any_write(tmp_path):
    path = tmp_path / "app.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    before = digest(path)
    with pytest.raises(StoreError, match=r"is not a harness run store \(schema version 0, tables: users\)"):
        RunStore(path)
    assert digest(path) == before and _pragma(path, "journal_mode") == "delete"


def test_a_bad_heartbeat_setting_is_refused_before_the_store_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_HEARTBEAT_SECONDS", "nan")
    store = tmp_path / "runs" / "harness.sqlite"
    code, _, err = run_cli(capsys, "run", *TINY_ARGS, "--store", str(store))
    assert_refused(code, err, "HARNESS_HEARTBEAT_SECONDS must be a positive number of seconds, got 'nan'")
    assert not store.exists()
