"""The SQLite run store: round-trips, lookups, crash consistency and safety of stored strings."""

import sqlite3
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.store import (
    SCHEMA_VERSION,
    Heartbeat,
    RunClaimed,
    RunNotFound,
    RunStore,
    StoreError,
    StoreNotFound,
)
from tests_support import start_fields

CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]
METRICS = {
    "miou_an2dl": 0.61,
    "miou_fg": 0.55,
    "pixel_accuracy": 0.83,
    "iou": {"background": None, "soil": 0.7, "bedrock": 0.6, "sand": 0.5, "big rock": None},
    "dice": {"background": None, "soil": 0.82, "bedrock": 0.75, "sand": 0.66, "big rock": None},
}


def start(store: RunStore, run_id: str, **overrides) -> dict:
    fields = {
        "run_id": run_id,
        "config": {"model": {"arch": "unet", "width": [16, 32]}, "lr": 1e-3, "aug": None, "name": "é"},
        "config_hash": "abc123",
        "seed": 0,
        "arch": "unet",
        "loss": "ce",
        "balancer": "none",
        "dataset_id": "mars-v1",
        "device": "cpu",
        "torch_version": "2.13.0",
        "params": 1_234_567,
        "gflops": 3.5,
        "class_names": CLASSES,
    }
    fields.update(overrides)
    store.start_run(**fields)
    return fields


@pytest.fixture
def store(tmp_path: Path):
    with RunStore(tmp_path / "sub" / "runs.sqlite") as opened:
        yield opened


def test_full_run_round_trips(store: RunStore) -> None:
    fields = start(store, "r1")
    store.log_epoch("r1", 1, {"train_loss": 1.5, "val_miou": 0.3, "lr": 1e-3})
    store.log_epoch("r1", 2, {"train_loss": 1.1, "val_miou": 0.5, "lr": 5e-4})
    store.finish_run(
        "r1",
        status="finished",
        metrics=METRICS,
        epochs=2,
        best_epoch=2,
        wall_time=12.5,
        train_img_s=40.0,
        checkpoint=store.run_dir("r1") / "best.pt",
    )
    run = store.get_run("r1")
    for key in ("run_id", "config", "config_hash", "seed", "arch", "loss", "balancer", "dataset_id"):
        assert run[key] == fields[key], key
    for key in ("device", "torch_version", "params", "gflops"):
        assert run[key] == fields[key], key
    assert run["class_names"] == CLASSES
    assert run["status"] == "finished"
    assert run["metrics"] == METRICS
    assert (run["epochs"], run["best_epoch"], run["wall_time"], run["train_img_s"]) == (2, 2, 12.5, 40.0)
    assert run["checkpoint"] == str((store.run_dir("r1") / "best.pt").resolve())
    assert run["error"] is None
    assert run["created"].endswith("+00:00")
    assert store.history("r1") == [
        {"epoch": 1, "train_loss": 1.5, "val_miou": 0.3, "lr": 1e-3},
        {"epoch": 2, "train_loss": 1.1, "val_miou": 0.5, "lr": 5e-4},
    ]


