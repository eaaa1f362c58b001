"""harness.specs: `parse_params` (typed values, `k=v` strings, dotted keys, errors) and its registry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from harness.errors import ConfigError
from harness.specs import BlockSpec, LossSpec, NoParams, registry_of


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(8, ge=1)
    rate: float = 0.5
    nested: dict[str, dict[str, int]] = Field(default_factory=dict)
    free: dict[str, Any] = Field(default_factory=dict)


SPEC = LossSpec(name="toy", summary="a toy loss", params=Params, build=lambda params, **_: None)


def test_typed_values_and_cli_strings_overlay():
    parsed = SPEC.parse_params({"width": 4, "rate": 0.1}, {"rate": "0.25"})
    assert (parsed.width, parsed.rate) == (4, 0.25)
    assert SPEC.parse_params().model_dump() == {"width": 8, "rate": 0.5, "nested": {}, "free": {}}


def test_dotted_keys_reach_inside_mapping_fields():
    parsed = SPEC.parse_params({"nested": {"a": {"x": 1}}}, {"nested.a.y": "2", "nested.b.z": "3"})
    assert parsed.nested == {"a": {"x": 1, "y": 2}, "b": {"z": 3}}  # read with the value type: ints
    assert SPEC.parse_params(cli={"free.k": "8"}).free == {"k": "8"}  # under Any the string stays raw


def test_too_many_dotted_parts_are_refused():
    with pytest.raises(ConfigError, match="'nested.a.b.c' has more dotted parts than its field has levels"):
        SPEC.parse_params(cli={"nested.a.b.c": "1"})


def test_unknown_parameter_names_the_plugin_with_did_you_mean_and_the_fields():
    with pytest.raises(ConfigError) as caught:
        SPEC.parse_params(cli={"widht": "4"})
    assert str(caught.value) == (
        "unknown loss parameter 'widht' for 'toy'; did you mean 'width'? (valid: width, rate, nested, free)"
    )


def test_bad_value_names_the_plugin_and_the_field():
    with pytest.raises(ConfigError) as caught:
        SPEC.parse_params({"width": 0})
    message = str(caught.value)
    assert message.startswith("bad loss parameter for 'toy'") and "width" in message
    assert message.endswith("(valid: width, rate, nested, free)")


def test_non_finite_values_are_refused_once_for_every_plugin():
    with pytest.raises(ConfigError, match="rate must be finite, got inf"):
        SPEC.parse_params(cli={"rate": "inf"})


def test_parameters_must_be_a_table():
    with pytest.raises(ConfigError, match="loss 'toy' parameters must be a table of name = value, got 5"):
        SPEC.parse_params(5)


def test_no_params_refuses_any_parameter():
    spec = LossSpec(name="plain", summary="no params", params=NoParams, build=lambda params, **_: None)
    with pytest.raises(ConfigError, match=r"unknown loss parameter 'x' for 'plain' \(valid: \(none\)\)"):
        spec.parse_params({"x": 1})


class Names(BaseModel):
    """A params model naming another plugin, the way combo and the block choices do."""

    model_config = ConfigDict(extra="forbid")

    other: str = "conv"

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> Names:
        registry_of(info).get("block", self.other)
        return self


class FakeRegistry:
    def __init__(self, names: set[str]):
        self.names = names

    def get(self, kind: str, name: str) -> None:
        if name not in self.names:
            raise ConfigError(f"unknown {kind} {name!r}")


NAMES = BlockSpec(name="namer", summary="names a block", params=Names, build=lambda *a, **k: None)


def test_the_registry_reaches_the_params_validators():
    assert NAMES.parse_params(registry=FakeRegistry({"conv"})).other == "conv"
    with pytest.raises(ConfigError, match="unknown block 'se'"):
        NAMES.parse_params({"other": "se"}, registry=FakeRegistry({"conv"}))
    assert NAMES.parse_params({"other": "se"}, registry=FakeRegistry({"conv", "se"})).other == "se"


def test_a_model_that_needs_a_registry_and_gets_none_names_the_plugin():
    with pytest.raises(ConfigError) as caught:
        NAMES.parse_params()
    assert str(caught.value) == (
        "block 'namer' names other plugins, so its parameters need the plugin registry: "
        "parse them with spec.parse_params(..., registry=registry)"
    )


def test_models_that_name_no_plugin_ignore_the_registry():
    assert SPEC.parse_params(registry=None).width == SPEC.parse_params(registry=object()).width == 8
