"""RunConfig: one flat, typed description of a run, from a TOML file, flags and `--set` overrides.

Plugin parameters stay raw here (a dict per plugin) and are validated by the plugin's own params
model in `resolve`, which returns the config with every parameter filled in: that resolved config is
what the run store keeps and what the config hash is computed from.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.compose import compose_balancers
from harness.errors import ConfigError, DataError
from harness.hashing import config_hash as config_hash  # re-exported: where the hash was always found
from harness.parsing import (
    check_nesting,
    coerce_string,
    describe_validation_error,
    did_you_mean,
    split_assignment,
)
from harness.parsing import read_toml as read_toml  # re-exported: the commands read config files here
from harness.plugins import LookupRecord

# The sections, re-exported: commands and plugins import them from harness.config.
from harness.sections import LOGGERS as LOGGERS
from harness.sections import AugmentConfig as AugmentConfig
from harness.sections import DataConfig as DataConfig
from harness.sections import LogConfig as LogConfig
from harness.sections import PluginChoice as PluginChoice
from harness.sections import Strict as Strict
from harness.sections import TrainConfig as TrainConfig

DEFAULT_CHOICES = {"arch": "unet", "loss": "ce", "balancer": "none"}


# Seeds feed derived streams (epoch_seed: seed * 1000 + epoch, per rank) that torch's 64-bit generators
# must hold, and a sweep adds one per --seeds: 2**32 leaves room for all of them.
SEED_LIMIT = 2**32


class RunConfig(Strict):
    """Everything that defines a run. Unknown keys anywhere are an error."""

    seed: int = Field(
        0, ge=0, lt=SEED_LIMIT, description="Seed for splits, initialisation, augmentation and balancing."
    )
    arch: PluginChoice = Field(default_factory=lambda: PluginChoice(name=DEFAULT_CHOICES["arch"]))
    loss: PluginChoice = Field(default_factory=lambda: PluginChoice(name=DEFAULT_CHOICES["loss"]))
    balancer: PluginChoice = Field(default_factory=lambda: PluginChoice(name=DEFAULT_CHOICES["balancer"]))
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def _field_annotation(path: list[str]) -> Any:
    """The annotation of a dotted settings path, or ConfigError with a did-you-mean."""
    model: Any = RunConfig
    for depth, key in enumerate(path):
        fields = model.model_fields
        if key not in fields:
            prefix = ".".join(path[:depth])
            choices = [f"{prefix}.{name}" if prefix else name for name in fields]
            full = ".".join(path[: depth + 1])
            raise ConfigError(
                f"unknown setting {full!r}{did_you_mean(full, choices)} (choices: {', '.join(choices)})"
            )
        annotation = fields[key].annotation
        if depth == len(path) - 1:
            return annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ConfigError(f"setting {'.'.join(path[: depth + 1])!r} has no sub-keys")
        model = annotation
    return None


def apply_setting(tree: dict[str, Any], assignment: str, cli_params: dict[str, dict[str, str]]) -> None:
    """Apply one `--set section.key=value` to the raw config dict in place.

    `arch.params.x=v` (and loss/balancer/data params) keeps the raw string, in `cli_params[section]`:
    the plugin's own params model reads it in `resolve`.
    """
    key, raw = split_assignment(assignment, "--set")
    path = key.split(".")
    if len(path) >= 3 and path[1] == "params" and path[0] in ("arch", "loss", "balancer", "data"):
        cli_params.setdefault(path[0], {})[".".join(path[2:])] = raw
        return
    annotation = _field_annotation(path)
    node = tree
    for depth, part in enumerate(path[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(
                f"--set {key}: '{where}' is {node!r} in the config, not a table; fix the config file"
            )
    node[path[-1]] = coerce_string(annotation, raw)


def build_config(
    base: dict[str, Any] | None = None,
    *,
    settings: list[str] = (),
    plugin_params: dict[str, list[str]] | None = None,
) -> tuple[RunConfig, dict[str, dict[str, str]]]:
    """RunConfig from a base dict (TOML or Python), `--set` assignments and `--X-param k=v` flags.

    Returns the config and, per plugin section, the raw command-line parameter strings that `resolve`
    validates against the plugin's params model.
    """
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"a config is a table of settings (a dict), got {type(base).__name__}")
    check_nesting(base, "the config")
    tree = copy.deepcopy(base or {})  # TOML values may be dates, which a JSON round trip would not survive
    cli_params: dict[str, dict[str, str]] = {}
    for assignment in settings:
        apply_setting(tree, assignment, cli_params)
    for section, items in (plugin_params or {}).items():
        for item in items:
            key, raw = split_assignment(item, f"--{section}-param")
            cli_params.setdefault(section, {})[key] = raw
    for section, name in DEFAULT_CHOICES.items():
        if isinstance(tree.get(section), dict):
            tree[section].setdefault("name", name)
    try:
        return RunConfig.model_validate(tree), cli_params
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "bad config")) from None


class Resolved(BaseModel):
    """A config whose plugin names exist and whose plugin parameters are validated and complete."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    config: RunConfig
    arch: Any  # ArchitectureSpec
    loss: Any  # LossSpec
    balancer: Any  # BalancerSpec
    dataset: Any | None  # DatasetSpec, or None when data.source is a file
    arch_params: BaseModel
    loss_params: BaseModel
    balancer_params: BaseModel
    data_params: BaseModel | None
    revisions: dict[str, int] = {}  # LookupRecord.revisions of the plugins resolved

    @property
    def hash(self) -> str:
        return config_hash(self.config, self.revisions)

    @property
    def needs_distance_maps(self) -> bool:
        return self.loss.distance_maps(self.loss_params)

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this for the chosen architecture and its params."""
        return self.arch.multiple(self.arch_params)


def dataset_for(source: str, registry: Any) -> Any | None:
    """The DatasetSpec named `source`, or None when `source` is an existing file.

    A path that does not exist is a DataError; a bare word that is no dataset gets a did-you-mean.
    """
    names = registry.specs["dataset"]
    if source not in names and _is_file(source):
        return None
    if source not in names and (Path(source).suffix or "/" in source or "\\" in source):
        raise DataError(f"{source}: no such file")
    return registry.get("dataset", source)


def _is_file(source: str) -> bool:
    try:
        return Path(source).is_file()
    except OSError as exc:  # e.g. a name too long for the filesystem
        raise DataError(f"{source}: cannot be opened ({exc.strerror})") from None


def resolve(
    config: RunConfig, registry: Any, cli_params: dict[str, dict[str, str]] | None = None
) -> Resolved:
    """Check plugin names and parameters against the loaded plugins, before anything is built.

    Raises PluginError (unknown name, with did-you-mean) or ConfigError (bad parameter).
    """
    cli_params = cli_params or {}
    registry = LookupRecord(registry)
    chosen = {}
    for section, kind in (("arch", "architecture"), ("loss", "loss"), ("balancer", "balancer")):
        choice: PluginChoice = getattr(config, section)
        if section == "balancer" and "+" in choice.name:
            chosen[section] = compose_balancers(registry, choice.name, choice.params, cli_params.get(section))
            continue
        spec = registry.get(kind, choice.name)
        parsed = spec.parse_params(choice.params, cli_params.get(section), registry=registry)
        chosen[section] = (spec, parsed)
    source = config.data.source
    dataset = dataset_for(source, registry)
    data_params = None
    if dataset is not None:
        data_params = dataset.parse_params(config.data.params, cli_params.get("data"), registry=registry)
    elif config.data.params or cli_params.get("data"):
        raise ConfigError(f"data.params only apply to named datasets, not to the file {source}")
    filled = config.model_copy(deep=True)
    for section in ("arch", "loss", "balancer"):
        getattr(filled, section).params = chosen[section][1].model_dump(mode="json")
    if data_params is not None:
        filled.data.params = data_params.model_dump(mode="json")
    return Resolved(
        config=filled,
        arch=chosen["arch"][0],
        loss=chosen["loss"][0],
        balancer=chosen["balancer"][0],
        dataset=dataset,
        arch_params=chosen["arch"][1],
        loss_params=chosen["loss"][1],
        balancer_params=chosen["balancer"][1],
        data_params=data_params,
        revisions=registry.revisions(),
    )
