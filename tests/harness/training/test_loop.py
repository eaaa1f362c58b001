"""harness.training.loop: batched augmentation in every step, the device's validation batch, loss scaling
under fp16 (unscaled before clipping)."""

from __future__ import annotations

import math

import pytest
import torch

import harness.augment.backend as backend
import harness.training.loop as loop
from harness.config import build_config, resolve
from harness.inference.device import eval_batch_size
from harness.inference.tta import TestTimeAugmented
from harness.plugins import load_plugins
from harness.training.loop import backward_and_step
from harness.training.run import execute
from tests_support import TINY_CONFIG


def _resolved(*settings: str):
    config, params = build_config(TINY_CONFIG, settings=list(settings))
    return resolve(config, load_plugins(), params)


def test_the_loop_augments_every_batch_through_the_batch_augmenter(tmp_path, monkeypatch):
    calls = []
    real = backend.BatchedAugmenter

    class Counting(real):
        def __call__(self, images, masks, strong=None):
            calls.append(len(images))
            return super().__call__(images, masks, strong)

    monkeypatch.setattr(backend, "BatchedAugmenter", Counting)
    host = []
    monkeypatch.setattr(backend, "build_augmenter", lambda *a, **k: host.append(1))
    resolved = _resolved("train.epochs=2")
    result = execute(resolved, tmp_path / "store.sqlite", load_plugins())
    assert result.status == "finished"
    assert len(calls) >= 2 and len(calls) % 2 == 0  # every step of both epochs
    assert set(calls) == {8}  # whole batches
    assert host == []  # the albumentations path never ran


def test_a_pipeline_without_a_batched_step_uses_albumentations(tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "BatchedAugmenter", None)  # would fail if called
    resolved = _resolved("augment.preset=strong", "train.epochs=1")
    assert execute(resolved, tmp_path / "store.sqlite", load_plugins()).status == "finished"


def test_the_validation_batch_follows_the_device():
    assert eval_batch_size(torch.device("cpu"), "auto") == 32
    assert eval_batch_size(torch.device("cuda"), "auto") == 512
    assert eval_batch_size(torch.device("cpu"), 7) == 7


def test_loss_scaling_unscales_before_clipping():
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(2, 4)).sum() * 1000  # true gradient norm ~4500: far above the clip
    backward_and_step(loss, model, optimizer, grad_clip=1.0, scaler=scaler)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    # The true gradients clipped to norm 1 give a step of exactly lr * 1. Clipping the scaled ones instead
    # would leave norm 1 / 2**10 after the scaler divides by its scale: a step about 1000 times shorter.
    assert float(step.norm()) == pytest.approx(0.1, rel=1e-4)
    assert math.isfinite(scaler.get_scale())


@pytest.mark.parametrize("mode", ["none", "flips"])
def test_validation_runs_under_val_tta(tmp_path, monkeypatch, mode):
    scored = []
    real = loop.score

    def recording(model, *args, **kwargs):
        scored.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(loop, "score", recording)
    resolved = _resolved(f"train.val_tta={mode}")
    assert execute(resolved, tmp_path / "store.sqlite", load_plugins()).status == "finished"
    wrapped = [isinstance(model, TestTimeAugmented) and model.mode == mode for model in scored]
    assert scored and all(wrapped) if mode != "none" else not any(wrapped)
