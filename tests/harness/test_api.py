"""harness.api, the notebook API: run records a run, leaderboard and runs read the store (creating nothing),
load_source takes data three ways, predict writes the submission CSV, evaluate scores every image; and the
package exposes the API lazily (`harness.run`)."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import harness
from harness import api
from harness.config import build_config
from harness.data.dataset import SegmentationData
from harness.data.synthetic import synthetic
from harness.errors import DataError, HarnessError, PluginError
from harness.store import RunStore
from harness.training.run import RunResult
from tests_support import TINY_CONFIG


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished run: (its RunResult, its store path)."""
    store = tmp_path_factory.mktemp("api") / "runs" / "harness.sqlite"
    return api.run(TINY_CONFIG, store=store), store


def test_run_returns_a_finished_result_recorded_in_the_store(trained):
    result, store = trained
    assert isinstance(result, RunResult)
    assert result.status == "finished" and result.error is None
    assert result.epochs == 1 and result.best_epoch == 1 and len(result.history) == 1
    assert 0 <= result.miou <= 1 and result.miou == result.metrics["miou_an2dl"]
    assert result.checkpoint == store.parent / result.run_id / "best.pt" and result.checkpoint.is_file()
    assert result.config["arch"]["params"]["width"] == 4 and result.config["train"]["epochs"] == 1
    with RunStore(store, create=False) as run_store:
        record = run_store.get_run(result.run_id)
    assert record["status"] == "finished" and record["metrics"]["miou_an2dl"] == result.miou
    assert record["config"] == result.config and record["epochs"] == 1


def test_run_takes_a_run_config_as_well_as_a_dict_and_checks_it_first(tmp_path):
    config, _ = build_config({"arch": {"name": "nope"}})
    assert isinstance(config, api.RunConfig)
    store = tmp_path / "s.sqlite"
    with pytest.raises(PluginError, match="unknown architecture 'nope'"):
        api.run(config, store=store)
    with pytest.raises(PluginError, match="unknown architecture 'nope'"):
        api.run({"arch": {"name": "nope"}}, store=store)
    assert not store.exists()  # refused before anything is recorded


def test_leaderboard_is_a_dataframe_with_the_run(trained):
    result, store = trained
    frame = api.leaderboard(store=store)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 1
    row = frame.iloc[0]
    assert row["run_id"] == result.run_id and row["arch"] == "unet" and row["rank"] == 1
    assert row["miou"] == pytest.approx(result.miou)
    assert {"iou_soil", "iou_bedrock", "iou_sand"} <= set(frame.columns)
    grouped = api.leaderboard(store=store, grouped=True)
    assert len(grouped) == 1 and grouped.iloc[0]["n"] == 1 and "run_id" not in grouped.columns
    assert grouped.iloc[0]["miou_mean"] == pytest.approx(result.miou)
    # the filters reach the store
    assert api.leaderboard(store=store, arch="segnet").empty
    assert api.leaderboard(store=store, status="failed").empty
    assert api.leaderboard(store=store, since="2999-01-01").empty
    assert len(api.leaderboard(store=store, status=None, loss="ce")) == 1


def test_runs_on_a_missing_store_is_empty_and_creates_nothing(tmp_path, trained):
    missing = tmp_path / "nowhere" / "harness.sqlite"
    assert api.runs(missing) == []
    assert api.leaderboard(store=missing).empty
    assert not missing.exists() and not missing.parent.exists()
    result, store = trained
    assert [run["run_id"] for run in api.runs(store)] == [result.run_id]
    assert api.runs(store, status="running") == []


def test_load_run_gives_the_best_checkpoint_in_eval_mode(trained):
    result, store = trained
    loaded = api.load_run(result.run_id[:16], store=store)  # a unique prefix is enough
    assert loaded.run_id == result.run_id and not loaded.model.training
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert loaded.resolved.config.arch.name == "unet"