def test_store_creates_parent_dirs_and_schema_version(store: RunStore) -> None:
    assert store.path.is_file()
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_wal_mode(store: RunStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_list_runs_filters_newest_first(store: RunStore) -> None:
    start(store, "a", arch="unet", loss="ce")
    start(store, "b", arch="deeplab", loss="dice")
    start(store, "c", arch="unet", loss="dice")
    store.finish_run("a", status="finished", metrics=METRICS)
    store.finish_run("b", status="failed", error="CUDA OOM")
    assert [r["run_id"] for r in store.list_runs()] == ["c", "b", "a"]
    assert [r["run_id"] for r in store.list_runs(arch="unet")] == ["c", "a"]
    assert [r["run_id"] for r in store.list_runs(arch="unet", loss="dice")] == ["c"]
    assert [r["run_id"] for r in store.list_runs(status="failed")] == ["b"]
    assert [r["run_id"] for r in store.list_runs(balancer="none", status="running")] == ["c"]
    assert store.list_runs(arch="nope") == []
    assert store.get_run("b")["error"] == "CUDA OOM"


def test_finished_hashes(store: RunStore) -> None:
    start(store, "a", config_hash="h1", seed=0)
    start(store, "b", config_hash="h1", seed=1)
    start(store, "c", config_hash="h2", seed=0)
    store.finish_run("a", status="finished")
    store.finish_run("b", status="failed")
    assert store.finished_hashes() == {("h1", 0, None)}


def test_prefix_lookup(store: RunStore) -> None:
    start(store, "20250101-unet-ce-s0")
    start(store, "20250101-unet-dice-s0")
    start(store, "20250102-deeplab-ce-s0")
    assert store.get_run("20250102")["run_id"] == "20250102-deeplab-ce-s0"
    assert store.get_run("20250101-unet-d")["run_id"] == "20250101-unet-dice-s0"
    assert len(store.history("20250102")) == 0
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.get_run("20250101-unet")


def test_unknown_id_suggests_close_match(store: RunStore) -> None:
    start(store, "unet-ce-s0")
    with pytest.raises(RunNotFound, match="did you mean 'unet-ce-s0'") as info:
        store.get_run("unet-ce-s1")
    assert isinstance(info.value, HarnessError)
    with pytest.raises(RunNotFound):
        store.get_run("")
    with pytest.raises(RunNotFound):
        store.history("zzz")


def test_unknown_id_in_empty_store(store: RunStore) -> None:
    with pytest.raises(RunNotFound, match="no runs"):
        store.get_run("x")


def test_prefix_is_not_a_like_pattern(store: RunStore) -> None:
    start(store, "run_a")
    # '%' and '_' would be wildcards in a LIKE pattern; prefixes are matched literally and case-sensitively.
    for bogus in ("%", "run%", "RUN_A", "ru_"):
        with pytest.raises(RunNotFound):
            store.get_run(bogus)


def test_interrupted_run_is_consistent_for_a_second_connection(store: RunStore) -> None:
    start(store, "r1")
    store.log_epoch("r1", 1, {"train_loss": 2.0})
    # A reader opened while the writer still holds its connection (as the leaderboard would during training).
    with RunStore(store.path, create=False) as reader:
        assert reader.get_run("r1")["status"] == "running"
        assert reader.history("r1") == [{"epoch": 1, "train_loss": 2.0}]
        store.log_epoch("r1", 2, {"train_loss": 1.0})
        store.finish_run("r1", status="interrupted", epochs=2, error="KeyboardInterrupt")
        run = reader.get_run("r1")
        assert (run["status"], run["epochs"], run["error"]) == ("interrupted", 2, "KeyboardInterrupt")
        assert run["metrics"] is None
        assert [h["epoch"] for h in reader.history("r1")] == [1, 2]


def test_finish_keeps_earlier_values_and_validates(store: RunStore) -> None:
    start(store, "r1")
    store.finish_run("r1", status="finished", metrics=METRICS, epochs=3)
    store.finish_run("r1", status="interrupted")
    run = store.get_run("r1")
    assert (run["status"], run["epochs"], run["metrics"]) == ("interrupted", 3, METRICS)
    with pytest.raises(ValueError):
        store.finish_run("r1", status="done")
    with pytest.raises(RunNotFound):
        store.finish_run("nope", status="failed")
    with pytest.raises(RunNotFound):
        store.log_epoch("nope", 1, {})


def test_relogging_an_epoch_replaces_it(store: RunStore) -> None:
    start(store, "r1")
    store.log_epoch("r1", 1, {"val_miou": 0.1})
    store.log_epoch("r1", 1, {"val_miou": 0.2})
    assert store.history("r1") == [{"epoch": 1, "val_miou": 0.2}]


def test_nan_metrics_are_stored_as_null(store: RunStore) -> None:
    start(store, "r1", gflops=float("nan"))
    metrics = {"miou_an2dl": float("nan"), "iou": {"soil": float("inf")}}
    store.finish_run("r1", status="finished", metrics=metrics)
    run = store.get_run("r1")
    assert run["gflops"] is None
    assert run["metrics"] == {"miou_an2dl": None, "iou": {"soil": None}}


def test_duplicate_run_id_refused(store: RunStore) -> None:
    start(store, "r1")
    with pytest.raises(StoreError, match="already exists"):
        start(store, "r1")


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a\\b"])
def test_run_ids_that_escape_the_store_dir_are_refused(store: RunStore, bad: str) -> None:
    with pytest.raises(StoreError):
        start(store, bad)
    with pytest.raises(StoreError):
        store.run_dir(bad)


def test_hostile_strings_round_trip_harmlessly(store: RunStore) -> None:
    evil = "'); DROP TABLE runs;--"
    quoted = 'it\'s a "quoted" run'
    start(store, evil, arch=quoted, loss=evil, config={"note": evil})
    start(store, quoted)
    store.log_epoch(evil, 1, {"note": evil})
    store.finish_run(evil, status="failed", error=evil, checkpoint=store.run_dir(evil) / evil)
    run = store.get_run(evil)
    assert (run["run_id"], run["arch"], run["loss"], run["error"], Path(run["checkpoint"]).name) == (
        evil,
        quoted,
        evil,
        evil,
        evil,
    )
    assert run["config"] == {"note": evil}
    assert store.history(evil) == [{"epoch": 1, "note": evil}]
    assert [r["run_id"] for r in store.list_runs(arch=quoted)] == [evil]
    assert {r["run_id"] for r in store.list_runs()} == {evil, quoted}
    assert store.get_run("it's")["run_id"] == quoted
    assert store.run_dir(evil) == store.path.parent / evil


def test_create_false_on_missing_path_raises_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "runs.sqlite"
    with pytest.raises(StoreNotFound) as info:
        RunStore(target, create=False)
    assert isinstance(info.value, HarnessError)
    assert not target.exists()
    assert not target.parent.exists()


def test_create_false_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    target = tmp_path / "empty.sqlite"
    target.touch()
    with pytest.raises(HarnessError):
        RunStore(target, create=False)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "runs.sqlite"
    RunStore(target).close()
    conn = sqlite3.connect(target)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        RunStore(target)


def test_reopen_keeps_data_and_closed_store_errors(tmp_path: Path) -> None:
    target = tmp_path / "runs.sqlite"
    with RunStore(target) as store:
        start(store, "r1")
    with RunStore(target) as again:
        assert again.get_run("r1")["status"] == "running"
    again.close()
    with pytest.raises(StoreError, match="closed"):
        again.list_runs()


def test_numpy_scalars_are_stored_as_plain_numbers(store: RunStore) -> None:
    np = pytest.importorskip("numpy")
    start(store, "r1", params=np.int64(42), gflops=np.float32(1.5), seed=np.int64(3))
    metrics = {"miou_an2dl": np.float32(0.5), "iou": {"soil": np.float64(0.25)}}
    store.finish_run("r1", status="finished", metrics=metrics, epochs=np.int64(2), wall_time=np.float64(9.0))
    run = store.get_run("r1")
    got = (run["params"], run["gflops"], run["seed"], run["epochs"], run["wall_time"])
    assert got == (42, 1.5, 3, 2, 9.0)
    assert run["metrics"] == {"miou_an2dl": 0.5, "iou": {"soil": 0.25}}
    assert store.finished_hashes() == {("abc123", 3, None)}


def test_the_heartbeat_of_a_run_beats_this_stores_file(tmp_path):
    # harness.training.run asks the store for it, so a Ray worker's store-like recorder can give its own.
    with RunStore(tmp_path / "s.sqlite") as store:
        beat = store.heartbeat("r1")
    assert isinstance(beat, Heartbeat) and (beat.path, beat.run_id) == (store.path, "r1")


def test_folds_are_separate_claims_and_separate_finished_keys(store: RunStore) -> None:
    store.start_run(**start_fields("f0", config_hash="h", fold=0), exclusive=True)
    store.start_run(**start_fields("f1", config_hash="h", fold=1), exclusive=True)  # another fold: free
    with pytest.raises(RunClaimed, match="seed 0 fold 0 is already running as run f0"):
        store.start_run(**start_fields("again", config_hash="h", fold=0), exclusive=True)
    store.start_run(**start_fields("plain", config_hash="h"), exclusive=True)  # no folds: its own claim
    for run_id in ("f0", "f1", "plain"):
        store.finish_run(run_id, status="finished")
    assert store.finished_hashes() == {("h", 0, 0), ("h", 0, 1), ("h", 0, None)}
    assert store.get_run("f1")["fold"] == 1 and store.get_run("plain")["fold"] is None
