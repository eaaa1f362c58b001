"""plugins.loggers.csv: `--log csv --log-dir DIR` writes DIR/<run_id>/epochs.csv, one row per epoch, read
back with the csv module and compared with the store's history."""

from __future__ import annotations

import csv

import pytest

from harness.cli import main
from harness.store import RunStore
from plugins.loggers.csv import row
from tests_support import TINY_ARGS


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    store = root / "runs" / "harness.sqlite"
    logs = root / "logs"
    args = ["run", *TINY_ARGS, "--epochs", "3", "--log", "csv", "--log-dir", str(logs), "--store", str(store)]
    assert main(args) == 0
    with RunStore(store, create=False) as runs:
        (record,) = runs.list_runs()
        history = runs.history(record["run_id"])
    return record, history, logs, store


def test_one_row_per_epoch_under_the_log_dir_with_the_epoch_values(logged):
    record, history, logs, store = logged
    path = logs / record["run_id"] / "epochs.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 == len(history)
    assert list(rows[0]) == list(row(history[0]))  # header: the epoch values' keys, per class flattened
    assert "val_iou.sand" in rows[0] and "val_miou" in rows[0]
    for written, stored in zip(rows, history, strict=True):
        assert int(written["epoch"]) == stored["epoch"]
        assert float(written["val_miou"]) == pytest.approx(stored["val_miou"])
        assert float(written["val_iou.sand"]) == pytest.approx(stored["val_iou"]["sand"])
        assert written["val_iou.background"] == ""  # the ignored class has no IoU
    assert not (store.parent / record["run_id"] / "epochs.csv").exists()  # only under --log-dir
    assert record["config"]["log"] == {"loggers": ["csv"], "dir": str(logs), "experiment": None}


def test_a_resumed_run_appends_under_the_header_it_has(tmp_path):
    from harness.specs import RunInfo
    from plugins.loggers.csv import CsvLogger

    run = RunInfo("r", {"log": {"loggers": ["csv"]}}, tmp_path, "cpu", tmp_path / "s.sqlite")
    CsvLogger(run).epoch(1, {"epoch": 1, "a": 1.0})
    CsvLogger(run).epoch(2, {"epoch": 2, "a": 2.0, "new": 3})
    with (tmp_path / "epochs.csv").open(newline="") as handle:
        assert list(csv.reader(handle)) == [["epoch", "a"], ["1", "1.0"], ["2", "2.0"]]
