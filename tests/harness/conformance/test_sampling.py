"""The sampled-parameter check (harness/conformance/sampling.py): it fails a plugin whose declared range
crashes away from the default, naming the value, and passes one whose whole range works; its draws stay
inside the declared bounds and never count a refused combination as a crash."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from pydantic import Field, model_validator
from torch import nn

from harness.conformance import CHECKS_BY_KIND, CheckFailed, run_checks
from harness.conformance.sampling import INT_REACH, check_sampled_params, draws
from harness.specs import BlockSpec, LossSpec, NoParams


class Squeeze(nn.Module):
    """A 1x1 conv and a squeeze-excitation gate whose hidden width is `channels // reduction`."""

    def __init__(self, a: int, b: int, reduction: int, crash_above: int | None):
        super().__init__()
        if crash_above is not None and reduction > crash_above:
            raise RuntimeError(f"hidden width {b // reduction} is too small")  # the planted flaw
        self.conv = nn.Conv2d(a, b, 1)
        self.gate = nn.Sequential(nn.Linear(b, max(1, b // reduction)), nn.Linear(max(1, b // reduction), b))

    def forward(self, x):
        out = self.conv(x)
        return out * torch.sigmoid(self.gate(out.mean((2, 3))))[:, :, None, None]


class SqueezeParams(NoParams):
    reduction: int = Field(4, ge=1, le=16, description="Channel reduction of the gate.")


def squeeze(crash_above: int | None) -> BlockSpec:
    def build(params, a, b, *, norm):
        return Squeeze(a, b, params.reduction, crash_above)

    return BlockSpec(
        name="squeeze", summary="test double", params=SqueezeParams, build=build, roles={"encoder"}
    )


def test_a_block_that_crashes_at_a_non_default_in_range_value_fails_naming_it():
    spec = squeeze(crash_above=8)
    spec.build(spec.parse_params(), 4, 8, norm="batch")  # the default works: the other checks see nothing
    with pytest.raises(CheckFailed, match=r"at reduction=16 \(high draw, in bounds\): RuntimeError: hidden"):
        check_sampled_params(spec)
    failed = {name: note for name, passed, note in run_checks(spec) if not passed}
    assert list(failed) == ["sampled params"] and "reduction=16" in failed["sampled params"]


def test_a_block_whose_whole_range_works_passes():
    assert "draws in bounds (low, high" in check_sampled_params(squeeze(crash_above=None))


class Mixed(NoParams):
    count: int = Field(3, gt=0, lt=100, description="An open integer range.")
    open_count: int = Field(2, ge=0, description="No upper bound.")
    share: float = Field(0.5, gt=0.0, lt=1.0, description="An open float range.")
    gain: float = Field(1.5, ge=1.0, description="No upper bound.")
    flag: bool = Field(False, description="A switch.")
    mode: Literal["a", "b", "c"] = Field("b", description="A choice.")
    name: str = Field("fixed", description="Not sampled: a name.")


def test_draws_stay_inside_the_declared_bounds():
    spec = LossSpec(name="mixed", summary="x", params=Mixed, build=lambda p, **_: None)
    found = draws(spec)
    assert [corner for corner, _, _ in found] == ["low", "high", "random"]
    low, high = found[0][1], found[1][1]
    assert low == {"count": 1, "open_count": 0, "share": pytest.approx(0.001), "gain": 1.0, "mode": "a"}
    assert high["count"] == min(99, INT_REACH * 3) and high["open_count"] == INT_REACH * 2
    assert high["share"] == pytest.approx(0.999) and high["gain"] == 3.0
    assert (high["flag"], high["mode"]) == (True, "c")
    for _, changed, params in found:
        assert 0 < params.count < 100 and params.open_count >= 0 and 0 < params.share < 1 and params.gain >= 1
        assert params.name == "fixed" and "name" not in changed


class Paired(NoParams):
    alpha: float = Field(0.3, ge=0.0, le=1.0, description="One share.")
    beta: float = Field(0.3, ge=0.0, le=1.0, description="The other.")

    @model_validator(mode="after")
    def _at_most_one(self):
        if self.alpha + self.beta > 1.0:
            raise ValueError("alpha + beta must be at most 1")
        return self


def test_a_combination_the_model_refuses_is_left_out_not_failed():
    spec = LossSpec(name="paired", summary="x", params=Paired, build=lambda p, **_: None)
    found = draws(spec)
    for _, _, params in found:
        assert params.alpha + params.beta <= 1.0
    # alpha=1 or beta=1, each beside the other's default, breaks the model's rule: the high corner is empty
    assert [corner for corner, _, _ in found] == ["low", "random"]
    assert found[0][1] == {"alpha": 0.0, "beta": 0.0}


def test_nothing_to_sample_is_a_pass_that_says_so():
    spec = BlockSpec(name="plain", summary="x", build=lambda p, a, b, *, norm: nn.Conv2d(a, b, 1))
    assert check_sampled_params(spec).startswith("no sampled parameters")


def test_every_kind_runs_the_sampled_check():
    assert all("sampled params" in checks for checks in CHECKS_BY_KIND.values())