def test_load_source_passes_data_through_builds_a_named_dataset_and_reads_an_npz(tmp_path):
    data = synthetic(n=2, test_n=0, height=8, width=8)
    assert api.load_source(data, 5) is data
    named = api.load_source("synthetic", 5)
    assert isinstance(named, SegmentationData) and named.source.startswith("synthetic(")
    path = tmp_path / "mars.npz"
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (3, 16, 24)), rng.integers(0, 5, (3, 16, 24))], axis=1)
    np.savez(path, training_set=train.astype(np.uint8), test_set=rng.integers(0, 256, (2, 16, 24)))
    loaded = api.load_source(str(path), 5)
    assert loaded.source == str(path) and len(loaded) == 3 and loaded.test_images.shape == (2, 16, 24)
    assert torch.equal(loaded.masks, torch.from_numpy(train[:, 1].astype(np.uint8)))
    with pytest.raises(DataError, match="no such file"):
        api.load_source(str(tmp_path / "missing.npz"), 5)
    with pytest.raises(PluginError, match="did you mean 'synthetic'"):
        api.load_source("synthetc", 5)


def test_predict_writes_the_submission_csv_and_never_the_ignored_class(trained, tmp_path):
    result, store = trained
    data = synthetic(n=2, test_n=3, seed=1)
    out = tmp_path / "submission.csv"
    masks = api.predict(result.run_id, data, out=out, store=store, device="cpu")
    assert masks.shape == (3, 64, 128) and masks.dtype == np.uint8
    assert masks.min() >= 1 and masks.max() <= 4  # class 0 is ignored: never predicted
    with out.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", *map(str, range(64 * 128))]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    assert np.array_equal(np.array([row[1:] for row in rows[1:]], dtype=int), masks.reshape(3, -1))
    assert not out.with_name(out.name + ".tmp").exists()
    again = api.predict(result.run_id, data, store=store, device="cpu")  # no out: no file
    assert np.array_equal(again, masks)


def test_predict_never_gives_the_ignored_class_even_where_the_model_prefers_it(trained, monkeypatch):
    result, store = trained
    load_run = api.load_run

    def background_loving(*args, **kwargs):
        loaded = load_run(*args, **kwargs)
        loaded.model.register_forward_hook(
            lambda module, inputs, logits: logits + torch.eye(5)[0, :, None, None] * 1e3
        )
        return loaded

    data = synthetic(n=1, test_n=2, seed=2)
    plain = api.predict(result.run_id, data, store=store, device="cpu")
    monkeypatch.setattr(api, "load_run", background_loving)
    masks = api.predict(result.run_id, data, store=store, device="cpu")
    assert masks.min() >= 1  # the ignored class (0) is never predicted, whatever its logit
    assert np.array_equal(masks, plain)  # the other classes compete as before


def test_predict_refuses_data_without_a_test_set_and_a_missing_folder(trained, tmp_path):
    result, store = trained
    with pytest.raises(DataError, match="has no test_set to predict"):
        api.predict(result.run_id, synthetic(n=2, test_n=0), store=store)
    with pytest.raises(HarnessError, match="does not exist"):
        api.predict(result.run_id, synthetic(n=1, test_n=1), out=tmp_path / "no" / "s.csv", store=store)


def test_evaluate_scores_every_labelled_image(trained):
    result, store = trained
    data = synthetic(n=7, test_n=2, seed=3)
    scored = api.evaluate(result.run_id, data, store=store, device="cpu")
    assert scored["run_id"] == result.run_id and scored["data"] == data.source
    assert scored["images"] == 7
    assert 0 <= scored["miou_an2dl"] <= 1 and 0 <= scored["pixel_accuracy"] <= 1
    assert set(scored["iou"]) == set(data.class_names)
    fewer = api.evaluate(result.run_id, data.subset(torch.arange(3)), store=store, device="cpu")
    assert fewer["images"] == 3 and fewer["miou_an2dl"] != scored["miou_an2dl"]


def test_the_package_exposes_the_api_lazily():
    assert harness.run is api.run and harness.leaderboard is api.leaderboard
    assert harness.predict is api.predict and harness.evaluate is api.evaluate
    assert harness.RunResult is RunResult and harness.load_run is api.load_run
    assert set(harness.__all__) >= {"hookimpl", "run", "leaderboard", "predict", "evaluate"}
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        harness.nope  # noqa: B018
    code = "import sys, harness; print('harness.api' in sys.modules, 'torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["False", "False"]  # `import harness` alone pulls in neither
