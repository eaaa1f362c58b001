"""The pydantic specs a plugin returns from its hooks; `harness/hookspecs.py` says which hook returns which.

A spec is a description, not a model: `name` (a slug), `summary`, `params` (a pydantic model class whose
every field has a type, default, bounds and description), a `build` callable and capability flags.
Specs are validated when plugins load, so a broken plugin is reported before any training starts.
Parameters are validated by `spec.parse_params(values, cli, registry=registry)`; a params model that names
other plugins (combo's parts, an architecture's blocks) looks them up in that registry with `registry_of`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from harness.errors import ConfigError
from harness.parsing import coerce_string, describe_validation_error, did_you_mean

SLUG = r"^[a-z][a-z0-9_-]*$"


class NoParams(BaseModel):
    """For plugins without hyperparameters."""

    model_config = ConfigDict(extra="forbid")


class PluginSpec(BaseModel):
    """What every plugin kind shares."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")
    kind: ClassVar[str] = "plugin"

    name: str = Field(pattern=SLUG, description="Unique slug used on the command line.")
    summary: str = Field(min_length=1, description="One line shown by `harness list`.")
    params: type[BaseModel] = Field(NoParams, description="Pydantic model of every hyperparameter.")
    build: Callable[..., Any] = Field(
        description="Builds the plugin's object; signature depends on the kind."
    )
    revision: int = Field(
        0,
        ge=0,
        description="Bump when the plugin computes something else at the same params: the config hash "
        "of every run using it changes, so old and new runs never share a leaderboard row.",
    )

    @field_validator("params")
    @classmethod
    def _params_usable(cls, model: type[BaseModel]) -> type[BaseModel]:
        # Defaults must exist so `--arch unet` alone works, and extra="forbid" so typos fail loudly.
        if model.model_config.get("extra") != "forbid":
            raise ValueError(f"params model {model.__name__} must set model_config extra='forbid'")
        missing = [name for name, field in model.model_fields.items() if field.is_required()]
        if missing:
            raise ValueError(f"params model {model.__name__} has fields without defaults: {missing}")
        return model

    def parse_params(
        self,
        values: Mapping[str, Any] | None = None,
        cli: Mapping[str, str] | None = None,
        *,
        registry: Any = None,
    ) -> BaseModel:
        """Validate typed `values` (from TOML or Python) overlaid with raw `cli` strings (`k=v` flags).

        A dotted key reaches inside a mapping field (`dict[str, ...]`): `encoder_params.reduction=8`
        sets `{"reduction": 8}` in the field `encoder_params`, read with the mapping's value type (a
        string stays raw under `Any`, for the field's own validator to read). Raises ConfigError
        naming the plugin, the field and the valid fields.

        `registry` (a `harness.plugins.Registry`) is what a params model that names other plugins
        (combo's parts, an architecture's blocks) checks those names against: its validators read it
        with `registry_of(info)`. Models that name no other plugin never look at it.
        """
        fields = self.params.model_fields
        if values is not None and not isinstance(values, Mapping):  # e.g. `oversample = 5` in a composition
            raise ConfigError(
                f"{self.kind} '{self.name}' parameters must be a table of name = value, got {values!r}"
            )
        merged = dict(values or {})
        for key, raw in (cli or {}).items():
            head, dot, rest = key.partition(".")
            if dot and head in fields and _mapping_value(fields[head].annotation) is not None:
                annotation = fields[head].annotation
                merged[head] = _set_nested(merged.get(head), rest.split("."), raw, annotation, key)
                continue
            if key not in fields:
                merged[key] = raw  # reported below with the did-you-mean
                continue
            merged[key] = coerce_string(fields[key].annotation, raw)
        unknown = [key for key in merged if key not in fields]
        valid = ", ".join(fields) or "(none)"
        if unknown:
            hint = did_you_mean(unknown[0].partition(".")[0], fields)
            raise ConfigError(
                f"unknown {self.kind} parameter '{unknown[0]}' for '{self.name}'{hint} (valid: {valid})"
            )
        context = {"registry": registry, "plugin": f"{self.kind} '{self.name}'"}
        try:
            parsed = self.params.model_validate(merged, context=context)
        except ValidationError as exc:
            where = f"bad {self.kind} parameter for '{self.name}'"
            raise ConfigError(f"{describe_validation_error(exc, where)} (valid: {valid})") from None
        bad = _first_non_finite(parsed.model_dump())
        if bad is not None:  # checked here, once, rather than trusted to every plugin's params model
            key, value = bad
            raise ConfigError(
                f"bad {self.kind} parameter for '{self.name}': {key} must be finite, got {value}"
            )
        return parsed


