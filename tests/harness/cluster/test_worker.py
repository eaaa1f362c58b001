"""One run inside a Ray worker, without a cluster: the recorder is the real `Recorder` class called in
this process (a stand-in for its actor handle), so the run lands in a real store exactly as a worker's
run does through `RemoteStore`."""

from __future__ import annotations

import pytest
import ray

from harness import hookimpl
from harness.cluster.recorder import Recorder
from harness.cluster.worker import resolve_on_worker, train_on_worker
from harness.config import RunConfig, resolve
from harness.errors import HarnessError
from harness.plugins import load_plugins
from tests_support import TINY_CONFIG, query


class InProcessHandle:
    """`handle.method.remote(*args)` calls `method(*args)` on the wrapped object: an actor handle's shape."""

    def __init__(self, target):
        self.target = target

    def __getattr__(self, name):
        method = getattr(self.target, name)
        return type("Remote", (), {"remote": staticmethod(method)})


class Untouchable:
    def __getattr__(self, name):
        raise AssertionError(f"the recorder was called ({name}) for a run that must not start")


def driver_hash(config: dict) -> str:
    return resolve(RunConfig.model_validate(config), load_plugins()).hash


def test_a_config_resolves_on_the_worker_to_the_drivers_hash_or_is_refused_naming_both():
    expected = driver_hash(TINY_CONFIG)
    resolved, registry = resolve_on_worker(TINY_CONFIG, expected, blocked=[], autoload=True)
    assert resolved.hash == expected
    assert registry.get("architecture", "unet").name == "unet"
    with pytest.raises(HarnessError, match=f"hash {expected} on this worker but 0123abcd on the driver"):
        resolve_on_worker(TINY_CONFIG, "0123abcd", blocked=[], autoload=True)


def test_a_worker_whose_hash_differs_trains_nothing_and_records_nothing():
    with pytest.raises(HarnessError, match="install the same harness and plugins on every node"):
        train_on_worker(TINY_CONFIG, "0123abcd", Untouchable(), "t-1", [], True)


def test_the_run_records_through_the_recorder_and_the_hook_sees_only_its_epochs(tmp_path, monkeypatch):
    monkeypatch.setattr(ray, "get", lambda value: value)  # the stand-in handle returns values, not refs
    store_path = tmp_path / "harness.sqlite"
    recorder = InProcessHandle(Recorder(str(store_path)))
    seen = []

    class EpochHook:
        @hookimpl
        def harness_epoch_end(self, run, epoch, values):
            seen.append((run.run_id, epoch))

    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 2}}
    result = train_on_worker(config, driver_hash(config), recorder, "t-1", [], True, hook=EpochHook())
    assert result.status == "finished"
    assert seen == [(result.run_id, 1), (result.run_id, 2)]
    assert query(store_path, "SELECT run_id, status FROM runs") == [(result.run_id, "finished")]
    assert (store_path.parent / result.run_id / "best.pt").is_file()  # sent home from the scratch folder
