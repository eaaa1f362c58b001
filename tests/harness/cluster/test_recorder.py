"""The driver's recorder: a Ray sweep on a simulated cluster records every run once in the driver's store,
its workers never open a store, the run files come home, a lost node is an interrupted run.

The cluster (`ray.cluster_utils.Cluster`, one module-scoped instance): a head node with no CPUs, where
this process (the driver) and the recorder actor live, and two worker nodes with one CPU each, so every
run trains on a node other than the driver's. The worker nodes' Python processes start with a
`sitecustomize` that refuses (and notes in an audit file) any SQLite connection and any file opened under
the driver's folder, where the stores are.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from harness.cluster.recorder import Recorder, RemoteHeartbeat, inside
from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.store import RunClaimed, RunStore
from harness.sweep.local import run_sweep
from harness.sweep.plan import plan
from harness.sweep.ray_executor import ray_executor
from tests_support import TINY_ARGS, TINY_CONFIG, integrity, query, run_cli, start_fields, tiny

RAY = ["--executor", "ray", "--format", "json"]
RUN_FILES = {"best.pt", "last.pt", "val_per_image.npz"}

# Installed in every Python process of the worker nodes: a store opened there is a test failure.
SITECUSTOMIZE = """
import os, sys

_DRIVER = os.environ["HARNESS_TEST_DRIVER_DIR"]
_AUDIT = os.environ["HARNESS_TEST_AUDIT_FILE"]

def _refuse(event, args):
    if event == "sqlite3.connect" or (
        event == "open" and isinstance(args[0], str) and os.path.abspath(args[0]).startswith(_DRIVER)
    ):
        with open(_AUDIT, "a") as audit:
            audit.write(f"{os.getpid()} {event} {args[0]!r}\\n")
        raise PermissionError(f"a worker node tried {event} {args[0]!r}")

sys.addaudithook(_refuse)
"""


# --- the recorder itself, without Ray ------------------------------------------------------------------


def test_recorder_writes_the_files_before_the_outcome_and_records_a_lost_task(store_path):
    recorder = Recorder(str(store_path))
    recorder.start_run("t1", start_fields("r1"))
    recorder.log_epoch("r1", 1, {"miou_an2dl": 0.5})
    files = {"best.pt": b"best", "last.pt": b"last", "tb/events": b"log"}
    recorder.finish_run("r1", files, "best.pt", {"status": "finished", "metrics": {"miou_an2dl": 0.5}})
    folder = store_path.parent / "r1"
    assert (folder / "best.pt").read_bytes() == b"best" and (folder / "tb" / "events").read_bytes() == b"log"
    assert not list(folder.rglob("*.part"))
    # stored relative to the store's folder, like a local run's: the store can move with its folder
    assert query(store_path, "SELECT status, checkpoint FROM runs") == [("finished", "r1/best.pt")]
    assert recorder.lost("t1", "node gone") == "r1"  # a finished run keeps its outcome
    assert query(store_path, "SELECT status FROM runs") == [("finished",)]

    recorder.start_run("t2", start_fields("r2"))
    assert recorder.lost("t2", "its Ray task was lost: NodeDiedError") == "r2"
    assert recorder.lost("t3", "never started") is None
    assert query(store_path, "SELECT status, error, checkpoint FROM runs WHERE run_id = 'r2'") == [
        ("interrupted", "its Ray task was lost: NodeDiedError", None)
    ]
    with pytest.raises(RunClaimed):  # the claim is the store's: a second sweep's task is refused
        recorder.start_run("t4", start_fields("r3", config_hash="r1", exclusive=True))
    recorder.close()


@pytest.mark.parametrize("name", ["../escape.pt", "/etc/passwd", "a/../../b", ""])
def test_a_run_file_outside_the_run_folder_is_refused(tmp_path, name):
    with pytest.raises(HarnessError, match="not a path inside its run folder"):
        inside(tmp_path, name)


def test_a_workers_heartbeat_beats_through_the_recorder_until_the_run_ends():
    class Recording:
        beats: list[str] = []

        def beat(self, run_id: str) -> None:
            self.beats.append(run_id)

    store = Recording()
    with RemoteHeartbeat(store, "r1", interval=0.02):
        deadline = time.monotonic() + 5.0
        while len(store.beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert store.beats[:2] == ["r1", "r1"]
    count = len(store.beats)
    time.sleep(0.1)
    assert len(store.beats) == count  # stopped with the run


# --- a simulated cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(the cluster, the driver's folder for stores, the audit file of store opens on worker nodes)."""
    driver = tmp_path_factory.mktemp("driver").resolve()
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    audit = site / "audit.txt"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "HARNESS_TEST_DRIVER_DIR": str(driver),
        "HARNESS_TEST_AUDIT_FILE": str(audit),
    }
    # No CPUs on the head: every run (one CPU) must go to a worker node; the recorder asks for none.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1, env_vars=env) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    try:
        yield cluster, workers, driver, audit
    finally:
        ray.shutdown()
        cluster.shutdown()


def no_worker_opened_a_store(audit: Path) -> bool:
    return not audit.exists() or audit.read_text() == ""


