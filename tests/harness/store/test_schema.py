"""harness.store.schema: stored JSON is standard (NaN/inf as null, numpy scalars as numbers), rows read back
as run dicts, and a new store records SCHEMA_VERSION while an old one is migrated to it."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from harness.store import RunStore
from harness.store import schema as store_schema
from harness.store.schema import JSON_COLUMNS, MIGRATIONS, RUN_KEYS, SCHEMA_VERSION, clean, dumps, run_dict


def test_clean_turns_nan_and_inf_into_none_at_any_depth():
    value = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": float("nan")}}
    assert clean(value) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None}}
    assert clean(None) is None and clean("nan") == "nan"  # only numbers are touched


def test_clean_turns_numpy_scalars_into_plain_numbers_and_keeps_bools():
    cleaned = clean({"n": np.int64(3), "x": np.float32(0.5), "bad": np.float64("nan"), "ok": True})
    assert cleaned == {"n": 3, "x": 0.5, "bad": None, "ok": True}
    assert type(cleaned["n"]) is int and type(cleaned["x"]) is float
    assert clean(True) is True and clean(False) is False  # bool is an Integral: kept, not made 1/0
    assert clean({1: "a"}) == {"1": "a"}  # JSON object keys are strings


def test_dumps_writes_standard_json_that_json_reads_back():
    text = dumps({"miou": np.float64(0.25), "loss": math.nan, "steps": np.int32(7), "path": Path("runs/x")})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"miou": 0.25, "loss": None, "steps": 7, "path": "runs/x"}
    assert dumps([math.inf]) == "[null]"


def _row(**values) -> sqlite3.Row:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    columns = {key: values.get(key) for key in RUN_KEYS}
    names = ", ".join(f'? AS "{key}"' for key in columns)
    return conn.execute(f"SELECT {names}", list(columns.values())).fetchone()


def test_run_dict_has_every_key_and_decodes_the_json_columns():
    row = _row(
        run_id="r1",
        config=dumps({"train": {"lr": 1e-3}}),
        metrics=dumps({"miou_an2dl": math.nan, "iou": {"soil": 0.5}}),
        class_names=dumps(["background", "soil"]),
        seed=3,
    )
    data = run_dict(row)
    assert list(data) == RUN_KEYS
    assert data["config"] == {"train": {"lr": 1e-3}}
    assert data["metrics"] == {"miou_an2dl": None, "iou": {"soil": 0.5}}
    assert data["class_names"] == ["background", "soil"]
    assert data["run_id"] == "r1" and data["seed"] == 3
    assert set(JSON_COLUMNS) <= set(RUN_KEYS)


def test_run_dict_leaves_null_json_columns_as_none():
    data = run_dict(_row(run_id="r2", config=dumps({}), class_names=dumps([])))
    assert data["metrics"] is None and data["config"] == {} and data["class_names"] == []


def test_a_new_store_records_schema_version_and_every_run_key(tmp_path):
    path = tmp_path / "new.sqlite"
    RunStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert set(RUN_KEYS) <= columns
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))  # one migration per version


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_each_migration_step_reaches_a_store_with_its_columns(tmp_path, version):
    path = tmp_path / f"v{version}.sqlite"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for step in range(1, version + 1):
            conn.executescript(MIGRATIONS[step])
        conn.execute(f"PRAGMA user_version = {version}")
    before = path.read_bytes()
    with RunStore(path, create=False) as reader:  # a reader reads it as it is and migrates nothing
        assert reader.list_runs() == []
    assert path.read_bytes() == before
    with RunStore(path):
        pass
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert set(RUN_KEYS) <= columns


def test_a_version_1_store_gains_heartbeats_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(store_schema.SCHEMA_V1)
        conn.execute(
            "INSERT INTO runs (run_id, created, status, config, config_hash, seed, arch, loss, balancer, "
            "dataset_id, device, torch_version, class_names) VALUES ('old', '2025-01-01T00:00:00+00:00', "
            "'running', '{}', 'h', 0, 'unet', 'ce', 'none', 'd', 'cpu', '2', '[]')"
        )
        conn.execute("PRAGMA user_version = 1")
    with RunStore(path) as store:
        assert store._require().execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
        (reaped,) = store.reap_stale()  # a run left 'running' by an old harness: its creation is its beat
        assert reaped["run_id"] == "old" and store.get_run("old")["status"] == "interrupted"


def test_a_version_2_store_gains_the_fold_column_its_runs_none(tmp_path):
    path = tmp_path / "v2.sqlite"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(MIGRATIONS[1] + ";" + MIGRATIONS[2])
        conn.execute(
            "INSERT INTO runs (run_id, created, status, config, config_hash, seed, arch, loss, balancer, "
            "dataset_id, device, torch_version, class_names) VALUES ('old', '2025-01-01T00:00:00+00:00', "
            "'finished', '{}', 'h', 0, 'unet', 'ce', 'none', 'd', 'cpu', '2', '[]')"
        )
        conn.execute("PRAGMA user_version = 2")
    with RunStore(path, create=False) as reader:  # read as it is: no fold column, the runs have no fold
        assert reader.get_run("old")["fold"] is None and reader.finished_hashes() == {("h", 0, None)}
    with RunStore(path) as store:
        assert store.version == 3 and store.get_run("old")["fold"] is None
    with closing(sqlite3.connect(path)) as conn:
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(runs)")}
    assert "runs_hash_seed_fold" in indexes and "runs_hash_seed" not in indexes
