"""Blocks composed into an architecture by name: the params and factories unet and unetpp share.

An architecture whose params model inherits `BlockChoices` takes four block choices, each a registered
block (`harness list --kind block`) whose roles include the place it goes:

    encoder_block  every encoder stage          role "encoder"     default conv
    bottleneck     the deepest stage            role "bottleneck"  default conv
    decoder_block  every decoder stage/node     role "decoder"     default conv
    skip_fusion    each skip, before the concat role "skip"        default none (plain concatenation)

The first three may chain blocks with '+', applied in order (`bottleneck=rdam+gc`: the first part maps
the stage's input width to its output width, the others keep it). The first part must be a stage block;
an attachment (`BlockSpec.placement`, e.g. `gc`) only follows one, so `bottleneck=gc` is refused with
the fix (`conv+gc`). Each choice's own parameters sit in
the mapping `<role>_params`, validated by that block's params model: flat for one block
(`--arch-param encoder_params.reduction=8`), under each part's name for a chain
(`--arch-param bottleneck_params.gc.reduction=8`). Names, roles and parameters are all checked when the
params are parsed (against the registry given to `spec.parse_params(..., registry=registry)`), before
anything is built; the parsed `<role>_params` hold every block parameter (defaults included), so a
stored run config says exactly what was built, and the parsed params keep the chosen block specs, so
building needs no registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator
from torch import nn

from harness.errors import ConfigError
from harness.parsing import did_you_mean
from harness.specs import BlockSpec, registry_of

# params field naming the block(s) -> the role they play; their params sit in f"{role}_params"
CHOICES = {
    "encoder_block": "encoder",
    "bottleneck": "bottleneck",
    "decoder_block": "decoder",
    "skip_fusion": "skip",
}
NO_FUSION = "none"

Factory = Callable[[int, int], nn.Module]


def _params_field(description: str) -> Any:
    return Field(default_factory=dict, description=description)


class BlockChoices(BaseModel):
    """The block fields of a composable architecture's params.

    Mix it in as the first base, `class UNetParams(BlockChoices, UNetShape)` (pydantic lists the last
    base's fields first, so the shape fields lead in `harness list`). The architecture's params must
    have a `norm` field: every block is built with it.
    """

    model_config = ConfigDict(extra="forbid")

    encoder_block: str = Field(
        "conv", description="Block of every encoder stage (`harness list --kind block`); '+' chains blocks."
    )
    encoder_params: dict[str, Any] = _params_field(
        "Parameters of the encoder block, e.g. encoder_params.reduction=8 (per part name for a '+' chain)."
    )
    bottleneck: str = Field("conv", description="Block of the deepest stage, e.g. aspp or rdam+gc.")
    bottleneck_params: dict[str, Any] = _params_field(
        "Parameters of the bottleneck block, e.g. bottleneck_params.gc.reduction=8 for rdam+gc."
    )
    decoder_block: str = Field("conv", description="Block of every decoder stage; '+' chains blocks.")
    decoder_params: dict[str, Any] = _params_field("Parameters of the decoder block.")
    skip_fusion: str = Field(
        NO_FUSION,
        description="Block fusing each skip with the decoder features (role skip, e.g. cba), or none.",
    )
    skip_params: dict[str, Any] = _params_field("Parameters of the skip-fusion block.")

    # choice field -> [(block spec, its parsed params)] in chain order, from the registry the params were
    # parsed with (empty for skip_fusion=none): what block_factory builds, so it needs no registry
    _blocks: dict[str, list[tuple[BlockSpec, BaseModel]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_blocks(self, info: ValidationInfo) -> BlockChoices:
        registry = registry_of(info)
        for field, role in CHOICES.items():
            parts = _parts(field, getattr(self, field))
            setattr(self, field, "+".join(parts))
            chosen = _check_params(field, role, parts, getattr(self, f"{role}_params"), registry)
            self._blocks[field] = chosen
            setattr(self, f"{role}_params", _dump(parts, chosen))
        return self


def _parts(field: str, name: str) -> list[str]:
    parts = [part.strip() for part in name.split("+")]
    if "" in parts or len(set(parts)) != len(parts):
        raise ConfigError(f"{field} '{name}': name each block once, joined by '+' (e.g. rdam+gc)")
    if CHOICES[field] == "skip" and len(parts) > 1:
        raise ConfigError(f"{field} '{name}': a skip fusion is one block, not a '+' chain")
    return parts


def _spec(field: str, role: str, name: str, registry: Any) -> Any:
    """The block spec `name`, checked to exist (did-you-mean) and to declare `role`."""
    blocks = registry.specs["block"]
    fitting = sorted(n for n, entry in blocks.items() if role in entry.spec.roles)
    if role == "skip":
        fitting = [NO_FUSION, *fitting]
    if name not in blocks and ("block", name) not in registry.duplicates:
        raise ConfigError(
            f"unknown block '{name}' for {field}{did_you_mean(name, [*blocks, *fitting])} "
            f"(blocks for {role}: {', '.join(fitting) or 'none loaded'})"
        )
    spec = registry.get("block", name)  # a duplicate name raises, naming both providers
    if role not in spec.roles:
        raise ConfigError(
            f"block '{name}' cannot be the {field}: it declares roles {', '.join(sorted(spec.roles))} "
            f"(blocks for {role}: {', '.join(fitting)})"
        )
    return spec


def _check_placement(field: str, role: str, specs: list[BlockSpec]) -> None:
    """A stage role needs a stage first: an attachment (`gc`) alone would make the stage 1x1 convs only."""
    if role == "skip" or specs[0].placement == "stage":
        return
    chain = "+".join(spec.name for spec in specs)
    stages = [spec.name for spec in specs if spec.placement == "stage"] or ["conv"]
    fix = "+".join(stages + [spec.name for spec in specs if spec.placement == "attachment"])
    where = "alone" if len(specs) == 1 else "first in a chain"
    raise ConfigError(
        f"{field} '{chain}': block '{specs[0].name}' is an attachment (it recalibrates a stage's features "
        f"and has no spatial context of its own), so it cannot be the {field} {where}: use {fix}"
    )


def _parse(spec: Any, role: str, values: Any, registry: Any) -> BaseModel:
    """The block's params; strings are read like command-line values (they may come from `k.x=v`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{role}_params for block '{spec.name}' must be a mapping, got {values!r}")
    typed = {k: v for k, v in values.items() if not isinstance(v, str)}
    raw = {k: v for k, v in values.items() if isinstance(v, str)}
    try:
        return spec.parse_params(typed, raw, registry=registry)
    except ConfigError as exc:
        raise ConfigError(f"{role}_params: {exc}") from None


def _check_params(
    field: str, role: str, parts: list[str], values: Any, registry: Any
) -> list[tuple[BlockSpec, BaseModel]]:
    """Each part's spec and parsed params, in chain order (none for skip_fusion=none)."""
    if parts == [NO_FUSION] and role == "skip":
        if values:
            raise ConfigError(f"skip_params given but skip_fusion is '{NO_FUSION}'")
        return []
    specs = [_spec(field, role, part, registry) for part in parts]
    _check_placement(field, role, specs)
    if len(parts) == 1:
        return [(specs[0], _parse(specs[0], role, values, registry))]
    if not isinstance(values, dict):
        raise ConfigError(f"{role}_params must be a mapping from part name to parameters, got {values!r}")
    chain = "+".join(parts)
    stray = [key for key in values if key not in parts]
    if stray:
        raise ConfigError(
            f"{role}_params names '{stray[0]}', which is not among {chain}: with a '+' chain, put each "
            f"block's parameters under its name (e.g. {role}_params.{parts[-1]}.NAME=VALUE)"
        )
    return [(spec, _parse(spec, role, values.get(spec.name, {}), registry)) for spec in specs]


def _dump(parts: list[str], chosen: list[tuple[BlockSpec, BaseModel]]) -> dict[str, Any]:
    """`<role>_params` as stored: flat for one block, under each part's name for a chain."""
    if len(chosen) == 1 and len(parts) == 1:
        return chosen[0][1].model_dump(mode="json")
    return {spec.name: params.model_dump(mode="json") for spec, params in chosen}


def block_factory(params: BlockChoices, field: str) -> Factory | None:
    """`(in_channels, out_channels) -> nn.Module` for a choice (None for skip_fusion=none).

    For skip_fusion the arguments are (skip_channels, gating_channels), as `BlockSpec` defines. A chain
    becomes an `nn.Sequential`; a single block is returned bare, so `conv` builds the same modules (and
    parameter names) as before blocks were plugins.
    """
    chosen = params._blocks.get(field)
    if chosen is None:
        raise ConfigError(
            f"{field}: these parameters were not validated against a plugin registry; "
            "parse them with spec.parse_params(..., registry=registry)"
        )
    if not chosen:  # skip_fusion=none
        return None
    norm = params.norm

    def make(in_channels: int, out_channels: int) -> nn.Module:
        modules = [
            spec.build(block_params, in_channels if i == 0 else out_channels, out_channels, norm=norm)
            for i, (spec, block_params) in enumerate(chosen)
        ]
        return modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    return make


def block_factories(params: BlockChoices) -> dict[str, Factory | None]:
    """Factories for every choice: keys encoder, bottleneck, decoder and skip."""
    return {role: block_factory(params, field) for field, role in CHOICES.items()}
