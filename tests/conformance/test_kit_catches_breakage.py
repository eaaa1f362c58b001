"""The kit itself: each check fails on a plugin that breaks exactly that part of the contract."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field
from torch import nn

from harness import conformance
from harness.conformance import CheckFailed
from harness.specs import ArchitectureSpec, BalancedSplit, BalancerSpec, BlockSpec, LossSpec, NoParams


class Flat(nn.Module):
    """A 1x1-conv 'architecture' whose flaws the tests switch on one at a time."""

    def __init__(self, flaw: str = ""):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(1, conformance.NUM_CLASSES, 1)
        self.unused = nn.Linear(2, 2)  # only used unless flaw == "dead-param"
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError("needs W divisible by 4" if self.flaw != "vague-size" else "bad size")
        out = self.conv(self.bn(x))
        if self.flaw != "dead-param":
            out = out + 0 * self.unused(torch.ones(2)).sum()
        if self.flaw == "nan":
            out = out * float("nan")
        if self.flaw == "random-eval":
            out = out + torch.rand_like(out)
        if self.flaw == "half-size":
            out = out[..., ::2, :]
        return out


def arch(flaw: str = "", **flags) -> ArchitectureSpec:
    return ArchitectureSpec(
        name="flat",
        summary="test double",
        params=NoParams,
        build=lambda p, **_: Flat(flaw),
        input_multiple=4,
        **flags,
    )


def test_a_conforming_double_passes_every_check():
    spec = arch()
    for name, passed, note in conformance.run_checks(spec):
        assert passed, f"{name}: {note}"


@pytest.mark.parametrize(
    ("check", "spec", "message"),
    [
        (conformance.check_forward_backward, arch("nan"), "not finite"),
        (conformance.check_forward_backward, arch("dead-param"), "got no gradient"),
        (conformance.check_forward_backward, arch("half-size"), "shape"),
        (conformance.check_sizes, arch("vague-size"), "does not name the multiple 4"),
        (conformance.check_modes, arch("random-eval"), "not deterministic"),
        (conformance.check_builds, arch(params_count=3), "spec declares 3 params"),
        (conformance.check_deep_supervision, arch(deep_supervision=True), "not a non-empty list"),
        (conformance.check_compile, arch(compiles=False), "declares compiles=False but torch.compile works"),
    ],
)
def test_each_check_catches_its_flaw(check, spec, message):
    with pytest.raises(CheckFailed, match=message):
        check(spec)


class LeakyLoss(nn.Module):
    def forward(self, logits, target):
        return logits.float().mean()  # ignores ignore_index entirely


def test_loss_that_ignores_ignore_index_fails():
    spec = LossSpec(name="leaky", summary="x", build=lambda p, **_: LeakyLoss())
    with pytest.raises(CheckFailed, match="ignored pixels changed the loss"):
        conformance.check_loss_ignore_index(spec)


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


class Blocky(nn.Module):
    """A 1x1-conv block whose flaws the tests switch on one at a time."""

    def __init__(self, a: int, b: int, norm: str, flaw: str = ""):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(a, b, 1)
        groups = 3 if flaw == "group-crash" and norm == "group" else 1  # 3 does not divide 8 channels
        self.norm = nn.GroupNorm(groups, b) if norm == "group" else nn.Identity()
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        out = self.norm(self.conv(x))
        if self.flaw == "pools":  # halves then doubles: loses a row or column on odd sizes
            out = nn.functional.interpolate(nn.functional.avg_pool2d(out, 2), scale_factor=2)
        if self.flaw == "nan-grad":
            out = out + torch.sqrt((out * 0).abs())  # finite forward, NaN gradient
        if self.flaw != "dead-param":
            out = out + 0 * self.unused(torch.ones(2)).sum()
        return out


class Gate(nn.Module):
    """A skip fusion: the skip times a gate from the resized decoder features."""

    def __init__(self, skip_channels: int, gating_channels: int, flaw: str = ""):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(gating_channels, 1, 1)

    def forward(self, skip, gating):
        gate = torch.sigmoid(self.conv(nn.functional.interpolate(gating, size=skip.shape[-2:])))
        return gating * gate.mean() if self.flaw == "gating-channels" else skip * gate


class Undocumented(NoParams):
    rate: int = 1


class Lax(NoParams):
    rate: int | dict = Field(1, description="Takes anything shaped like a mapping too.")


def block(flaw: str = "", roles=("encoder", "bottleneck", "decoder"), params=NoParams) -> BlockSpec:
    return BlockSpec(
        name="blocky",
        summary="test double",
        params=params,
        build=lambda p, a, b, *, norm: Gate(a, b, flaw) if "skip" in roles else Blocky(a, b, norm, flaw),
        roles=frozenset(roles),
    )


@pytest.mark.parametrize("roles", [("encoder", "bottleneck", "decoder"), ("skip",)])
def test_a_conforming_block_passes_every_check(roles):
    for name, passed, note in conformance.run_checks(block(roles=roles)):
        assert passed, f"{name}: {note}"


@pytest.mark.parametrize(
    ("check", "spec", "message"),
    [
        (conformance.check_block_shapes, block("pools"), r"on 7x5: shape \(2, 8, 6, 4\)"),
        (conformance.check_block_shapes, block("gating-channels", roles=("skip",)), "as skip .* shape"),
        (conformance.check_block_gradients, block("nan-grad"), "non-finite gradient"),
        (conformance.check_block_gradients, block("dead-param"), "'unused.weight' got no gradient"),
        (conformance.check_block_norms, block("group-crash"), "norm=group: ValueError"),
        (conformance.check_block_params, block(params=Undocumented), "'rate' has no description"),
        (conformance.check_block_params, block(params=Lax), "'rate' accepted the bad value"),
    ],
)
def test_each_block_check_catches_its_flaw(check, spec, message):
    with pytest.raises(CheckFailed, match=message):
        check(spec)
