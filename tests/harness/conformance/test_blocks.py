"""The block checks (harness/conformance/blocks.py): each fails on a block that breaks exactly that
part of the contract, and a conforming block passes them all."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field
from torch import nn

from harness import conformance
from harness.conformance import CheckFailed
from harness.plugins import load_plugins
from harness.specs import BlockSpec, NoParams


class Blocky(nn.Module):
    """A 3x3-conv block whose flaws the tests switch on one at a time."""

    def __init__(self, a: int, b: int, norm: str, flaw: str = ""):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(a, b, 1) if flaw == "one-by-one" else nn.Conv2d(a, b, 3, padding=1)
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


def block(
    flaw: str = "", roles=("encoder", "bottleneck", "decoder"), params=NoParams, placement="stage"
) -> BlockSpec:
    return BlockSpec(
        name="blocky",
        summary="test double",
        params=params,
        build=lambda p, a, b, *, norm: Gate(a, b, flaw) if "skip" in roles else Blocky(a, b, norm, flaw),
        roles=frozenset(roles),
        placement=placement,
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
        (conformance.check_block_stage, block("one-by-one"), "left its neighbours' outputs unchanged"),
    ],
)
def test_each_block_check_catches_its_flaw(check, spec, message):
    with pytest.raises(CheckFailed, match=message):
        check(spec)


def test_the_stage_check_fails_gc_alone_and_passes_it_as_an_attachment():
    registry = load_plugins(autoload=False)
    gc = registry.get("block", "gc")
    assert gc.placement == "attachment"
    assert "attachment" in conformance.check_block_stage(gc, registry)
    with pytest.raises(CheckFailed, match=r"neighbours' outputs unchanged .*conv\+gc"):
        conformance.check_block_stage(gc.model_copy(update={"placement": "stage"}), registry)


def test_an_attachment_or_a_skip_fusion_is_not_probed_as_a_stage():
    assert "attachment" in conformance.check_block_stage(block("one-by-one", placement="attachment"))
    assert "not a stage" in conformance.check_block_stage(block(roles=("skip",)))
