"""The kit's sampled-parameter check: each plugin built and run at a few seeded draws inside its declared
bounds, so a range that crashes away from the default fails conformance with the values that crashed.

The draws come from the params model itself (pydantic's field constraints): for every field that is a
bool, a `Literal` choice, an int or a float, the low corner (every such field at its lower bound or first
choice), the high corner (upper bounds, last choices) and one seeded random draw in between. Integers
reach at most `INT_REACH` times their default (or their bound, if lower): counts of channels or proposals
cost time in proportion, and this check runs for every plugin in the test suite. An unbounded float goes
up to twice its default. Fields are set
one at a time on top of the kit's small parameters, each kept only if the model accepts it, so a
cross-field validator's refusal is never mistaken for a crash. `width` stays at the kit's small value:
the cost, not the code path, grows with it. A draw that changes nothing is skipped.
"""

from __future__ import annotations

import random
from typing import Any, Literal, get_args, get_origin

import torch
from pydantic import BaseModel, ValidationError

from harness.conformance.architectures import random_batch, training_loss
from harness.conformance.balancers import balancer_inputs
from harness.conformance.kit import NUM_CLASSES, CheckFailed, require, shallow_params
from harness.data.distance import signed_distance_maps
from harness.errors import HarnessError
from harness.specs import PluginSpec

SEED = 0
KEPT_SMALL = frozenset({"width"})
CORNERS = ("low", "high", "random")
# Integers are drawn up to this many times their default (within their bounds): channel counts, proposal
# counts and the like cost time in proportion, and the kit runs for every plugin in the test suite.
INT_REACH = 4


def _bounds(field: Any) -> dict[str, float]:
    """The field's annotated-types constraints by name: any of ge, gt, le, lt."""
    found = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found


def _int_range(field: Any, default: int) -> tuple[int, int]:
    bounds = _bounds(field)
    lo = int(bounds["ge"]) if "ge" in bounds else int(bounds["gt"]) + 1 if "gt" in bounds else default
    hi = int(bounds["le"]) if "le" in bounds else int(bounds["lt"]) - 1 if "lt" in bounds else None
    reach = max(INT_REACH * default, lo + INT_REACH)  # how far above the default a draw goes
    return lo, max(lo, reach if hi is None else min(hi, reach))


def _float_range(field: Any, default: float) -> tuple[float, float]:
    bounds = _bounds(field)
    lo = float(bounds.get("ge", bounds.get("gt", default)))
    hi = bounds.get("le", bounds.get("lt"))
    hi = (2 * float(default) if default > 0 else lo + 1.0) if hi is None else float(hi)
    margin = (hi - lo) * 1e-3 if hi > lo else 1e-6  # strictly inside an open bound
    return lo + (margin if "gt" in bounds else 0.0), max(lo, hi - (margin if "lt" in bounds else 0.0))


def field_values(field: Any, default: Any, rng: random.Random) -> dict[str, Any] | None:
    """The low, high and random value of one field, or None when its type is not sampled."""
    annotation = field.annotation
    if annotation is bool:
        return {"low": False, "high": True, "random": rng.random() < 0.5}
    if get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        return {"low": choices[0], "high": choices[-1], "random": rng.choice(choices)}
    if annotation is int and isinstance(default, int):
        lo, hi = _int_range(field, default)
        return {"low": lo, "high": hi, "random": rng.randint(lo, hi)}
    if annotation is float and isinstance(default, int | float):
        lo, hi = _float_range(field, default)
        return {"low": lo, "high": hi, "random": round(rng.uniform(lo, hi), 4)}
    return None


def _parse(spec: PluginSpec, values: dict[str, Any], registry: Any) -> BaseModel | None:
    try:
        return spec.parse_params(values, registry=registry)
    except (ValidationError, HarnessError, ValueError):
        return None


