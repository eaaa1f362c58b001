"""What the checks share: the small parameters they build with, and `run_checks`, which turns every failure,
planned or a crash inside the plugin, into one failed line instead of a crashed kit."""

from __future__ import annotations

import pytest
from pydantic import Field

from harness.conformance import CHECKS_BY_KIND, CheckFailed, require, run_checks, shallow_params, small_params
from harness.specs import ArchitectureSpec, DatasetSpec, NoParams


class Wide(NoParams):
    width: int = Field(32, ge=8, description="Channels.")
    depth: int = Field(5, ge=1, description="Levels.")


class Narrow(NoParams):
    width: int = Field(32, ge=1, description="Channels.")
    depth: int = Field(5, ge=3, description="Levels.")


class Plain(NoParams):
    rate: int = Field(3, description="Not a size.")


def spec(params, build=lambda p, **_: None) -> ArchitectureSpec:
    return ArchitectureSpec(name="double", summary="test double", params=params, build=build)


def test_small_params_take_the_smallest_width_but_never_below_four():
    assert small_params(spec(Wide)).width == 8
    assert small_params(spec(Narrow)).width == 4
    assert small_params(spec(Wide)).depth == 5  # only the width changes
    assert small_params(spec(Plain)).model_dump() == {"rate": 3}


def test_shallow_params_cap_the_depth_at_two_within_its_bounds():
    assert shallow_params(spec(Wide)).model_dump() == {"width": 8, "depth": 2}
    assert shallow_params(spec(Narrow)).model_dump() == {"width": 4, "depth": 3}
    assert shallow_params(spec(Plain)).model_dump() == {"rate": 3}


def test_require_raises_check_failed_with_the_message():
    require(True, "never raised")
    with pytest.raises(CheckFailed, match="^the line$"):
        require(False, "the line")


def test_a_crashing_plugin_fails_every_check_with_one_line():
    def build(params, **_):
        raise RuntimeError("boom\nsecond line of a traceback-like message")

    results = list(run_checks(spec(NoParams, build)))
    assert [name for name, _, _ in results] == list(CHECKS_BY_KIND["architecture"])
    # With no parameters there is nothing to sample: that check passes without building
    planned = [(passed, note) for name, passed, note in results if name != "sampled params"]
    assert all(not passed and note == "RuntimeError: boom" for passed, note in planned)


def test_an_exception_without_a_message_still_names_its_type():
    def build(params, **_):
        raise KeyError()

    notes = {note for name, _, note in run_checks(spec(NoParams, build)) if name != "sampled params"}
    assert notes == {"KeyError: "}


def test_a_kind_without_checks_runs_none():
    dataset = DatasetSpec(name="nothing", summary="x", build=lambda p: None)
    assert list(run_checks(dataset)) == []
