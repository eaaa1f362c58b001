"""A tiny study: it runs, a must-prune pruner prunes, a failing trial is recorded and the study goes on,
and a killed or interrupted study resumes without repeating finished trials."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from harness import hookimpl
from harness.store import RunStore
from harness.store.heartbeat import process_owner
from harness.tune.study import counted, open_study, requeue_stopped, run_study, storage_path, study_run_ids

COMPLETE, PRUNED, FAIL = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


def _runs(store_path) -> dict[str, str]:
    with RunStore(store_path, create=False) as store:
        return {run["run_id"]: run["status"] for run in store.list_runs()}


def test_a_study_runs_its_trials_as_runs_in_the_store(finished_study):
    study, store_path = finished_study
    trials = study.get_trials()
    assert [t.state for t in trials] == [COMPLETE, COMPLETE]
    runs = _runs(store_path)
    assert {t.user_attrs["run_id"] for t in trials} == set(runs) and set(runs.values()) == {"finished"}
    assert all(0 <= t.value <= 1 and t.intermediate_values for t in trials)  # epoch 1 was reported
    assert storage_path(store_path).is_file()
    assert study_run_ids(store_path, "tiny") == {t.user_attrs["run_id"]: t.number for t in trials}
    with pytest.raises(ValueError, match="no study 'other'.*studies: tiny"):
        study_run_ids(store_path, "other")


def test_a_pruner_that_must_prune_prunes(make_tuning, store_path):
    must_prune = optuna.pruners.ThresholdPruner(lower=2.0)  # no mIoU reaches 2: every trial is pruned
    study = run_study(make_tuning(trials=1), pruner=must_prune)
    (trial,) = study.get_trials()
    assert trial.state == PRUNED and trial.user_attrs["status"] == "pruned"
    with RunStore(store_path, create=False) as store:
        run = store.get_run(trial.user_attrs["run_id"])
    assert run["status"] == "pruned" and "pruned by study tiny at epoch 1" in run["error"]
    assert run["metrics"] is not None  # the pruned run keeps its best epoch


def _plugin(name: str, hook: str, action):
    """A plugin object whose `hook` calls `action(run)` (registered by the caller)."""

    @hookimpl(specname=hook)
    def impl(run, **_):
        action(run)

    return type(name, (), {"impl": staticmethod(impl)})


def test_a_failing_trial_is_recorded_and_the_study_goes_on(make_tuning, store_path):
    tuning = make_tuning(trials=2)
    started = []

    def boom(run):
        started.append(run.run_id)
        if len(started) == 1:
            raise RuntimeError("boom")  # the first trial's run fails as it starts

    plugin = _plugin("Boom", "harness_run_start", boom)
    tuning.registry.manager.register(plugin, name="boom")
    try:
        study = run_study(tuning)
    finally:
        tuning.registry.manager.unregister(plugin)
    first, second = study.get_trials()
    assert (
        first.state == FAIL and first.user_attrs["status"] == "failed" and "boom" in first.user_attrs["error"]
    )
    assert second.state == COMPLETE
    assert _runs(store_path)[first.user_attrs["run_id"]] == "failed"


def test_an_interrupted_study_resumes_without_repeating_finished_trials(make_tuning, store_path):
    tuning = make_tuning(trials=2)
    started = []

    def ctrl_c(run):
        started.append(run.run_id)
        if len(started) == 2:
            raise KeyboardInterrupt  # Ctrl-C as the second trial starts

    plugin = _plugin("CtrlC", "harness_run_start", ctrl_c)
    tuning.registry.manager.register(plugin, name="ctrl-c")
    try:
        with pytest.raises(KeyboardInterrupt):
            run_study(tuning)
    finally:
        tuning.registry.manager.unregister(plugin)
    before = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{storage_path(store_path)}"
    ).get_trials()
    assert [t.state for t in before] == [COMPLETE, FAIL]
    study = run_study(make_tuning(trials=2))
    trials = study.get_trials()
    assert [t.state for t in trials] == [COMPLETE, FAIL, COMPLETE]
    assert trials[0].user_attrs["run_id"] == before[0].user_attrs["run_id"]  # not trained again
    assert trials[2].params == before[1].params  # the interrupted trial's point, run again
    assert counted(study) == 2
    assert sorted(_runs(store_path).values()) == ["finished", "finished", "interrupted"]
    assert run_study(make_tuning(trials=2)).get_trials() == trials  # nothing left to do


def test_a_trial_a_killed_process_left_running_is_run_again(make_tuning, store_path):
    tuning = make_tuning()
    study = open_study(tuning.settings, store_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = process_owner().rpartition("/")[0] + "/" + dead.stdout.strip()
    killed = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    killed.set_user_attr("owner", owner)
    mine = study.ask()
    mine.set_user_attr("owner", process_owner())  # this process is alive: its trial is left alone
    assert requeue_stopped(study) == 1
    assert requeue_stopped(study) == 0  # queued once
    states = [t.state for t in study.get_trials()]
    assert (
        states[:2] == [FAIL, optuna.trial.TrialState.RUNNING] and states[2] == optuna.trial.TrialState.WAITING
    )
    assert study.get_trials()[2].system_attrs["fixed_params"] == killed.params
    assert counted(study) == 0


def test_a_resumed_study_does_not_draw_the_first_sessions_points_again(make_tuning, store_path):
    settings = make_tuning(startup_trials=5).settings  # random startup trials: the seed decides them
    lr = {"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    first = open_study(settings, store_path)
    drawn = first.ask(lr)
    first.tell(drawn, 0.5)
    again = open_study(settings, store_path).ask(lr)
    assert again.params != drawn.params