def test_the_worker_nodes_refuse_sqlite_so_the_other_tests_would_see_a_store_opened(cluster):
    _, _, _, audit = cluster
    # A lambda travels by value (this module cannot be imported on the workers).
    connect = ray.remote(lambda: __import__("sqlite3").connect(":memory:").close())
    with pytest.raises(ray.exceptions.RayTaskError, match="a worker node tried sqlite3.connect"):
        ray.get(connect.remote())
    assert "sqlite3.connect" in audit.read_text()
    audit.write_text("")  # the later tests start with a clean audit


def test_runs_trained_on_other_nodes_are_recorded_once_with_their_files_home(capsys, cluster):
    _, _, driver, audit = cluster
    store_path = driver / "home" / "harness.sqlite"
    argv = ["sweep", "--arch", "unet,attunet", *TINY_ARGS, *RAY, "--store", str(store_path)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    outcomes = json.loads(out)
    assert [o["status"] for o in outcomes] == ["finished", "finished"]
    rows = query(store_path, "SELECT run_id, status, checkpoint FROM runs")
    assert sorted(rows) == sorted((o["run_id"], "finished", f"{o['run_id']}/best.pt") for o in outcomes)
    for run_id, _, _ in rows:
        assert {p.name for p in (store_path.parent / run_id).iterdir()} == RUN_FILES
        assert len(RunStore(store_path, create=False).history(run_id)) == 1  # the epoch came home too
    assert no_worker_opened_a_store(audit), audit.read_text()

    # The driver predicts with a checkpoint trained on another machine.
    rng = np.random.default_rng(0)
    data = driver / "mars.npz"
    train = np.stack([rng.integers(0, 256, (2, 64, 128)), rng.integers(0, 5, (2, 64, 128))], axis=1)
    np.savez(data, training_set=train.astype(np.uint8), test_set=rng.integers(0, 256, (3, 64, 128)))
    csv, run_id, store = driver / "submission.csv", rows[0][0], ["--store", str(store_path)]
    code, _, err = run_cli(
        capsys, "predict", run_id, "--data", str(data), "--out", str(csv), "--store", str(store_path)
    )
    assert code == 0, err
    assert len(csv.read_text().splitlines()) == 4  # header and the 3 test images
    code, out, err = run_cli(capsys, "compare", rows[0][0], rows[1][0], "--format", "json", *store)
    assert code == 0, err  # both runs' val_per_image.npz are on the driver
    code, out, err = run_cli(capsys, "run", "--resume", run_id, "--epochs", "2", "--format", "json", *store)
    assert code == 0, err  # last.pt came home: the driver continues the run
    assert len(RunStore(store_path, create=False).history(run_id)) == 2


def test_two_concurrent_sweeps_on_the_cluster_train_no_configuration_twice(cluster):
    _, _, driver, audit = cluster
    store_path = driver / "shared" / "harness.sqlite"
    registry = load_plugins()
    runs = plan(TINY_CONFIG, registry, archs=["unet", "attunet"])
    results = []

    def sweep() -> None:
        results.append(run_sweep(runs, store_path, registry, executor=ray_executor(None)))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(o.status for result in results for o in result.outcomes)
    assert statuses == ["finished", "finished", "skipped", "skipped"]
    assert sorted(query(store_path, "SELECT arch, status FROM runs")) == [
        ("attunet", "finished"),
        ("unet", "finished"),
    ]
    assert no_worker_opened_a_store(audit), audit.read_text()


def test_a_lost_node_records_its_run_interrupted_and_a_rerun_trains_it(cluster):
    # Last in the module: it removes one of the two worker nodes.
    cluster, workers, driver, audit = cluster
    store_path = driver / "lost" / "harness.sqlite"
    registry = load_plugins()
    runs = plan(tiny(epochs=8), registry, archs=["unet", "attunet"])
    results = []
    thread = threading.Thread(
        target=lambda: results.append(run_sweep(runs, store_path, registry, executor=ray_executor(None)))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both runs recorded as started: one training on each node
        started = query(store_path, "SELECT COUNT(*) FROM runs WHERE status = 'running'")
        if started and started[0][0] == 2:
            break
        time.sleep(0.05)
    cluster.remove_node(workers[0], allow_graceful=False)
    thread.join(timeout=120)
    (result,) = results
    lost = [o for o in result.outcomes if o.status == "interrupted"]
    assert sorted(o.status for o in result.outcomes) == ["finished", "interrupted"]
    row = query(store_path, "SELECT status, error, checkpoint FROM runs WHERE run_id = ?", lost[0].run_id)
    status, error, checkpoint = row[0]
    assert status == "interrupted" and error.startswith("its Ray task was lost: ") and checkpoint is None
    assert integrity(store_path) == "ok"

    rerun = run_sweep(runs, store_path, registry, executor=ray_executor(None))
    assert sorted(o.status for o in rerun.outcomes) == ["finished", "skipped"]
    assert sorted(query(store_path, "SELECT arch, status FROM runs WHERE status = 'finished'")) == [
        ("attunet", "finished"),
        ("unet", "finished"),
    ]
    assert no_worker_opened_a_store(audit), audit.read_text()
