"""harness.store.errors: each store error is a one-line HarnessError naming the store file, which the CLI
prints as one line with exit code 2."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.store import RunStore
from harness.store.errors import RunClaimed, RunNotFound, StoreError, StoreNotFound, StoreNotInitialised
from tests_support import start_fields


def one_error_line(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    return lines[0]


def test_every_store_error_is_a_harness_error():
    for kind in (StoreNotFound, StoreError, RunNotFound, StoreNotInitialised, RunClaimed):
        assert issubclass(kind, HarnessError)
        assert str(kind("no run store at a\nb")) == "no run store at a\\nb"  # one line, as every HarnessError
    # "a file this version cannot use, or a refused write": the two special cases are StoreErrors
    assert issubclass(StoreNotInitialised, StoreError) and issubclass(RunClaimed, StoreError)
    assert not issubclass(StoreNotFound, StoreError) and not issubclass(RunNotFound, StoreError)


def test_each_error_is_raised_where_its_docstring_says(tmp_path):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(StoreNotFound, match="no run store at .*missing.sqlite"):
        RunStore(missing, create=False)
    assert not missing.exists()  # readers never create one
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreNotInitialised, match="empty.sqlite is not an initialised run store"):
        RunStore(empty, create=False)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text that is long enough " * 20)
    with pytest.raises(StoreError, match="notes.sqlite is not a SQLite run store"):
        RunStore(text, create=False)
    with RunStore(tmp_path / "runs.sqlite") as store:
        with pytest.raises(RunNotFound, match="has no runs yet"):
            store.get_run("anything")
        store.start_run(**start_fields("20261124-unet-aaaa"))
        store.start_run(**start_fields("20261124-unet-aabb"))
        with pytest.raises(RunNotFound, match="'20261124-unet-aa' is ambiguous"):
            store.get_run("20261124-unet-aa")


@pytest.mark.parametrize("command", [["compare", "a", "b"], ["report", "--out", "{tmp}/report"]])
def test_a_missing_store_is_one_line_naming_the_file(capsys, tmp_path, command):
    store = tmp_path / "nowhere" / "harness.sqlite"
    argv = [part.replace("{tmp}", str(tmp_path)) for part in command]
    line = one_error_line(capsys, *argv, "--store", str(store))
    assert str(store) in line
    assert not store.exists() and not store.parent.exists()  # reading never creates a store


def test_compare_names_a_missing_store_as_a_store_not_found(capsys, tmp_path):
    store = tmp_path / "harness.sqlite"
    line = one_error_line(capsys, "compare", "a", "b", "--store", str(store))
    assert line == f"harness: error: no run store at {store}; train a run first or pass the right --store"


def test_an_unknown_run_id_is_one_line_with_a_suggestion(capsys, tmp_path):
    path = tmp_path / "harness.sqlite"
    with RunStore(path) as store:
        store.start_run(**start_fields("20261124-unet-abcdef"))
    store_flag = ["--store", str(path)]
    line = one_error_line(capsys, "evaluate", "nope", "--data", "synthetic", *store_flag)
    assert line == f"harness: error: unknown run 'nope' in {path}"
    line = one_error_line(capsys, "evaluate", "20261124-unet-abcdeg", "--data", "synthetic", *store_flag)
    assert line.endswith("; did you mean '20261124-unet-abcdef'?")
    line = one_error_line(capsys, "predict", "x\ny", "--data", "synthetic", "--out", "s.csv", *store_flag)
    assert line == f"harness: error: unknown run 'x\\ny' in {path}"  # the id's newline stays escaped
