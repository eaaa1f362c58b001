"""harness.augment.vocabulary: validated pipeline configs, presets, custom steps and their one-line errors."""

from __future__ import annotations

import tomllib
import typing

import pytest

from harness.augment.albumentations import build_augmenter
from harness.augment.vocabulary import (
    ALLOWED_PARAMS,
    PRESETS,
    AugmentPipeline,
    TransformName,
    TransformSpec,
    pipeline_from_config,
)
from harness.errors import ConfigError

NAMES = typing.get_args(TransformName)


def _config_error(steps=None, strong_steps=None, preset="flips") -> str:
    with pytest.raises(ConfigError) as caught:
        pipeline_from_config(preset, steps, strong_steps)
    return str(caught.value)


def test_every_name_has_an_allow_list():
    assert set(ALLOWED_PARAMS) == set(NAMES)


def test_default_strong_steps_raise_p_and_add_an_affine():
    strong = PRESETS["standard"].strong()
    by_name = {step.name: step for step in strong}
    assert by_name["hflip"].p == 0.5  # a flip varies most at 0.5
    assert all(step.p >= 0.8 for step in strong if step.name != "hflip")
    assert [step.name for step in PRESETS["flips"].strong()] == ["hflip", "affine"]
    assert PRESETS["none"].strong() == []
    custom = AugmentPipeline(steps=[], strong_steps=[TransformSpec(name="noise")])
    assert [step.name for step in custom.strong()] == ["noise"]


def test_no_steps_preset_or_custom_gives_the_preset():
    assert pipeline_from_config("standard", None, None) == PRESETS["standard"]
    assert pipeline_from_config("standard", [], None).steps == []


def test_custom_pipeline_from_toml():
    config = tomllib.loads(
        """
        [[augment.steps]]
        name = "hflip"
        p = 0.5
        [[augment.steps]]
        name = "affine"
        p = 0.7
        params = { rotate = [-10, 10] }
        """
    )
    pipeline = pipeline_from_config("none", config["augment"]["steps"], None)
    assert [(step.name, step.p) for step in pipeline.steps] == [("hflip", 0.5), ("affine", 0.7)]
    assert pipeline.steps[1].params == {"rotate": (-10.0, 10.0)}
    assert build_augmenter(pipeline, seed=0) is not None


def test_unknown_preset_lists_the_choices():
    message = _config_error(preset="standrd")
    assert all(name in message for name in PRESETS) and "did you mean 'standard'" in message


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"name": "flip"}, ["augment.steps[1].name", "hflip", "grid_distortion"]),
        ({"name": "affine", "params": {"rotation": 5}}, ["steps[1].params", "'rotation'", "rotate, shear"]),
        ({"name": "hflip", "p": 1.5}, ["augment.steps[1].p", "1.5"]),
        ({"name": "hflip", "p": -0.1}, ["augment.steps[1].p"]),
        ({"name": "noise", "params": {"std_range": [0.1, 2]}}, ["steps[1].params", "std_range", "less"]),
        ({"name": "affine", "params": {"rotate": [10, -10]}}, ["steps[1].params", "(low, high)"]),
        ({"name": "affine", "params": {"rotate": "ten"}}, ["steps[1].params", "'rotate'", "number"]),
        ({"name": "hflip", "params": {"p": 1}}, ["steps[1].params", "p is set on the step"]),
        ({"name": "hflip", "prob": 1}, ["augment.steps[1].prob"]),
    ],
)
def test_bad_steps_name_the_index_and_field(step, expected):
    message = _config_error(steps=[{"name": "hflip"}, step])
    assert all(part in message for part in expected), message
    assert "\n" not in message


def test_bad_strong_steps_are_named_as_such():
    message = _config_error(strong_steps=[{"name": "elastic", "params": {"sigma": 0}}])
    assert "augment.strong_steps[0].params" in message and "sigma" in message
    assert "augment.steps must be a list" in _config_error(steps={"name": "hflip"})


def test_validation_happens_when_the_spec_is_built():
    with pytest.raises(ValueError, match="valid arguments: brightness_limit"):
        TransformSpec(name="brightness_contrast", params={"brightness": 0.2})
