"""`harness tune --executor ray`: trials as Ray tasks on a local Ray, told to the study by the driver's
keeper, recorded in the one store; pruning crosses from the worker to the keeper and back."""

from __future__ import annotations

import optuna
import pytest
import ray

from harness.store import RunStore
from harness.tune.ray_trials import slots, trial_task
from harness.tune.study import study_run_ids
from tests_support import run_cli, tiny

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def _runs(store_path) -> dict[str, str]:
    with RunStore(store_path, create=False) as store:
        return {run["run_id"]: run["status"] for run in store.list_runs()}


@pytest.fixture
def local_ray():
    """One local Ray for the whole test (its worker processes, torch loaded, serve both studies)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield
    ray.shutdown()


def test_trials_run_as_ray_tasks_and_a_pruner_that_must_prune_reaches_them(
    make_tuning, store_path, local_ray
):
    from harness.tune.ray_trials import run_study_on_ray

    told = []
    tuning = make_tuning(trials=2)
    tuning.on_trial = told.append
    study = run_study_on_ray(tuning, parallel=2)
    trials = study.get_trials()
    assert [t.state for t in trials] == [COMPLETE] * 2 and len(told) == 2
    assert all(
        0 <= t.value <= 1 and t.intermediate_values == {1: t.value} for t in trials
    )  # epoch 1 reported
    runs = _runs(store_path)
    assert set(runs.values()) == {"finished"} and len(runs) == 2
    assert study_run_ids(store_path, "tiny") == {t.user_attrs["run_id"]: t.number for t in trials}
    assert all(t.user_attrs["status"] == "finished" and t.user_attrs["config_hash"] for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2  # parallel trials asked apart

    # the study goes on to 3; the pruner acts in the keeper on the worker's epoch report
    pruned = run_study_on_ray(tuning, trials=3, parallel=1, pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    last = pruned.get_trials()[-1]
    assert len(pruned.get_trials()) == 3 and last.state == PRUNED and last.user_attrs["status"] == "pruned"
    with RunStore(store_path, create=False) as store:
        run = store.get_run(last.user_attrs["run_id"])
    assert run["status"] == "pruned" and "pruned by study tiny at epoch 1" in run["error"]


def test_a_trial_whose_config_resolves_otherwise_on_the_worker_fails_in_one_line():
    end = trial_task(tiny(), "not-the-hash", None, None, ("tiny", 0, "an2dl"), [], True)
    assert end["state"] == "fail" and end["value"] is None
    error = end["attrs"]["error"]
    assert error.startswith("HarnessError: the configuration resolves to hash") and "\n" not in error


def test_trials_in_flight_follow_the_cluster_and_the_flags():
    class FakeRay:
        def __init__(self, cpus, gpus=0):
            self.resources = {"CPU": cpus, "GPU": gpus}

        def cluster_resources(self):
            return self.resources

    assert slots(FakeRay(8), 1, None, None) == 8
    assert slots(FakeRay(8), 3, None, None) == 2
    assert slots(FakeRay(8, gpus=1), 1, 0.25, None) == 4  # four trials share the GPU
    assert slots(FakeRay(2), 4, None, None) == 1  # never none
    assert slots(FakeRay(8), 1, None, 3) == 3


def test_ray_only_flags_without_ray_are_one_line_and_touch_nothing(capsys, tmp_path, store_path):
    tune_file = tmp_path / "tune.toml"
    tune_file.write_text(
        '[tune]\nstudy = "x"\ntrials = 1\n[tune.space]\n"train.lr" = { float = [1e-3, 1e-2] }\n'
    )
    for flags, message in (
        (["--parallel", "2"], "--parallel sets how many Ray trials run at once; it needs --executor ray"),
        (["--cpus-per-run", "1"], "--cpus-per-run sizes Ray tasks; it needs --executor ray"),
        (["--executor", "ray", "--parallel", "0"], "--parallel must be at least 1, got 0"),
        (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be positive, got -1.0"),
    ):
        code, _, err = run_cli(capsys, "tune", "--config", str(tune_file), "--store", str(store_path), *flags)
        assert code == 2 and err.strip() == f"harness: error: {message}", (flags, err)
    assert not store_path.exists() and not store_path.parent.joinpath("optuna.sqlite").exists()
