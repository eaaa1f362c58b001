"""The balancer checks (harness/conformance/balancers.py): each fails on a balancer that breaks exactly
that part of the contract."""

from __future__ import annotations

import pytest
import torch

from harness import conformance
from harness.conformance import CheckFailed
from harness.specs import BalancedSplit, BalancerSpec


def _mutating(params):
    def balance(images, masks, *, num_classes, ignore_index, seed):
        masks[0] = 4
        return BalancedSplit(images, masks)

    return balance


def _random(params):
    def balance(images, masks, *, num_classes, ignore_index, seed):
        keep = torch.randperm(len(images))[:6]
        return BalancedSplit(images[keep], masks[keep])

    return balance


def test_balancer_checks_catch_mutation_and_nondeterminism():
    with pytest.raises(CheckFailed, match="in place"):
        conformance.check_balancer_contract(BalancerSpec(name="mut", summary="x", build=_mutating))
    with pytest.raises(CheckFailed, match="same seed"):
        conformance.check_balancer_deterministic(BalancerSpec(name="rnd", summary="x", build=_random))
