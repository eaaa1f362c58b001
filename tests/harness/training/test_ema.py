"""train.ema: the average equals a hand-computed one, follows BatchNorm statistics, and is what a run
validates, saves as best.pt and keeps in last.pt."""

from __future__ import annotations

import torch
from torch import nn

from harness import api
from harness.config import TrainConfig
from harness.training.checkpoints import CHECKPOINT_NAME, LAST_CHECKPOINT_NAME, load_checkpoint
from harness.training.ema import WeightAverage, make_average
from tests_support import tiny


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_the_average_is_the_hand_computed_one():
    model = _toy()
    average = WeightAverage(model, decay=0.5)
    snapshots = [model[0].weight.detach().clone()]
    for step in range(3):
        with torch.no_grad():
            model[0].weight.add_(float(step + 1))
        model.train()(torch.randn(4, 3))  # moves the BatchNorm running statistics
        snapshots.append(model[0].weight.detach().clone())
        average.update(model)
    # d_t = min(0.5, (1 + t) / (10 + t)): 0.1, 2/11, 0.25; avg starts at the initial weights
    expected = snapshots[0]
    for t, weights in enumerate(snapshots[1:]):
        d = min(0.5, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * weights
    torch.testing.assert_close(average.model[0].weight, expected)
    assert not torch.equal(average.model[0].weight, model[0].weight)
    # Floating buffers (running mean/var) are averaged the same way; the batch counter is copied.
    assert average.model[1].num_batches_tracked.item() == 3
    assert not torch.equal(average.model[1].running_mean, model[1].running_mean)
    assert not average.model.training and not any(p.requires_grad for p in average.model.parameters())


def test_the_decay_warms_up_to_its_cap():
    average = WeightAverage(_toy(), decay=0.99)
    assert average.decay_at(0) == 0.1
    assert average.decay_at(10_000) == 0.99


def test_the_state_round_trips():
    model = _toy()
    first = WeightAverage(model, decay=0.9)
    first.update(model)
    second = WeightAverage(_toy(), decay=0.9)
    second.load_state_dict(first.state_dict())
    assert second.steps == 1
    torch.testing.assert_close(second.model.state_dict(), first.model.state_dict())


def test_off_by_default():
    assert make_average(_toy(), TrainConfig()) is None


def test_a_run_validates_and_saves_the_average(store_path):
    result = api.run(tiny(ema=True, epochs=1), store=store_path)
    assert result.status == "finished"
    best = load_checkpoint(result.checkpoint)
    last = load_checkpoint(result.checkpoint.parent / LAST_CHECKPOINT_NAME)
    assert result.checkpoint.name == CHECKPOINT_NAME and last["ema"]["steps"] >= 1
    torch.testing.assert_close(best["state_dict"], last["ema"]["state_dict"])
    live = last["state_dict"]
    assert any(not torch.equal(live[k], v) for k, v in best["state_dict"].items() if v.is_floating_point())
