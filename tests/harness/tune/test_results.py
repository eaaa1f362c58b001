"""What a study leaves: a best-config TOML that loads and reproduces the trial's config hash, the
importances, the ranking."""

from __future__ import annotations

import tomllib

import optuna

from harness import api
from harness.store import RunStore
from harness.tune.results import (
    importance_png,
    importances,
    ranked_trials,
    to_toml,
    write_best_config,
)


def test_toml_round_trips_nested_tables_and_leaves_none_out():
    tree = {
        "seed": 3,
        "arch": {"name": "unet", "params": {"width": 4, "blocks": ["conv", "se"]}},
        "loss": {"name": "combo", "params": {"parts": {"focal": 1.5, "dice": 1.0}}},
        "augment": {"steps": [{"name": "flip", "p": 0.5, "params": {}}]},
        "train": {"lr": 1e-05, "amp": True, "max_minutes": None, "note": 'say "hi"\n'},
    }
    text = to_toml(tree)
    expected = {**tree, "train": {"lr": 1e-05, "amp": True, "note": 'say "hi"\n'}}
    assert tomllib.loads(text) == expected


def test_the_best_config_loads_and_its_run_reproduces_the_trials_hash(finished_study, registry, tmp_path):
    study, store_path = finished_study
    path = tmp_path / "best.toml"
    trial, reproduces = write_best_config(study, store_path, path, registry, "an2dl")
    assert reproduces and trial.value == max(t.value for t in study.get_trials())
    assert path.read_text().startswith("# The best trial of harness tune study 'tiny'")
    replay = tmp_path / "replay.sqlite"
    result = api.run(tomllib.loads(path.read_text()), store=replay)
    with RunStore(replay, create=False) as store:
        assert store.get_run(result.run_id)["config_hash"] == trial.user_attrs["config_hash"]
    assert ranked_trials(study)[0].number == trial.number


def test_no_best_config_without_a_complete_trial(registry, tmp_path):
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.report(0.5, 1)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert (
        write_best_config(study, tmp_path / "none.sqlite", tmp_path / "best.toml", registry, "an2dl") is None
    )
    assert importances(study) is None and not (tmp_path / "best.toml").exists()


def test_importances_of_a_study_and_their_png(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0.01 * t.suggest_float("y", 0, 1), n_trials=12)
    found = importances(study)
    assert set(found) == {"x", "y"} and found["x"] > found["y"]
    importance_png(found, tmp_path / "imp.png", "study")
    assert (tmp_path / "imp.png").read_bytes()[:4] == b"\x89PNG"
