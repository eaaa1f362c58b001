"""The `csv` logger (`--log csv`): one CSV per run, one row per epoch, written as each epoch ends.

The file is `runs/<run_id>/epochs.csv` (or `<log.dir>/<run_id>/epochs.csv`); its header is the epoch
values' keys, with the per-class IoU as one column per class (`val_iou.soil`). A resumed run appends
to its file under the header it already has.
"""

from __future__ import annotations

import csv
from typing import Any

from harness import hookimpl
from harness.specs import RunInfo
from plugins.loggers.common import RunLogger, Sessions, run_log_dir

FILE_NAME = "epochs.csv"


def row(values: dict[str, Any]) -> dict[str, Any]:
    """An epoch's values as one CSV row: nested dicts become `key.name` columns, None an empty cell."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return {k: "" if v is None else v for k, v in flat.items()}


class CsvLogger(RunLogger):
    def __init__(self, run: RunInfo):
        super().__init__(run)
        self.path = run_log_dir(run) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size:  # a resumed run goes on in its file
            with self.path.open(newline="") as handle:
                self.header = next(csv.reader(handle), None)

    def epoch(self, epoch: int, values: dict[str, Any]) -> None:
        line = row(values)
        new = self.header is None
        if new:
            self.header = list(line)
        with self.path.open("a" if not new else "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.header, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(line)


SESSIONS = Sessions("csv", CsvLogger)


@hookimpl
def harness_run_start(run):
    SESSIONS.start(run)


@hookimpl
def harness_epoch_end(run, epoch, values):
    SESSIONS.call(run, "epoch", epoch, values)


@hookimpl
def harness_run_end(run, status, metrics):
    SESSIONS.end(run, status, metrics)