def registry_of(info: ValidationInfo) -> Any:
    """The registry `parse_params` was given, for a params validator that looks up other plugins.

    Use it in a validator that takes `info` (`@model_validator(mode="after")` with `(self, info)`).
    Without a registry it raises ConfigError naming the plugin: the names cannot be checked, and
    guessing a registry would check them against whichever plugins happened to load.
    """
    context = info.context or {}
    registry = context.get("registry")
    if registry is None:
        plugin = context.get("plugin", "these parameters")
        raise ConfigError(
            f"{plugin} names other plugins, so its parameters need the plugin registry: "
            "parse them with spec.parse_params(..., registry=registry)"
        )
    return registry


def _first_non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The dotted key of the first inf or NaN float inside `value` (dicts, lists, tuples), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "value", value
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, (list, tuple))
        else ()
    )
    for key, item in items:
        found = _first_non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class ArchitectureSpec(PluginSpec):
    """A segmentation network. `build(params, *, in_channels, num_classes) -> torch.nn.Module`.

    The module maps (B, in_channels, H, W) float images to (B, num_classes, H, W) logits. Flags:
    - deep_supervision: in training mode the module returns a list of logits (coarse to final), each
      at the input's resolution; the loop averages the loss over them. In eval mode it returns one tensor.
    - input_multiple: H and W must be multiples of this (an int or a function of the params); the
      harness pads (reflect) and crops, and the module itself raises a ValueError naming the multiple
      when called on another size.
    - instance_based: in training mode the module is called as `module(images, masks)` with the
      semantic masks and returns a dict of named scalar losses that the loop sums; in eval mode it
      returns logits like every other architecture.
    - compiles: the module goes through `torch.compile` (False declares that it does not).
    - fit: an optional step that adapts the model to the data it will train on, `fit(model, masks) ->
      dict`. When a run is prepared it is called once, right after `build` (before the cost is measured
      and anything is recorded), with the training split's (N, H, W) uint8 masks on the CPU, after
      balancing and before augmentation. It may change the model's buffers (never its parameter
      shapes: `evaluate` and `predict` rebuild the model from the params and load the checkpoint, so
      whatever it fitted must live in the state dict). It returns JSON-serialisable data saying what
      it fitted, which the run records in its metrics under "fitted". maskrcnn fits its anchors.

    A model may also define, for the readers that measure and score it:
    - `cost_probe()`: a context manager inside which an eval forward does the work a trained model does
      (maskrcnn: every proposal scores as a detection), so the GFLOPs measured on the fresh model count it;
    - `scoring_variants` (names) and `scoring_variant(name)` (a context manager selecting what eval mode
      returns): outputs that `evaluate` scores apart, e.g. a hybrid's parts.
    """

    kind: ClassVar[str] = "architecture"
    deep_supervision: bool = False
    input_multiple: int | Callable[[Any], int] = Field(
        1, description="H and W must be multiples of this: an int, or a function of the params (depth...)."
    )
    instance_based: bool = False
    compiles: bool = Field(
        True, description="The model goes through torch.compile (the kit checks the claim)."
    )
    params_count: int | None = Field(
        None, ge=0, description="Declared trainable parameters with default params (the kit checks it)."
    )
    fit: Callable[[Any, torch.Tensor], dict[str, Any]] | None = Field(
        None, description="fit(model, training masks) -> what was fitted; called once when a run is prepared."
    )

    def multiple(self, params: BaseModel) -> int:
        """The size multiple for these params (the harness pads inputs up to it)."""
        value = self.input_multiple(params) if callable(self.input_multiple) else self.input_multiple
        if not isinstance(value, int) or value < 1:
            raise ValueError(
                f"architecture '{self.name}': input_multiple gave {value!r}; expected an int >= 1"
            )
        return value


BlockRole = Literal["encoder", "bottleneck", "decoder", "skip"]


class BlockSpec(PluginSpec):
    """A building block that architectures compose by name (`--arch-param encoder_block=se`).

    `build(params, in_channels, out_channels, *, norm) -> nn.Module`, where `norm` is the
    architecture's normalisation ('batch', 'group', 'instance' or 'none'): the block should use it
    for its own norm layers so one `--arch-param norm=group` reaches every block. Blocks never
    change H and W (down- and up-sampling stay the architecture's job) and must work for any H, W
    of at least 1 (a block that depends on the size, like self-attention, adapts to it per call).

    `roles` says where the block may go:
    - "encoder", "bottleneck", "decoder": `module(x)` maps (B, in_channels, H, W) to
      (B, out_channels, H, W). The architecture picks the channel counts (a decoder block gets the
      concatenated skip and up-sampled features).
    - "skip" (skip fusion): built as `build(params, skip_channels, gating_channels, *, norm)`;
      `module(skip, gating)` takes the encoder features (B, skip_channels, H, W) and the decoder
      features that will meet them (B, gating_channels, h, w), at the same or a coarser size
      (the block resamples), and returns (B, skip_channels, H, W): the skip as the decoder should
      see it, which the architecture then concatenates with its up-sampled decoder features.
    A block declaring several roles is called with the signature of the role it is used in.

    `placement` says what the block is in the encoder, bottleneck and decoder roles:
    - "stage" (the default): it maps a stage's input to its output with spatial context of its own, so
      an output position depends on its input neighbours (the conformance kit perturbs one pixel and
      checks); it may stand alone or lead a '+' chain.
    - "attachment": it recalibrates features it is given (a context or gating unit such as `gc`) and
      must follow a stage in a '+' chain (`conv+gc`, `se+gc`); alone, or first in a chain, it is refused
      when the params are parsed, before anything is built.
    Skip fusion ("skip") is not a stage: `placement` does not apply to it.
    """

    kind: ClassVar[str] = "block"
    roles: frozenset[BlockRole] = Field(
        frozenset({"encoder", "bottleneck", "decoder"}), min_length=1, description="Where the block may go."
    )
    placement: Literal["stage", "attachment"] = Field(
        "stage",
        description="stage: a stage by itself (spatial context of its own); attachment: recalibrates "
        "features and must follow a stage in a '+' chain.",
    )


