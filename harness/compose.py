"""Composed balancers: `--balancer oversample+copypaste+classweights` applies the parts in order.

Each part keeps its own params model; on the command line a part's parameter is prefixed with its
name (`--balancer-param copypaste.per_image=3`), in TOML it sits under the part's name.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, create_model

from harness.errors import ConfigError
from harness.specs import BalancedSplit, BalancerSpec


def _route_cli(names: list[str], cli: dict[str, str]) -> dict[str, dict[str, str]]:
    routed: dict[str, dict[str, str]] = {name: {} for name in names}
    for key, raw in cli.items():
        part, dot, field = key.partition(".")
        if not dot:
            raise ConfigError(
                f"with a composed balancer, prefix each parameter with its part: e.g. {names[-1]}.{key}={raw}"
            )
        if part not in routed:
            raise ConfigError(
                f"balancer parameter '{key}' names '{part}', which is not among {'+'.join(names)}"
            )
        routed[part][field] = raw
    return routed


def compose_balancers(
    registry: Any, name: str, values: dict[str, Any], cli: dict[str, str] | None
) -> tuple[BalancerSpec, BaseModel]:
    """A spec applying the balancers named in `name` ('a+b+c') in order, and its validated params."""
    names = [part.strip() for part in name.split("+")]
    if len(set(names)) != len(names) or "" in names:
        raise ConfigError(f"balancer '{name}': each part must appear once")
    specs = {part: registry.get("balancer", part) for part in names}
    stray = [key for key in values if key not in specs]
    if stray:
        raise ConfigError(f"balancer params name '{stray[0]}', which is not among {'+'.join(names)}")
    routed = _route_cli(names, cli or {})
    parsed = {
        part: specs[part].parse_params(values.get(part), routed[part], registry=registry) for part in names
    }
    fields = {part: (type(parsed[part]), parsed[part]) for part in names}
    model = create_model("ComposedBalancerParams", __config__=ConfigDict(extra="forbid"), **fields)

    def build(params: BaseModel):
        steps = [specs[part].build(getattr(params, part)) for part in names]
        return lambda images, masks, **context: chain(steps, images, masks, **context)

    spec = BalancerSpec(name="composed", summary=f"{' then '.join(names)}", params=model, build=build)
    return spec, model()


def chain(steps, images: torch.Tensor, masks: torch.Tensor, **context: Any) -> BalancedSplit:
    """Apply balancers in order; the last class weights given win; strong-augmentation marks carry over.

    Balancers keep their input rows in order and append new ones, so a part that does not mark rows
    keeps the marks of the rows it was given and leaves appended rows unmarked.
    """
    weights, strong = None, None
    for step in steps:
        result = step(images, masks, **context)
        if result.strong is None and strong is not None:
            extra = torch.zeros(len(result.images) - len(strong), dtype=torch.bool)
            result.strong = torch.cat([strong, extra])
        images, masks, strong = result.images, result.masks, result.strong
        weights = result.class_weights if result.class_weights is not None else weights
    return BalancedSplit(images=images, masks=masks, class_weights=weights, strong=strong)
