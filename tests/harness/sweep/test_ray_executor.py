"""`harness sweep --executor ray`: runs as Ray tasks on a local Ray instance, recorded in the one store."""

from __future__ import annotations

import json
import sqlite3
import sys

import ray

from harness.cluster.session import RAY_MISSING
from tests_support import TINY_ARGS, run_cli

RAY = ["--executor", "ray", "--format", "json"]


def runs_in(store_path) -> dict[str, str]:
    with sqlite3.connect(store_path) as conn:
        return dict(conn.execute("SELECT run_id, status FROM runs"))


def test_ray_sweep_records_every_run_and_a_rerun_skips_them(capsys, store_path):
    argv = ["sweep", "--arch", "unet,attunet", *TINY_ARGS, *RAY, "--store", str(store_path)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    outcomes = json.loads(out)
    assert sorted(o["arch"] for o in outcomes) == ["attunet", "unet"]
    assert all(o["status"] == "finished" and o["miou"] is not None for o in outcomes)
    assert runs_in(store_path) == {o["run_id"]: "finished" for o in outcomes}
    assert not ray.is_initialized()  # the local instance the executor started is stopped again

    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert [o["status"] for o in json.loads(out)] == ["skipped", "skipped"]
    assert len(runs_in(store_path)) == 2  # nothing trained twice


def test_a_failing_task_does_not_stop_the_ray_sweep(capsys, store_path, tmp_path):
    # Three deep-supervision outputs but one weight: the worker's prepare() refuses it, after planning.
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        """
[data.params]
n = 24
test_n = 3
[train]
epochs = 1
batch_size = 8
eval_batch_size = 16
[[runs]]
arch = { name = "unet", params = { width = 4, depth = 2 } }
[[runs]]
arch = { name = "unetpp", params = { width = 4, depth = 3, deep_supervision = true } }
train = { deep_supervision_weights = [1.0] }
"""
    )
    code, out, _ = run_cli(capsys, "sweep", "--config", str(sweep_file), *RAY, "--store", str(store_path))
    assert code == 1
    outcomes = {o["arch"]: o for o in json.loads(out)}
    assert outcomes["unet"]["status"] == "finished"
    assert outcomes["unetpp"]["status"] == "failed"
    error = outcomes["unetpp"]["error"]
    assert error.startswith("ConfigError: train.deep_supervision_weights has 1 values") and "\n" not in error
    assert list(runs_in(store_path).values()) == ["finished"]  # bad input never reached the store


def test_missing_ray_is_one_line(capsys, store_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, out, err = run_cli(capsys, "sweep", "--arch", "unet", *TINY_ARGS, *RAY, "--store", str(store_path))
    assert code == 2
    assert err.strip() == f"harness: error: {RAY_MISSING}"
    # the distribution's name: `harness` on the package index is somebody else's project
    assert "pip install 'segharness[ray]'" in RAY_MISSING
    assert not store_path.exists()
