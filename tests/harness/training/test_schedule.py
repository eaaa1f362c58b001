"""harness.training.schedule: the budget-aware one-cycle schedule and warmup + plateau, resumable."""

from __future__ import annotations

import pytest
import torch

from harness.config import build_config, config_hash, resolve
from harness.plugins import load_plugins
from harness.training.schedule import OneCycleSchedule, PlateauSchedule
from tests_support import TINY_CONFIG


def _resolved(*settings: str):
    config, params = build_config(TINY_CONFIG, settings=list(settings))
    return resolve(config, load_plugins(), params)


class FakeClock:
    def __init__(self):
        self.spent = 0.0

    def fraction_spent(self) -> float:
        return self.spent


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_onecycle_warms_up_peaks_and_anneals_over_the_steps():
    optimizer = _optimizer()
    schedule = OneCycleSchedule(
        optimizer, total_steps=100, clock=FakeClock(), pct=0.25, div=25, final_div=1e4
    )
    lrs = []
    for _ in range(100):
        schedule.step_batch()
        lrs.append(schedule.lr)
    assert lrs[0] == pytest.approx(1 / 25)
    assert max(lrs) == pytest.approx(1.0, rel=1e-3) and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 0.001
    assert all(a <= b for a, b in zip(lrs[:25], lrs[1:26], strict=True))  # up, then only down
    assert all(a >= b for a, b in zip(lrs[25:], lrs[26:], strict=False))


def test_onecycle_follows_the_time_budget_when_it_runs_out_first():
    clock = FakeClock()
    optimizer = _optimizer()
    schedule = OneCycleSchedule(optimizer, total_steps=10_000, clock=clock, pct=0.25)
    clock.spent = 0.25
    schedule.step_batch()
    assert schedule.lr == pytest.approx(1.0)  # a quarter of the minutes gone: at the peak, step 1 or not
    clock.spent = 1.0
    schedule.step_batch()
    assert schedule.lr < 1e-3


def test_schedules_resume_from_their_state():
    first = OneCycleSchedule(_optimizer(), total_steps=50, clock=FakeClock())
    for _ in range(20):
        first.step_batch()
    second = OneCycleSchedule(_optimizer(), total_steps=50, clock=FakeClock())
    second.load_state_dict(first.state_dict())
    first.step_batch()
    second.step_batch()
    assert second.lr == first.lr

    plateau = PlateauSchedule(_optimizer(), warmup_steps=2, factor=0.5, patience=0, min_lr=0.0)
    for score in (0.5, 0.4, 0.3):
        plateau.step_batch()
        plateau.step_batch()
        plateau.step_epoch(score)
    copy = PlateauSchedule(_optimizer(), warmup_steps=2, factor=0.5, patience=0, min_lr=0.0)
    copy.load_state_dict(plateau.state_dict())
    assert copy.done == plateau.done and copy.plateau.best == plateau.plateau.best


def test_onecycle_is_a_setting_and_the_default_hash_is_unchanged():
    default = _resolved("train.eval_batch_size=auto")
    assert default.config.train.schedule == "plateau"
    explicit = _resolved("train.schedule=plateau", "train.eval_batch_size=256")
    assert config_hash(default.config) == config_hash(explicit.config)  # "auto" hashes as the old 256
    assert config_hash(_resolved("train.schedule=onecycle").config) != config_hash(default.config)
