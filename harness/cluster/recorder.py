"""One writer for a Ray sweep or study: the driver's recorder, and the proxy a worker's run records into.

With `--executor ray` no worker opens the run store. A task trains its run with the ordinary
`harness.training.run.execute`, handing it a `RemoteStore` instead of a store path: an object with the
methods the training path calls on a `RunStore` (reap_stale, start_run, log_epoch, beat, heartbeat,
run_dir, finish_run), each forwarded to the sweep's one `Recorder`. The recorder is a Ray actor pinned to
the driver's node (`start_recorder`) that owns the only `RunStore`, so claims (exclusive start), skips,
heartbeats and leases, and final statuses are written exactly as a local run writes them, into the
driver's store, whichever machine trained the run.

A run's files (best.pt, last.pt, val_per_image.npz, and whatever a logger left in its run folder) are
written on the worker into a scratch folder and sent home with `finish_run`: the recorder writes each
file into the driver's run folder under a temporary name and renames it, then records the outcome, so
a finished run never points at a file that is not there. A task whose node or worker dies never reaches
`finish_run`; the driver then calls `Recorder.lost`, which records that run 'interrupted' with the
reason, and a rerun of the sweep trains it again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from harness.cluster.session import on_driver
from harness.errors import HarnessError
from harness.store import RunStore, heartbeat_seconds

# The status `Recorder.lost` gives a run whose task never reported back (node lost, worker killed).
LOST_STATUS = "interrupted"


class Recorder:
    """The driver's writer of the run store (run as a Ray actor, one call at a time).

    Each task's runs are tracked by the task's `ticket` (a name the driver gives it), so that the driver
    can record the run of a task that died as interrupted (`lost`) without knowing its random run id.
    """

    def __init__(self, store_path: str):
        self.store = RunStore(store_path)
        self.tickets: dict[str, str] = {}  # ticket -> the run id its task started

    def reap_stale(self) -> list[dict]:
        return self.store.reap_stale()

    def start_run(self, ticket: str, fields: dict[str, Any]) -> None:
        self.store.start_run(**fields)  # RunClaimed (exclusive) reaches the task as the cause of its error
        self.tickets[ticket] = fields["run_id"]

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        self.store.log_epoch(run_id, epoch, values)

    def beat(self, run_id: str) -> None:
        self.store.beat(run_id)

    def finish_run(self, run_id: str, files: dict[str, bytes], checkpoint: str | None, fields: dict) -> None:
        """Write the run's files into its folder next to the store, then record its outcome."""
        folder = self.store.run_dir(run_id)
        for name, data in files.items():
            write_atomically(inside(folder, name), data)
        path = None if checkpoint is None else str(inside(folder, checkpoint))
        self.store.finish_run(run_id, checkpoint=path, **fields)

    def lost(self, ticket: str, reason: str) -> str | None:
        """Record the run of `ticket`'s task as interrupted with `reason` if it is still running; return its
        id (None when the task never started a run)."""
        run_id = self.tickets.get(ticket)
        if run_id is None:
            return None
        if self.store.get_run(run_id)["status"] == "running":
            self.store.finish_run(run_id, status=LOST_STATUS, error=reason)
        return run_id

    def close(self) -> None:
        self.store.close()


def inside(folder: Path, name: str) -> Path:
    """`folder / name` for a relative POSIX `name` sent by a worker; anything escaping `folder` is refused."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(part in ("..", "") for part in parts):
        raise HarnessError(f"a worker sent a run file named {name!r}: not a path inside its run folder")
    return folder.joinpath(*parts)


def write_atomically(path: Path, data: bytes) -> None:
    """Write under a temporary name and rename: a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def start_recorder(ray: Any, store_path: Path) -> Any:
    """Start the sweep's Recorder actor on this (the driver's) node, where `store_path` is."""
    return ray.remote(Recorder).options(**on_driver(ray)).remote(str(store_path))


def run_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative POSIX name -> bytes); nothing when the folder is missing."""
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class RemoteStore:
    """What a Ray worker's run records into: `RunStore`'s writing methods, forwarded to the Recorder.

    `scratch` is a folder on the worker's node that holds the run folders while they train; `path` (what
    the lifecycle hooks see as `RunInfo.store_path`) names a store file in it that is never created.
    """

    def __init__(self, recorder: Any, ticket: str, scratch: Path):
        self.recorder, self.ticket, self.scratch = recorder, ticket, Path(scratch)
        self.path = self.scratch / "harness.sqlite"

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.recorder, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:  # the store refused (RunClaimed, StoreError): raise that
            raise (exc.cause or exc) from None

    def run_dir(self, run_id: str) -> Path:
        return self.scratch / run_id

    def reap_stale(self) -> list[dict]:
        return self._call("reap_stale")

    def start_run(self, **fields: Any) -> None:
        self._call("start_run", self.ticket, fields)

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        self._call("log_epoch", run_id, epoch, values)

    def beat(self, run_id: str) -> None:
        self._call("beat", run_id)

    def heartbeat(self, run_id: str) -> RemoteHeartbeat:
        return RemoteHeartbeat(self, run_id)

    def finish_run(self, run_id: str, *, checkpoint: str | None = None, **fields: Any) -> None:
        """Send the run's files and outcome home in one call (the files are written before the status)."""
        folder = self.run_dir(run_id)
        relative = None if checkpoint is None else Path(checkpoint).relative_to(folder).as_posix()
        self._call("finish_run", run_id, run_files(folder), relative, fields)


class RemoteHeartbeat:
    """`harness.store.Heartbeat` for a worker: a daemon thread beats through the recorder while the run
    trains, so a long epoch never looks like a lost run."""

    def __init__(self, store: RemoteStore, run_id: str, interval: float | None = None):
        self.store, self.run_id = store, run_id
        self.interval = heartbeat_seconds() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.beat(self.run_id)
            except Exception:  # a missed beat is harmless: the lease is several beats long
                continue

    def __enter__(self) -> RemoteHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=6.0)
