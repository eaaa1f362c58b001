"""plugins.loggers.mlflow: a 3-epoch run read back with MlflowClient from the default local store (params,
metric history with steps, status, artifacts), and the status mapping."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from harness import api  # noqa: E402
from plugins.loggers.common import flatten  # noqa: E402
from plugins.loggers.mlflow import MAX_PARAM_LENGTH, STATUS, params  # noqa: E402
from tests_support import tiny  # noqa: E402


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path_factory.mktemp("mlflow") / "runs" / "harness.sqlite"
    result = api.run(tiny(epochs=3) | {"log": {"loggers": ["mlflow"], "experiment": "study"}}, store=store)
    client = MlflowClient(tracking_uri=(store.parent / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    yield result, client, run
    mp.undo()


def test_one_mlflow_run_named_after_the_harness_run_and_finished(tracked):
    result, _, run = tracked
    assert run.info.run_name == result.run_id and run.data.tags["harness.run_id"] == result.run_id
    assert run.info.status == "FINISHED"


def test_params_are_the_flattened_resolved_config(tracked):
    result, _, run = tracked
    assert run.data.params == {k: str(v) for k, v in flatten(result.config).items()}
    assert run.data.params["arch.params.width"] == "4" and run.data.params["log.experiment"] == "study"


def test_every_epoch_metric_has_one_value_per_step(tracked):
    result, client, run = tracked
    for key in ("train_loss", "val_loss", "val_miou", "val_miou_fg", "lr", "img_s", "val_iou/sand"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3], key
    by_step = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_miou")}
    assert by_step == pytest.approx({h["epoch"]: h["val_miou"] for h in result.history})


def test_the_best_metrics_and_the_artifacts_are_logged_at_the_end(tracked):
    result, client, run = tracked
    assert run.data.metrics["best_miou"] == pytest.approx(result.miou)
    assert run.data.metrics["best_iou/sand"] == pytest.approx(result.metrics["iou"]["sand"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"best.pt", "per_class.json"}
    path = client.download_artifacts(run.info.run_id, "per_class.json")
    with open(path) as handle:
        assert json.load(handle)["iou"] == result.metrics["iou"]


def test_status_and_long_values_follow_mlflow_rules():
    assert STATUS == {
        "finished": "FINISHED",
        "failed": "FAILED",
        "diverged": "FAILED",
        "interrupted": "KILLED",
    }
    assert len(params({"a": "x" * 2000})["a"]) == MAX_PARAM_LENGTH