def draws(spec: PluginSpec, registry: Any = None, seed: int = SEED) -> list[tuple[str, dict, BaseModel]]:
    """(corner, the settings it changed, the parsed params) of each draw that changes something."""
    base = shallow_params(spec, registry)
    start = base.model_dump(mode="json")
    rng = random.Random(f"{spec.kind}:{spec.name}:{seed}")
    per_field = {}
    for name, field in spec.params.model_fields.items():
        if name in KEPT_SMALL or name not in start:
            continue
        values = field_values(field, start[name], rng)
        if values is not None:
            per_field[name] = values
    out, seen = [], set()
    for corner in CORNERS:
        values, changed, parsed = dict(start), {}, base
        for name, options in per_field.items():
            trial = {**values, name: options[corner]}
            accepted = _parse(spec, trial, registry)
            if accepted is not None:
                values, parsed = trial, accepted
                if options[corner] != start[name]:
                    changed[name] = options[corner]
        key = repr(sorted(changed.items()))
        if changed and key not in seen:
            seen.add(key)
            out.append((corner, changed, parsed))
    return out


def _run_architecture(spec: PluginSpec, params: BaseModel) -> None:
    model = spec.build(params, in_channels=1, num_classes=NUM_CLASSES).train()
    # The smallest size of at least 32x64 the draw's depth allows: a quarter of 64x128's cost, and the
    # kit's size check already covers the default size.
    multiple = spec.multiple(params)
    images, masks = random_batch(size=(-(-32 // multiple) * multiple, -(-64 // multiple) * multiple))
    loss = training_loss(spec, model, images, masks)
    require(bool(torch.isfinite(loss)), "training loss is not finite")
    loss.backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    require(tuple(out.shape) == (2, NUM_CLASSES, *images.shape[-2:]), f"eval logits {tuple(out.shape)}")


def _run_block(spec: PluginSpec, params: BaseModel) -> None:
    generator = torch.Generator().manual_seed(0)
    for role in sorted(spec.roles):
        block = spec.build(params, 4, 8, norm="batch").train()
        x = torch.randn(2, 4, 8, 16, generator=generator, requires_grad=True)
        inputs = (x, torch.randn(2, 8, 8, 16, generator=generator)) if role == "skip" else (x,)
        out = block(*inputs)
        expected = (2, 4 if role == "skip" else 8, 8, 16)
        require(tuple(out.shape) == expected, f"as {role}: shape {tuple(out.shape)}; expected {expected}")
        out.float().square().mean().backward()
        require(bool(torch.isfinite(out).all()), f"as {role}: output not finite")


def _run_loss(spec: PluginSpec, params: BaseModel) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 16, 32, generator=generator, requires_grad=True)
    target = torch.randint(0, NUM_CLASSES, (2, 16, 32), generator=generator)
    loss_fn = spec.build(params, num_classes=NUM_CLASSES, ignore_index=0, class_weights=None)
    extra = ()
    if spec.distance_maps(params):
        extra = (signed_distance_maps(target.to(torch.uint8), NUM_CLASSES, 0),)
    value = loss_fn(logits, target, *extra)
    require(isinstance(value, torch.Tensor) and value.dim() == 0, "the loss is not a scalar tensor")
    require(bool(torch.isfinite(value)), f"the loss is not finite: {value}")
    value.backward()
    require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient")


def _run_balancer(spec: PluginSpec, params: BaseModel) -> None:
    images, masks = balancer_inputs()
    result = spec.build(params)(images, masks, num_classes=NUM_CLASSES, ignore_index=0, seed=0)
    require(len(result.images) > 0 and result.images.shape == result.masks.shape, "a bad training split")
    require(int(result.masks.max()) < NUM_CLASSES, "produced a label outside the classes")


RUNNERS = {
    "architecture": _run_architecture,
    "block": _run_block,
    "loss": _run_loss,
    "balancer": _run_balancer,
}


def _settings(changed: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in changed.items())


def check_sampled_params(spec: PluginSpec, registry: Any = None) -> str:
    """Build and run the plugin at each draw of `draws`; a crash or a broken output names the draw."""
    found = draws(spec, registry)
    for corner, changed, params in found:
        try:
            RUNNERS[spec.kind](spec, params)
        except CheckFailed as exc:
            raise CheckFailed(f"at {_settings(changed)} ({corner} draw, in bounds): {exc}") from None
        except Exception as exc:  # a crash inside the plugin at a value its params model accepts
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckFailed(
                f"at {_settings(changed)} ({corner} draw, in bounds): {type(exc).__name__}: {first}"
            ) from None
    if not found:
        return "no sampled parameters (every field is fixed, a name or a structure)"
    return f"{len(found)} draws in bounds ({', '.join(corner for corner, _, _ in found)})"
