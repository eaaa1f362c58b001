"""How a run is stored: the SQLite schema, its migrations, the columns read back and the JSON they hold.

A schema change adds an entry to `MIGRATIONS` and bumps `SCHEMA_VERSION`; old stores are upgraded the
first time they are opened (`RunStore`), so stored runs stay readable.
"""

from __future__ import annotations

import json
import math
import numbers
import sqlite3
from typing import Any

from harness.store.errors import StoreError

SCHEMA_VERSION = 3

JSON_COLUMNS = ("config", "metrics", "class_names")
RUN_KEYS = [
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
    "fold",
]

SCHEMA_V1 = """
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
MIGRATIONS: dict[int, str] = {
    1: SCHEMA_V1,
    # ISO UTC time of the last sign of life of a running run, and the process training it as
    # host/pid-namespace/pid (both NULL for runs recorded before version 2).
    2: "ALTER TABLE runs ADD COLUMN heartbeat TEXT; ALTER TABLE runs ADD COLUMN owner TEXT",
    # The fold a run validated on (data.fold; NULL without folds and for runs recorded before version 3):
    # a configuration's runs are its (seed, fold) pairs, which claims and skips key on.
    3: "ALTER TABLE runs ADD COLUMN fold INTEGER; DROP INDEX IF EXISTS runs_hash_seed; "
    "CREATE INDEX runs_hash_seed_fold ON runs (config_hash, seed, fold)",
}


def clean(value: Any) -> Any:
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
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """``value`` as the JSON text stored in a column (cleaned first: NaN/inf become null)."""
    # default=str: configs may carry Paths or enums; the stored copy is for reading back, not re-execution.
    return json.dumps(clean(value), default=str, allow_nan=False)


def run_dict(row: sqlite3.Row, path: Any = "the run store") -> dict:
    """A `runs` row as the run dict readers get: every column of `RUN_KEYS`, JSON columns decoded.

    Columns a row lacks (a store of an older version, opened read-only) read as None; a JSON column that
    does not decode raises one-line `StoreError` naming the run and the store ``path``.
    """
    present = set(row.keys())
    data = {key: row[key] if key in present else None for key in RUN_KEYS}
    for key in JSON_COLUMNS:
        if data[key] is not None:
            try:
                data[key] = json.loads(data[key])
            except (ValueError, TypeError) as exc:
                raise StoreError(
                    f"{path}: run {data['run_id']!r} has corrupt JSON in its {key} column ({exc}); "
                    "the store is damaged"
                ) from None
    return data
