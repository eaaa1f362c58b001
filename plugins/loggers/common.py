"""What the built-in loggers share: whether a run asked for one, where it writes, the flattened config,
and the rule that a logger never fails a run.

Each logger module defines a `RunLogger` subclass (one object per run it logs) and hands it to a
`Sessions`, which its hook functions call. A run asks for a logger by name in its config's `log`
section (`--log csv,tensorboard`). Whatever goes wrong in a logger (its package missing, a tracking
server down, a bug) is one warning line on stderr, once per run, and that logger logs nothing more for
the run: the run itself goes on and ends as it would have.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from harness.specs import RunInfo


def log_settings(run: RunInfo) -> dict[str, Any]:
    """The run's `log` section (empty for a config recorded before loggers existed)."""
    section = run.config.get("log")
    return section if isinstance(section, dict) else {}


def wants(run: RunInfo, name: str) -> bool:
    """Whether the run asked for the logger `name` (`--log`, log.loggers)."""
    return name in (log_settings(run).get("loggers") or [])


def run_log_dir(run: RunInfo) -> Path:
    """Where a file logger writes this run: `<log.dir>/<run_id>` when log.dir is set, else the run's own
    directory (`runs/<run_id>`)."""
    base = log_settings(run).get("dir")
    return Path(base).expanduser() / run.run_id if base else run.run_dir


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as `{'arch.params.depth': 4, ...}`; lists become JSON text, other leaves stay."""
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: "{}"}
    if isinstance(tree, (list, tuple)):
        tree = json.dumps(tree)
    return {prefix[:-1]: tree}


def numbers(values: dict[str, Any], separator: str = "/") -> dict[str, float]:
    """The numeric leaves of an epoch's values (`val_iou` per class as `val_iou/soil`); None is left out."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}{separator}{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, cut to `limit` characters."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunLogger:
    """One logger's session with one run. `__init__` opens it (at harness_run_start); each method is
    called by the hook of the same moment. Any exception ends the session (see `Sessions`)."""

    def __init__(self, run: RunInfo):
        self.run = run

    def epoch(self, epoch: int, values: dict[str, Any]) -> None:
        pass

    def best(self, epoch: int, sample) -> None:
        pass

    def end(self, status: str, metrics: dict[str, Any] | None) -> None:
        pass

    def close(self) -> None:
        """Release what the session holds (files, writers) after it failed; errors here are ignored."""


class Sessions:
    """The open sessions of one logger, by run id (a process may train several runs, one after another or
    at once). The first exception of a session is one warning line on stderr and closes it."""

    def __init__(self, name: str, factory: type[RunLogger]):
        self.name = name
        self.factory = factory
        self.open: dict[str, RunLogger] = {}
        self.lock = threading.Lock()

    def start(self, run: RunInfo) -> None:
        if not wants(run, self.name):
            return
        try:
            session = self.factory(run)
        except Exception as exc:
            self.warn(run, exc)
            return
        with self.lock:
            self.open[run.run_id] = session

    def call(self, run: RunInfo, method: str, *args: Any) -> None:
        session = self.open.get(run.run_id)
        if session is None:
            return
        try:
            getattr(session, method)(*args)
        except Exception as exc:
            with self.lock:
                self.open.pop(run.run_id, None)
            self.warn(run, exc)
            with contextlib.suppress(Exception):
                session.close()

    def end(self, run: RunInfo, status: str, metrics: dict[str, Any] | None) -> None:
        self.call(run, "end", status, metrics)
        with self.lock:
            self.open.pop(run.run_id, None)

    def warn(self, run: RunInfo, exc: BaseException) -> None:
        reason = one_line(exc)
        if isinstance(exc, ImportError):
            reason = f"{reason} (install the log extra: pip install 'segharness[log]')"
        sys.stderr.write(
            f"harness: warning: the {self.name} logger failed, it logs nothing more for run {run.run_id}: "
            f"{reason}\n"
        )
        sys.stderr.flush()