class LossSpec(PluginSpec):
    """A loss. `build(params, *, num_classes, ignore_index, class_weights) -> nn.Module`.

    The module's forward is `(logits (B,K,H,W), target (B,H,W) int64) -> scalar tensor` (plus a third
    argument, the target's signed distance maps, when `needs_distance_maps` holds); pixels whose
    target is `ignore_index` (None: no ignored class) contribute nothing; `class_weights` is a (K,)
    float tensor or None.
    """

    kind: ClassVar[str] = "loss"

    def distance_maps(self, params: BaseModel) -> bool:
        """Whether this loss, with these params, is called with distance maps."""
        flag = self.needs_distance_maps
        return bool(flag(params) if callable(flag) else flag)

    needs_distance_maps: bool | Callable[[Any], bool] = Field(
        False,
        description="forward takes a third argument, the (B,K,H,W) signed distance maps of the target; "
        "a bool or a function of the params (a composite loss needs them only if a part does).",
    )
    scheduled: bool = Field(
        False, description="The module has set_epoch(epoch), called by the loop before each epoch (from 1)."
    )


@dataclass
class BalancedSplit:
    """What a balancer returns: the (possibly new) training split and optional class weights."""

    images: torch.Tensor  # (N, H, W) uint8
    masks: torch.Tensor  # (N, H, W) uint8
    class_weights: torch.Tensor | None = None  # (K,) float32
    strong: torch.Tensor | None = None  # (N,) bool: rows that get the stronger augmentation (e.g. copies)


class BalancerSpec(PluginSpec):
    """A class-balancing strategy. `build(params) -> callable`.

    The callable is `(images, masks, *, num_classes, ignore_index, seed) -> BalancedSplit`. It sees the
    training split only, must not modify its inputs in place, and is deterministic for a seed. It keeps
    its input rows in order (possibly changed) and appends any new rows after them, and may mark rows
    for stronger augmentation (`BalancedSplit.strong`). Balancers compose: `--balancer a+b+c`.
    """

    kind: ClassVar[str] = "balancer"


class DatasetSpec(PluginSpec):
    """A named dataset usable as `--data NAME`. `build(params) -> harness.data.dataset.SegmentationData`."""

    kind: ClassVar[str] = "dataset"


def _mapping_value(annotation: Any) -> Any | None:
    """The value type of a `dict[str, V]` annotation (Any for a bare dict), else None."""
    if annotation is dict:
        return Any
    if get_origin(annotation) is dict:
        args = get_args(annotation)
        return args[1] if len(args) == 2 else Any
    return None


def _set_nested(node: Any, path: list[str], raw: str, annotation: Any, key: str) -> dict[str, Any]:
    """A copy of mapping `node` with `raw` (read as the mapping's value type) at `path`."""
    value_type = Any if annotation is Any else _mapping_value(annotation)
    if value_type is None:
        raise ConfigError(f"parameter '{key}' has more dotted parts than its field has levels")
    copy = dict(node) if isinstance(node, Mapping) else {}
    if len(path) == 1:
        copy[path[0]] = raw if value_type is Any else coerce_string(value_type, raw)
    else:
        copy[path[0]] = _set_nested(copy.get(path[0]), path[1:], raw, value_type, key)
    return copy


SPEC_KINDS: dict[str, type[PluginSpec]] = {
    spec.kind: spec for spec in (ArchitectureSpec, BlockSpec, LossSpec, BalancerSpec, DatasetSpec)
}


@dataclass(frozen=True)
class RunInfo:
    """What lifecycle hooks see of a run: its id, its resolved config, its directory, device and store."""

    run_id: str
    config: dict[str, Any]
    run_dir: Path
    device: str
    store_path: Path
