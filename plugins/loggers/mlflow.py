"""The `mlflow` logger (`--log mlflow`): one MLflow run per harness run, through `MlflowClient` (the
`mlflow-skinny` package, in the `log` extra).

The tracking URI is MLFLOW_TRACKING_URI, else a local file store `mlruns/` next to the run store (or in
log.dir); the experiment is log.experiment, default `harness`. The MLflow run is named after the harness
run and tagged `harness.run_id`; its params are the flattened resolved config (values cut to 500
characters), its metrics each epoch's numbers with `step=epoch`, and at the end the best epoch's mIoU
and per-class IoU (`best_iou/<class>`), with `best.pt` and `per_class.json` as artifacts. Its status
follows the run's: finished -> FINISHED, failed and diverged -> FAILED, interrupted -> KILLED.

A tracking server that is down must not hold the run up: unless set already, MLflow's HTTP retries are
turned off and its request timeout cut to 10 s, so the first failure costs at most that and ends the
logger for the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.specs import RunInfo
from plugins.loggers.common import RunLogger, Sessions, flatten, log_settings, numbers

EXPERIMENT = "harness"
MAX_PARAM_LENGTH = 500
BATCH = 100  # MLflow takes at most 100 params per log_batch call
STATUS = {"finished": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "interrupted": "KILLED"}
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
CHECKPOINT = "best.pt"
PER_CLASS = "per_class.json"


def tracking_uri(run: RunInfo) -> str:
    """MLFLOW_TRACKING_URI, else `file:` the `mlruns` folder in log.dir or beside the run store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    base = log_settings(run).get("dir")
    folder = Path(base).expanduser() if base else Path(run.store_path).parent
    return (folder / "mlruns").resolve().as_uri()


def params(config: dict[str, Any]) -> dict[str, str]:
    """The flattened config as MLflow params (text, at most MAX_PARAM_LENGTH characters each)."""
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in flatten(config).items()}


class MlflowLogger(RunLogger):
    def __init__(self, run: RunInfo):
        super().__init__(run)
        uri = tracking_uri(run)
        for name, value in FAIL_FAST.items():
            os.environ.setdefault(name, value)
        if uri.startswith("file:"):  # MLflow 3 keeps the file store behind an opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.Metric = Metric
        self.client = MlflowClient(tracking_uri=uri)
        self.id = self.client.create_run(
            self.experiment_id(log_settings(run).get("experiment") or EXPERIMENT),
            run_name=run.run_id,
            tags={"harness.run_id": run.run_id, "harness.device": run.device},
        ).info.run_id
        items = [Param(k, v) for k, v in params(run.config).items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.id, params=items[start : start + BATCH])

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # created meanwhile by a run in another process
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self.Metric(k, v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(self.id, metrics=metrics[start : start + BATCH])

    def epoch(self, epoch: int, values: dict[str, Any]) -> None:
        self.log({k: v for k, v in numbers(values).items() if k != "epoch"}, step=epoch)

    def end(self, status: str, metrics: dict[str, Any] | None) -> None:
        if metrics:
            best = {"best_miou": metrics.get("miou_an2dl"), "best_miou_fg": metrics.get("miou_fg")}
            best.update({f"best_iou/{name}": v for name, v in (metrics.get("iou") or {}).items()})
            self.log({k: float(v) for k, v in best.items() if v is not None}, step=0)
            table = {"iou": metrics.get("iou"), "dice": metrics.get("dice")}
            self.client.log_dict(self.id, table, PER_CLASS)
        checkpoint = self.run.run_dir / CHECKPOINT
        if checkpoint.exists():
            self.client.log_artifact(self.id, str(checkpoint))
        self.client.set_terminated(self.id, status=STATUS.get(status, "FAILED"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.id, status="FAILED")


SESSIONS = Sessions("mlflow", MlflowLogger)


@hookimpl
def harness_run_start(run):
    SESSIONS.start(run)


@hookimpl
def harness_epoch_end(run, epoch, values):
    SESSIONS.call(run, "epoch", epoch, values)


@hookimpl
def harness_run_end(run, status, metrics):
    SESSIONS.end(run, status, metrics)
