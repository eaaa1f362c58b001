"""harness.training.checkpoint_checks: what a checkpoint must hold before it is trusted, each flaw planted
once and refused in one line naming the file, the model left untouched."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.training.checkpoint_checks import (
    CheckpointError,
    check_continuable,
    check_normalisation,
    check_per_image,
    fit_weights,
    last_problem,
)

PATH = Path("runs/r1/best.pt")


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("0.weight"), "missing '0.weight'"),
        (lambda s: s.update(extra=torch.zeros(1)), "unexpected 'extra'"),
        (lambda s: s.update({"0.weight": torch.zeros(2, 1, 5, 5)}), "has shape (2, 1, 5, 5)"),
        (lambda s: s.update({"0.bias": [0.0, 0.0]}), "is a list, not a tensor"),
        (lambda s: s.update({"0.bias": torch.zeros(2, dtype=torch.long)}), "has dtype torch.int64"),
        (lambda s: s["0.bias"].fill_(math.inf), "holds NaN or infinite values"),
    ],
    ids=["missing", "unexpected", "shape", "not a tensor", "kind", "infinite"],
)
def test_weights_must_fit_the_model_exactly_and_be_finite(change, match):
    model, state = _model(), _model().state_dict()
    change(state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=f"^{PATH}: .*{match.replace('(', '.').replace(')', '.')}"):
        fit_weights(model, state, PATH)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_fitting_weights_loads_them():
    model, other = _model(), _model()
    fit_weights(model, other.state_dict(), PATH)
    assert torch.equal(model[0].weight, other[0].weight)


@pytest.mark.parametrize(
    "value", [None, "ab", [1.0], [1.0, 0.0], [math.nan, 1.0], [True, 1.0], (1, math.inf)]
)
def test_normalisation_is_two_finite_numbers_with_a_positive_std(value):
    with pytest.raises(CheckpointError, match="normalisation must be"):
        check_normalisation({"normalisation": value}, PATH)
    assert check_normalisation({"normalisation": [90, 40.5]}, PATH) == (90.0, 40.5)


def _last(**changes):
    model = _model()
    last = {
        "state_dict": model.state_dict(),
        "epoch": 2,
        "loop": {"epochs": 2, "best_epoch": 1, "best_score": 0.5, "images_seen": 10, "stale": 1},
        "schedule": {"done": 4},
        "optimizer": torch.optim.AdamW(model.parameters()).state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "scaler": None,
    }
    return {**last, **changes}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epoch": 0}, "epoch must be"),
        ({"epoch": 2.0}, "epoch must be"),
        ({"loop": {"epochs": 3}}, "loop state"),
        ({"loop": {"epochs": 2, "best_epoch": 5}}, "best_epoch 5"),
        ({"loop": {"epochs": 2, "train_seconds": math.nan}}, "loop counters"),
        ({"loop": {"epochs": 2, "best_metrics": [1]}}, "best score or metrics"),
        ({"schedule": {"done": -1}}, "schedule state"),
        ({"optimizer": {"state": {}}}, "no param_groups"),
        ({"rng": {"torch": torch.zeros(3)}}, "RNG state"),
        ({"scaler": 3}, "GradScaler"),
    ],
)
def test_the_plain_data_of_a_last_checkpoint_is_what_the_harness_writes(changes, match):
    assert last_problem(_last()) is None
    assert match in last_problem(_last(**changes))


def test_a_last_checkpoint_is_tried_on_a_fresh_optimizer_and_rng_first():
    model = _model()
    check_continuable(_last(), model, PATH)
    moments = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 1, 5, 5)).sum().backward()
    moments.step()
    state = moments.state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match="exp_avg of parameter 0 has shape"):
        check_continuable(_last(optimizer=state), model, PATH)
    with pytest.raises(CheckpointError, match="cannot continue from"):
        check_continuable(_last(rng={"torch": torch.zeros(4, dtype=torch.uint8)}), model, PATH)


@pytest.mark.parametrize(
    ("indices", "confusion", "match"),
    [
        (np.array([-1, 2]), np.zeros((2, 5, 5), np.int64), "non-negative integers"),
        (np.array([1.0, 2.0]), np.zeros((2, 5, 5), np.int64), "non-negative integers"),
        (np.array([3, 3]), np.zeros((2, 5, 5), np.int64), "repeat"),
        (np.array([0]), np.zeros((1, 300, 300), np.int64), "300x300 for 5 classes"),
        (np.array([0]), np.full((1, 5, 5), np.nan), "NaN"),
        (np.array([0]), np.full((1, 5, 5), 0.5), "fractional"),
        (np.array([0]), np.full((1, 5, 5), -1), "negative"),
    ],
)
def test_a_per_image_file_holds_what_training_writes(indices, confusion, match):
    check_per_image(PATH, np.array([0, 4]), np.ones((2, 5, 5), np.int64), 5)
    with pytest.raises(CheckpointError, match=match):
        check_per_image(PATH, indices, confusion, 5)
