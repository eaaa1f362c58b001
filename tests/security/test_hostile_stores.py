"""Foreign and broken run stores: a store is adopted only when empty or ours, readers never write it, and
every file the harness cannot use is refused in one line (exit 2) with the file byte-identical afterwards.

Also: checkpoint paths are recorded relative to the store, so a run is usable from any working directory.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from harness.store import RunStore
from harness.store.opening import APPLICATION_ID
from harness.store.schema import MIGRATIONS
from tests_support import TINY_ARGS, assert_refused, digest, query, run_cli, start_fields

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_before_layout"


def _sql(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in statements:
            db.executescript(statement)


def _ours(path: Path, *run_ids: str) -> None:
    with RunStore(path) as store:
        for run_id in run_ids:
            store.start_run(**start_fields(run_id))
            store.finish_run(run_id, status="finished", metrics={"miou_an2dl": 0.5}, epochs=1)


def _another_application(path: Path) -> None:
    _sql(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ann')")


def _another_application_id(path: Path) -> None:
    _sql(path, "PRAGMA application_id = 1234", "CREATE TABLE notes (body TEXT)")


def _foreign_runs_table(path: Path) -> None:
    _sql(path, "CREATE TABLE runs (id INTEGER, name TEXT); INSERT INTO runs VALUES (1, 'mine')")


def _our_version_other_tables(path: Path) -> None:
    _sql(path, "CREATE TABLE things (x)", "PRAGMA user_version = 2")


def _our_version_missing_columns(path: Path) -> None:
    _sql(path, MIGRATIONS[1], "PRAGMA user_version = 2")  # version 2 claimed, heartbeat and owner absent


def _garbage_pages(path: Path) -> None:
    _ours(path, *(f"run-{i}" for i in range(40)))
    content = bytearray(path.read_bytes())
    page = int.from_bytes(content[16:18], "big")
    content[page:] = bytes((i * 131 + 7) % 256 for i in range(len(content) - page))  # header and page 1 kept
    path.write_bytes(bytes(content))


def _corrupt_json_row(path: Path) -> None:
    _ours(path, "good", "bad")
    _sql(path, "UPDATE runs SET config = '{not json' WHERE run_id = 'bad'")


def _newer_schema(path: Path) -> None:
    _ours(path, "a")
    _sql(path, "PRAGMA user_version = 99")


# id -> (how the file is made, what the line says, whether a writer is refused too)
BROKEN = {
    "another application's file": (_another_application, "is not a harness run store", True),
    "another application id": (_another_application_id, "belongs to another application", True),
    "a foreign runs table": (_foreign_runs_table, "is not a harness run store", True),
    "our version, other tables": (_our_version_other_tables, "is not a harness run store", True),
    "our version, missing columns": (_our_version_missing_columns, "lacks heartbeat, owner", True),
    "garbage pages": (_garbage_pages, "is damaged", True),
    "a corrupt JSON row": (_corrupt_json_row, "corrupt JSON in its config column", False),
    "a newer schema": (_newer_schema, "newer than this harness", True),
}
READERS = {
    "leaderboard": ["leaderboard"],
    "report": ["report", "--out", "{tmp}/report"],
    "resume": ["run", "--resume", "bad", "--epochs", "3"],
    "compare": ["compare", "bad", "good"],
}


@pytest.fixture(params=sorted(BROKEN), ids=str)
def broken(request, tmp_path) -> tuple[Path, str, bool]:
    make, match, writer = BROKEN[request.param]
    path = tmp_path / "store" / "harness.sqlite"
    path.parent.mkdir()
    make(path)
    return path, match, writer


@pytest.mark.parametrize("reader", sorted(READERS))
def test_readers_refuse_a_store_they_cannot_use_in_one_line_and_leave_it_byte_identical(
    broken, reader, capsys, tmp_path
):
    path, match, _ = broken
    before = digest(path)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in READERS[reader]]
    code, _, err = run_cli(capsys, *argv, "--store", str(path))
    if reader == "compare" and "JSON" in match:
        match = "corrupt JSON"
    assert_refused(code, err, match)
    assert digest(path) == before
    assert not (tmp_path / "report").exists()


def test_a_new_run_refuses_a_store_that_is_not_ours_before_training_and_leaves_it_identical(broken, capsys):
    path, match, writer = broken
    if not writer:
        pytest.skip("a store with one damaged row still takes new runs; its readers name the row")
    before = digest(path)
    assert_refused(*run_cli(capsys, "run", *TINY_ARGS, "--store", str(path))[::2], match)
    assert digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        path.name
    ]


def test_a_store_from_before_the_application_id_is_read_as_is_and_adopted_by_a_writer(tmp_path, capsys):
    shutil.copytree(FIXTURE, tmp_path / "store")
    path = tmp_path / "store" / "harness.sqlite"
    assert query(path, "PRAGMA application_id") == [(0,)]
    before = digest(path)
    code, out, err = run_cli(capsys, "leaderboard", "--store", str(path))
    assert code == 0 and "unet" in out, err
    assert digest(path) == before  # no journal-mode switch, no migration, no id: readers never write
    with RunStore(path) as store:
        assert len(store.list_runs()) == 1
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]  # set by the first writer


def test_an_empty_file_is_adopted_and_a_new_store_carries_the_application_id(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    _ours(path, "a")
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert [r for (r,) in query(path, "SELECT run_id FROM runs")] == ["a"]


def test_readers_of_a_wal_store_do_not_change_its_file(tmp_path, capsys):
    path = tmp_path / "harness.sqlite"
    _ours(path, "a", "b")
    before = digest(path)
    for argv in (["leaderboard"], ["leaderboard", "--format", "json"], ["diff", "a", "b"]):
        assert run_cli(capsys, *argv, "--store", str(path))[0] == 0
    assert digest(path) == before


# --- unwritable store paths -----------------------------------------------------------------------------


def test_a_store_path_under_a_file_is_refused_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    code, _, err = run_cli(capsys, "run", *TINY_ARGS, "--store", str(blocker / "harness.sqlite"))
    assert_refused(code, err, "cannot create the folder of run store")
    assert blocker.read_text() == "keep me"


def test_a_store_path_naming_a_directory_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    assert_refused(*run_cli(capsys, "run", *TINY_ARGS, "--store", str(folder))[::2], "is a directory")
    assert list(folder.iterdir()) == []


def test_an_unwritable_store_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys, monkeypatch):
    path = tmp_path / "harness.sqlite"
    _ours(path, "a")
    before = digest(path)
    # Tests may run as root, for whom chmod changes nothing: the permission check is what is tested.
    monkeypatch.setattr("harness.store.opening.os.access", lambda *args: False)
    assert_refused(*run_cli(capsys, "run", *TINY_ARGS, "--store", str(path))[::2], "is not writable")
    assert digest(path) == before


def test_a_read_only_database_refuses_writes_in_one_line(tmp_path):
    path = tmp_path / "harness.sqlite"
    _ours(path, "a")
    with RunStore(path) as store:
        store._conn.execute("PRAGMA query_only = ON")  # what a read-only file does to every write
        with pytest.raises(Exception, match="cannot write to run store") as caught:
            store.beat("a")
    assert "\n" not in str(caught.value)


# --- checkpoint paths relative to the store -------------------------------------------------------------


def test_a_run_recorded_through_a_relative_store_path_is_usable_from_any_directory(
    tmp_path, capsys, monkeypatch
):
    first, second = tmp_path / "project", tmp_path / "elsewhere"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    assert run_cli(capsys, "run", *TINY_ARGS, "--store", "runs/harness.sqlite")[0] == 0
    store = first / "runs" / "harness.sqlite"
    ((run_id, stored),) = query(store, "SELECT run_id, checkpoint FROM runs")
    assert stored == f"{run_id}/best.pt"  # relative to the store's folder, not to the working directory
    monkeypatch.chdir(second)
    code, _, err = run_cli(
        capsys, "predict", run_id, "--data", "synthetic", "--out", "sub.csv", "--store", str(store)
    )
    assert code == 0, err
    assert (second / "sub.csv").is_file()
