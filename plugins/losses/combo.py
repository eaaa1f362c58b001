"""A weighted sum of other registered losses, each with its own parameters and an optional weight ramp.

`--loss combo --loss-param parts=ce:1,dice:1,focal:0.5` sums three losses; the report's
dice+focal+boundary loss is one such sum. Part names are looked up in the registry the params are
parsed with (`spec.parse_params(..., registry=registry)`), so a third-party loss can be a part too,
and are checked (with did-you-mean) before anything is built; the parsed params keep each part's spec,
so `build` needs nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from torch import nn

from harness import hookimpl
from harness.errors import ConfigError
from harness.specs import LossSpec, registry_of


def _parse_parts(value: Any) -> Any:
    """'ce:1,dice:0.5' or ['ce:1', 'dice:0.5'] -> {'ce': 1.0, 'dice': 0.5}; dicts pass through."""
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    if isinstance(value, list):
        parts = {}
        for item in value:
            name, sep, weight = str(item).partition(":")
            try:
                parts[name.strip()] = float(weight) if sep else 1.0
            except ValueError:
                raise ValueError(f"part '{item}' is not NAME:WEIGHT") from None
        return parts
    return value


class ComboParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"ce": 1.0, "dice": 1.0},
        description="Loss name -> weight, e.g. ce:1,dice:1,focal:0.5 (a weighted sum, not a mean).",
        min_length=1,
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='Per-part parameters, e.g. {"focal": {"gamma": 3}}.'
    )
    ramp_epochs: dict[str, int] = Field(
        default_factory=dict, description="Part -> epochs over which its weight ramps linearly up from 0."
    )

    _parse = field_validator("parts", mode="before")(_parse_parts)

    # part name -> (its spec, its parsed params), resolved against the registry the params were parsed with
    _parts: dict[str, tuple[LossSpec, BaseModel]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _known_parts(self, info: ValidationInfo) -> ComboParams:
        registry = registry_of(info)
        for name in self.parts:
            if name == "combo":
                raise ConfigError("loss 'combo' cannot contain itself")
            spec = registry.get("loss", name)  # unknown name: PluginError with did-you-mean
            parsed = spec.parse_params(self.params.get(name), registry=registry)
            self._parts[name] = (spec, parsed)
            self.params[name] = parsed.model_dump(mode="json")
        for field, keys in (("params", self.params), ("ramp_epochs", self.ramp_epochs)):
            stray = [key for key in keys if key not in self.parts]
            if stray:
                raise ConfigError(f"loss 'combo': {field} names '{stray[0]}', which is not among parts")
        if any(epochs < 1 for epochs in self.ramp_epochs.values()):
            raise ConfigError("loss 'combo': ramp_epochs must be at least 1")
        return self

    def resolved_parts(self) -> dict[str, tuple[LossSpec, BaseModel]]:
        """Each part's spec and parsed params, as validated (ConfigError for unvalidated params)."""
        if set(self._parts) != set(self.parts):
            raise ConfigError(
                "loss 'combo': these parameters were not validated against a plugin registry; "
                "parse them with spec.parse_params(..., registry=registry)"
            )
        return self._parts


class Combo(nn.Module):
    """sum_i w_i(epoch) * loss_i(logits, target), with w_i ramping from 0 over its ramp epochs."""

    def __init__(
        self, losses: dict[str, nn.Module], weights: dict[str, float], ramps: dict[str, int], needs: set[str]
    ):
        super().__init__()
        self.losses = nn.ModuleDict(losses)
        self.weights, self.ramps, self.needs_distances = weights, ramps, needs
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weight(self, name: str) -> float:
        ramp = self.ramps.get(name)
        scale = min(1.0, self.epoch / ramp) if ramp else 1.0
        return self.weights[name] * scale

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, distances: torch.Tensor | None = None
    ) -> torch.Tensor:
        total = 0.0
        for name, loss in self.losses.items():
            extra = (distances,) if name in self.needs_distances else ()
            total = total + self.weight(name) * loss(logits, target, *extra)
        return total


def build(
    params: ComboParams, *, num_classes: int, ignore_index: int | None, class_weights: torch.Tensor | None
) -> nn.Module:
    parts = params.resolved_parts()
    losses = {
        name: spec.build(
            part_params, num_classes=num_classes, ignore_index=ignore_index, class_weights=class_weights
        )
        for name, (spec, part_params) in parts.items()
    }
    needs = {name for name, (spec, part_params) in parts.items() if spec.distance_maps(part_params)}
    return Combo(losses, dict(params.parts), dict(params.ramp_epochs), needs)


def needs_distance_maps(params: ComboParams) -> bool:
    """Combo takes distance maps exactly when one of its parts does."""
    return any(spec.distance_maps(part) for spec, part in params.resolved_parts().values())


@hookimpl
def harness_losses() -> list[LossSpec]:
    return [
        LossSpec(
            name="combo",
            summary="Weighted sum of losses by name, e.g. parts=ce:1,dice:1,focal:0.5 (weights may ramp)",
            params=ComboParams,
            build=build,
            scheduled=True,
            needs_distance_maps=needs_distance_maps,
        )
    ]
