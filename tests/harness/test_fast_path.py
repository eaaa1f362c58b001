"""The training path's speed features keep their contracts: batched augmentation where it applies, the
budget-aware one-cycle schedule, the device's validation batch, loss scaling under fp16."""

from __future__ import annotations

import math

import pytest
import torch

import harness.training.loop as train_module
from harness.config import build_config, config_hash, resolve
from harness.inference.device import eval_batch_size
from harness.plugins import load_plugins
from harness.training.loop import backward_and_step, execute, uses_batched_augmentation
from harness.training.schedule import OneCycleSchedule, PlateauSchedule
from tests.tests_support import TINY_CONFIG


def _resolved(*settings: str):
    config, params = build_config(TINY_CONFIG, settings=list(settings))
    return resolve(config, load_plugins(), params)


def test_flips_run_batched_on_the_device_and_strong_falls_back():
    assert uses_batched_augmentation(_resolved())  # the default preset: flips
    assert uses_batched_augmentation(_resolved("augment.preset=standard"))
    assert not uses_batched_augmentation(_resolved("augment.preset=strong"))  # grid_distortion
    # Distance maps must follow the warped masks, which the per-epoch host path recomputes.
    assert not uses_batched_augmentation(_resolved("loss.name=boundary"))


def test_the_loop_augments_every_batch_through_the_batch_augmenter(tmp_path, monkeypatch):
    calls = []
    real = train_module.BatchAugmenter

    class Counting(real):
        def __call__(self, images, masks, strong=None):
            calls.append(len(images))
            return super().__call__(images, masks, strong)

    monkeypatch.setattr(train_module, "BatchAugmenter", Counting)
    host = []
    monkeypatch.setattr(train_module, "build_augmenter", lambda *a, **k: host.append(1))
    resolved = _resolved("train.epochs=2")
    result = execute(resolved, tmp_path / "store.sqlite", load_plugins())
    assert result.status == "finished"
    assert len(calls) >= 2 and len(calls) % 2 == 0  # every step of both epochs
    assert set(calls) == {8}  # whole batches
    assert host == []  # the albumentations path never ran


def test_a_pipeline_without_a_batched_step_uses_albumentations(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "BatchAugmenter", None)  # would fail if called
    resolved = _resolved("augment.preset=strong", "train.epochs=1")
    assert execute(resolved, tmp_path / "store.sqlite", load_plugins()).status == "finished"


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


def test_the_validation_batch_follows_the_device():
    assert eval_batch_size(torch.device("cpu"), "auto") == 32
    assert eval_batch_size(torch.device("cuda"), "auto") == 512
    assert eval_batch_size(torch.device("cpu"), 7) == 7


def test_loss_scaling_unscales_before_clipping():
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = model.weight.detach().clone()
    loss = model(torch.ones(2, 4)).sum() * 1000
    backward_and_step(loss, model, optimizer, grad_clip=1.0, scaler=scaler)
    step = (model.weight.detach() - before).norm()
    assert 0 < float(step) <= 0.1 + 1e-6  # clipped to norm 1 (times lr), so unscaled before clipping
    assert math.isfinite(scaler.get_scale())
