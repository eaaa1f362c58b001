"""Model cost: trainable parameters and the forward GFLOPs of one challenge-sized image."""

from __future__ import annotations

import contextlib

import pytest
from torch import nn

from harness.inference.cost import CHALLENGE_SIZE, count_params, forward_gflops


def test_count_params_counts_only_trainable_ones():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 5, 1))  # 1*4*9+4 = 40, 4*5+5 = 25
    assert count_params(model) == 65
    model[0].requires_grad_(False)
    assert count_params(model) == 25


def test_forward_gflops_of_a_1x1_conv_is_two_flops_per_multiply_add():
    model = nn.Conv2d(1, 5, 1)
    height, width = CHALLENGE_SIZE
    assert CHALLENGE_SIZE == (64, 128)
    assert forward_gflops(model) == pytest.approx(2 * 1 * 5 * height * width / 1e9)
    assert forward_gflops(nn.Conv2d(3, 5, 1), in_channels=3, size=(8, 8)) == pytest.approx(
        2 * 3 * 5 * 64 / 1e9
    )


class ModeSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return self.conv(x)


@pytest.mark.parametrize("training", [True, False])
def test_forward_gflops_counts_in_eval_mode_and_restores_the_mode(training):
    model = ModeSpy().train(training)
    forward_gflops(model)
    assert model.seen == [False] and model.training is training


def test_forward_gflops_restores_the_mode_when_the_forward_fails():
    class Broken(ModeSpy):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        forward_gflops(model)
    assert model.training


class Probed(nn.Module):
    """A model that does more work inside its cost probe, as a detector with detections does."""

    def __init__(self):
        super().__init__()
        self.conv, self.probing = nn.Conv2d(1, 1, 1), False

    @contextlib.contextmanager
    def cost_probe(self):
        self.probing = True
        try:
            yield
        finally:
            self.probing = False

    def forward(self, x):
        return self.conv(self.conv(x)) if self.probing else self.conv(x)


def test_forward_gflops_is_measured_inside_the_models_cost_probe():
    model = Probed()
    pixels = CHALLENGE_SIZE[0] * CHALLENGE_SIZE[1]
    assert forward_gflops(model) == pytest.approx(2 * 2 * pixels / 1e9)  # both convs counted
    assert not model.probing
