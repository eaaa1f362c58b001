"""The config sections on their own: the strictness every section shares and each section's checks."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from harness.sections import AugmentConfig, DataConfig, LogConfig, TrainConfig


@pytest.mark.parametrize(
    "section, field", [(TrainConfig, "epochs"), (TrainConfig, "lr"), (DataConfig, "limit")]
)
def test_a_boolean_is_not_a_number(section, field):
    with pytest.raises(ValidationError, match="not true/false"):
        section(**{field: True})


def test_a_boolean_where_one_belongs_is_kept():
    assert TrainConfig(amp=False).amp is False


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_inf_and_nan_fail_even_the_bounds_they_satisfy(value):
    with pytest.raises(ValidationError):
        TrainConfig(lr=value)


def test_unknown_keys_are_refused_in_every_section():
    for section in (DataConfig, AugmentConfig, LogConfig, TrainConfig):
        with pytest.raises(ValidationError, match="Extra inputs"):
            section(no_such_key=1)


def test_assignment_is_validated_too():
    train = TrainConfig()
    with pytest.raises(ValidationError):
        train.epochs = 0


@pytest.mark.parametrize("name", ["gpu", "meta", "cpu:1"])
def test_device_names_a_run_cannot_train_on_are_refused(name):
    with pytest.raises(ValidationError, match="device"):
        TrainConfig(device=name)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_names_are_only_spelled_here(name):
    # Existence is checked when a run starts: a sweep may plan here and run on another machine.
    assert TrainConfig(device=name).device == name


def test_ignore_index_must_be_a_class():
    with pytest.raises(ValidationError, match="ignore_index 5 is not a class of 0..4"):
        DataConfig(ignore_index=5)
    assert DataConfig(ignore_index=0).ignore_index == 0


def test_loggers_are_checked_with_a_suggestion_and_kept_once_in_order():
    with pytest.raises(ValidationError, match="unknown logger 'tensorbord'.*tensorboard"):
        LogConfig(loggers=["tensorbord"])
    assert LogConfig(loggers=["mlflow", "csv", "mlflow"]).loggers == ["mlflow", "csv"]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"folds": 1}, "greater than or equal to 2"),
        ({"fold": 0}, "fold 0 needs folds"),
        ({"folds": 5, "fold": 5}, "fold 5 is not one of 0..4"),
        ({"folds": 5, "fold": -1}, "greater than or equal to 0"),
        ({"groups": "sites"}, "'none', 'file' or 'auto'"),
    ],
)
def test_folds_and_groups_are_checked(settings, match):
    with pytest.raises(ValidationError, match=match):
        DataConfig(**settings)
    assert DataConfig(folds=5, fold=4).fold == 4
