"""LoopState, Budget and Diverged: what an interrupted run keeps, and when a time budget runs out."""

from __future__ import annotations

import math

import pytest

from harness.training import state as state_module
from harness.training.state import Budget, Diverged, LoopState


def test_throughput_is_none_before_any_training_time():
    assert LoopState().img_s is None
    assert LoopState(images_seen=300, train_seconds=2.0).img_s == 150.0


def test_the_checkpoint_keeps_the_counters_but_not_the_history():
    state = LoopState(epochs=3, best_epoch=2, best_score=0.5, images_seen=30, train_seconds=1.5, stale=1)
    state.history.append({"train_loss": 0.1})
    saved = state.to_checkpoint()
    assert saved == {
        "epochs": 3,
        "best_epoch": 2,
        "best_score": 0.5,
        "best_metrics": None,
        "images_seen": 30,
        "train_seconds": 1.5,
        "stale": 1,
    }
    assert LoopState(**saved).epochs == 3


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(state_module.time, "monotonic", fake)
    return fake


def test_without_minutes_the_budget_never_runs_out(clock):
    budget = Budget(None)
    clock.now += 1e9
    assert budget.deadline == math.inf and budget.fraction_spent() == 0.0 and not budget.exhausted()


def test_the_last_validation_time_is_kept_in_reserve(clock):
    budget = Budget(1.0)  # 60 s
    budget.eval_seconds = 20.0
    clock.now += 20.0
    assert budget.fraction_spent() == pytest.approx(0.5)  # 20 of the 40 s usable for training
    assert not budget.exhausted()
    clock.now += 20.0  # 40 s spent + 20 s to validate reaches the deadline
    assert budget.exhausted()


def test_divergence_names_the_epoch_and_the_remedy():
    error = Diverged(4, math.nan)
    assert error.epoch == 4 and "epoch 4" in str(error) and "train.lr" in str(error)
