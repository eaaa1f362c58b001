"""What every conformance check shares: the sizes it tests at, `CheckFailed`, and the small parameters.

A check raises `CheckFailed` (through `require`) with one line saying what is wrong; the checks of each
plugin kind live beside this module (architectures, blocks, losses, balancers).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from harness.specs import PluginSpec

NUM_CLASSES = 5
SIZE = (64, 128)


class CheckFailed(AssertionError):
    """A plugin broke its contract."""


def require(condition: bool, message: str) -> None:
    """Raise `CheckFailed(message)` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def small_params(spec: PluginSpec, registry: Any = None) -> BaseModel:
    """Default params with `width` (when there is one) set to its smallest allowed value, at least 4.

    `registry` is what params naming other plugins (blocks, loss parts) are checked against.
    """
    field = spec.params.model_fields.get("width")
    if field is None:
        return spec.parse_params(registry=registry)
    lower = next((m.ge for m in field.metadata if hasattr(m, "ge")), 4)
    return spec.parse_params({"width": max(int(lower), 4)}, registry=registry)


def shallow_params(spec: PluginSpec, registry: Any = None) -> BaseModel:
    """`small_params` with `depth` (when there is one) at most 2: compiling is the kit's slowest check and
    whether a graph compiles does not depend on how many times its levels repeat."""
    params = small_params(spec, registry)
    depth = getattr(params, "depth", None)
    if not isinstance(depth, int) or depth <= 2:
        return params
    field = spec.params.model_fields["depth"]
    lower = next((m.ge for m in field.metadata if hasattr(m, "ge")), 1)
    values = {**params.model_dump(mode="json"), "depth": max(2, int(lower))}
    return spec.parse_params(values, registry=registry)
