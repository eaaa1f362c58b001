"""The [tune] table and its space: every malformed entry is one line naming it, before any trial."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError, HarnessError
from harness.tune.space import Param, apply_values, check_space, parse_param, parse_tune, resolve_trial
from tests_support import tiny


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"float": ["a", 1.0]}, "bound 'a' is not a number"),
        ({"int": [1.5, 4]}, "bound 1.5 is not an integer"),
        ({"float": [True, 2.0]}, "not a number"),
        ({"categorical": []}, "non-empty list"),
        ({"float": [2.0, 1.0]}, "low 2.0 is above high 1.0"),
        ({"float": [0.0, 1.0], "log": True}, "log range must be above zero"),
        ({"float": [-1.0, 1.0], "log": True}, "log range must be above zero"),
        ({"float": [0.1, 1.0], "int": [1, 2]}, "exactly one of"),
        ({"float": [0.1]}, "needs [low, high]"),
        ({"categorical": ["a"], "log": True}, "not to a categorical"),
        ({"categorical": ["a", "a"]}, "repeat"),
        ("0.1", "expected a table"),
    ],
)
def test_malformed_entries_are_one_line(entry, match):
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("]", r"\]")) as caught:
        parse_param("train.lr", entry)
    assert "tune.space 'train.lr'" in str(caught.value) and "\n" not in str(caught.value)


def test_entries_of_each_kind():
    assert parse_param("train.lr", {"float": [1e-4, 1e-2], "log": True}) == Param(
        "train.lr", "float", 1e-4, 1e-2, log=True
    )
    assert parse_param("train.batch_size", {"int": [8, 32]}).corners() == [8, 32]
    assert parse_param("arch.name", {"categorical": ["unet", "segnet"]}).corners() == ["unet", "segnet"]


def test_the_table_needs_a_study_a_count_and_a_space():
    with pytest.raises(ConfigError, match=r"\[tune\] table"):
        parse_tune({})
    with pytest.raises(ConfigError, match="trials = N or budget_minutes"):
        parse_tune({"tune": {"study": "s", "space": {"train.lr": {"float": [0.1, 0.2]}}}})
    with pytest.raises(ConfigError, match="empty"):
        parse_tune({"tune": {"study": "s", "trials": 2, "space": {}}})
    with pytest.raises(ConfigError, match="trialz"):
        parse_tune({"tune": {"study": "s", "trialz": 2, "space": {}}})


@pytest.mark.parametrize(
    "name, entry, match",
    [
        ("train.lrr", {"float": [0.1, 0.2]}, "lrr"),
        ("nonsense.lr", {"float": [0.1, 0.2]}, "unknown setting"),
        ("train.epochs", {"float": [1.5, 2.5]}, "train.epochs"),  # a float where an int belongs
        ("arch.params.widht", {"int": [2, 4]}, "widht"),
        ("arch.params.width", {"int": [0, 4]}, "width"),  # below the plugin's own bound
        ("arch.name", {"categorical": ["unet", "unetz"]}, "unetz"),
    ],
)
def test_the_space_is_checked_against_the_config_and_the_plugins(registry, name, entry, match):
    with pytest.raises(HarnessError, match=match) as caught:
        check_space([parse_param(name, entry)], tiny(), registry, [], {})
    assert f"tune.space {name!r}" in str(caught.value)


def test_a_flag_may_not_fix_a_searched_setting(registry):
    with pytest.raises(ConfigError, match="train.lr"):
        check_space([parse_param("train.lr", {"float": [0.1, 0.2]})], tiny(), registry, ["train.lr=0.1"], {})


def test_values_go_into_the_tree_plugin_names_first():
    base = {"loss": {"name": "ce", "params": {"label_smoothing": 0.1}}}
    tree = apply_values(base, {"loss.params.gamma": 2.0, "loss.name": "focal"})
    assert tree == {"loss": {"name": "focal", "params": {"gamma": 2.0}}}  # ce's params went with it
    assert base["loss"]["params"] == {"label_smoothing": 0.1}  # the base is left as it was
    same = apply_values(base, {"loss.name": "ce"})
    assert same["loss"]["params"] == {"label_smoothing": 0.1}


def test_a_trial_resolves(registry):
    resolved = resolve_trial(tiny(), {"train.lr": 0.005, "arch.params.width": 8}, registry, [], {})
    assert resolved.config.train.lr == 0.005 and resolved.config.arch.params["width"] == 8
