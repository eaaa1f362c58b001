"""The loss checks (harness/conformance/losses.py): each fails on a loss that breaks exactly that part
of the contract."""

from __future__ import annotations

import pytest
from torch import nn

from harness import conformance
from harness.conformance import CheckFailed
from harness.specs import LossSpec


class LeakyLoss(nn.Module):
    def forward(self, logits, target):
        return logits.float().mean()  # ignores ignore_index entirely


def test_loss_that_ignores_ignore_index_fails():
    spec = LossSpec(name="leaky", summary="x", build=lambda p, **_: LeakyLoss())
    with pytest.raises(CheckFailed, match="ignored pixels changed the loss"):
        conformance.check_loss_ignore_index(spec)
