"""The `[tune]` table of a `harness tune` file: the study's settings and its search space, checked in full
before any trial runs.

A space entry names any setting a config file can hold, as a dotted path, and one of three kinds:

    "train.lr" = { float = [3e-4, 1e-2], log = true }     # float, linear or log
    "train.batch_size" = { int = [8, 64], log = true }     # int (log: sampled on a log scale)
    "arch.params.bottleneck" = { categorical = ["conv", "se+gc", "aspp"] }

Each bound and each choice is set into the base config and resolved against the plugins, so an unknown
setting, a value of the wrong type or out of a parameter's bounds is one line naming the entry. The
`*.name` entries (a categorical choice of plugin) are set before the plugins' params; a choice that
changes a plugin drops the base file's params of the other one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError

from harness.config import build_config, resolve
from harness.errors import ConfigError, HarnessError
from harness.parsing import describe_validation_error
from harness.sections import Strict

KINDS = ("float", "int", "categorical")
PLUGIN_SECTIONS = ("arch", "loss", "balancer")


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    name: str  # the dotted setting path, e.g. train.lr
    kind: str  # float, int or categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def corners(self) -> list[Any]:
        """The values checked against the config before any trial: both bounds, or every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


class TuneSettings(Strict):
    """The `[tune]` table (its `space` is parsed into `Param`s by `parse_space`)."""

    study: str = Field(min_length=1, description="The study's name: its trials resume under it.")
    trials: int | None = Field(
        None, ge=1, description="How many trials the study has in all (resumes count)."
    )
    budget_minutes: float | None = Field(
        None, gt=0, description="Start no new trial after this many minutes of this invocation."
    )
    trial_minutes: float | None = Field(None, gt=0, description="Each trial's train.max_minutes.")
    metric: Literal["an2dl", "fg"] = Field("an2dl", description="Validation mIoU to maximise.")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops poor trials early from their per-epoch validation mIoU."
    )
    startup_trials: int = Field(
        5, ge=0, description="Trials the pruner lets finish, and TPE samples at random, before they act."
    )
    warmup_epochs: int = Field(1, ge=0, description="Epochs of a trial before the median pruner may stop it.")
    seed: int = Field(0, ge=0, description="The sampler's seed.")
    space: dict[str, Any] = Field(description="The search space: setting path -> {float|int|categorical}.")


def parse_tune(tree: dict[str, Any]) -> tuple[TuneSettings, list[Param]]:
    """The `[tune]` table of a file read as a dict: its settings and the (unchecked) space."""
    table = tree.get("tune")
    if not isinstance(table, dict):
        raise ConfigError("the tune file needs a [tune] table (study, trials, [tune.space])")
    try:
        settings = TuneSettings.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "bad [tune] table")) from None
    if settings.trials is None and settings.budget_minutes is None:
        raise ConfigError("[tune] needs trials = N or budget_minutes = M (or --trials)")
    if not settings.space:
        raise ConfigError("[tune.space] is empty: name at least one setting to search")
    return settings, [parse_param(name, entry) for name, entry in settings.space.items()]


def parse_param(name: str, entry: Any) -> Param:
    """One `[tune.space]` entry, its shape and bounds checked (not yet against the config)."""
    where = f"tune.space {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table like {{ float = [low, high] }}, got {entry!r}")
    kinds = [k for k in KINDS if k in entry]
    extra = sorted(set(entry) - set(KINDS) - {"log"})
    if len(kinds) != 1 or extra:
        raise ConfigError(
            f"{where}: give exactly one of float, int, categorical (and log), got {sorted(entry)}"
        )
    kind, values, log = kinds[0], entry[kinds[0]], entry.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if kind == "categorical":
        if log:
            raise ConfigError(f"{where}: log applies to float and int ranges, not to a categorical")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: categorical needs a non-empty list of choices")
        if not all(isinstance(v, str | int | float | bool) for v in values):
            raise ConfigError(f"{where}: categorical choices must be strings, numbers or booleans")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}: categorical choices repeat a value: {values}")
        return Param(name, kind, choices=tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise ConfigError(f"{where}: {kind} needs [low, high], got {values!r}")
    number = int if kind == "int" else (int, float)
    for bound in values:
        if isinstance(bound, bool) or not isinstance(bound, number) or not math.isfinite(bound):
            raise ConfigError(
                f"{where}: {kind} bound {bound!r} is not {'an integer' if kind == 'int' else 'a number'}"
            )
    low, high = values
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range must be above zero, got [{low}, {high}]")
    return Param(name, kind, low=low, high=high, log=log)


def apply_values(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`base` with each setting path set to its value; plugin names first (a changed plugin drops the
    base's params of the previous one), then everything else."""
    tree = copy.deepcopy(base)
    ordered = sorted(values.items(), key=lambda item: not item[0].endswith(".name"))
    for path, value in ordered:
        keys = path.split(".")
        if len(keys) == 2 and keys[0] in PLUGIN_SECTIONS and keys[1] == "name":
            node = tree.get(keys[0]) if isinstance(tree.get(keys[0]), dict) else {}
            tree[keys[0]] = node if node.get("name") == value else {"name": value}
            continue
        node = tree
        for depth, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"tune.space {path!r}: {'.'.join(keys[: depth + 1])} is not a table")
        node[keys[-1]] = value
    return tree


def check_space(
    space: list[Param], base: dict[str, Any], registry: Any, settings: list[str], plugin_params: dict
) -> None:
    """Resolve the base with each bound and each choice of each entry in turn: one line naming the entry
    for an unknown setting or a value the setting (or the plugin's params model) refuses."""
    names = [p.name for p in space]
    for assignment in settings:  # the flags apply after the trial's values: they would hide them
        key = assignment.split("=", 1)[0]
        if key in names:
            raise ConfigError(f"tune.space {key!r} is searched; drop the flag or --set that fixes it")
    for param in space:
        if param.name.split(".")[0] not in ("seed", "arch", "loss", "balancer", "data", "augment", "train"):
            raise ConfigError(f"tune.space {param.name!r}: unknown setting (a path like train.lr)")
        for value in param.corners():
            resolve_trial(base, {param.name: value}, registry, settings, plugin_params, where=param.name)


def resolve_trial(
    base: dict[str, Any],
    values: dict[str, Any],
    registry: Any,
    settings: list[str],
    plugin_params: dict,
    where: str | None = None,
):
    """The resolved config of one trial: the base, the trial's values, then the command line's flags."""
    tree = apply_values(base, values)
    try:
        config, cli = build_config(tree, settings=settings, plugin_params=plugin_params)
        return resolve(config, registry, cli)
    except HarnessError as exc:
        if where is None:
            raise
        raise type(exc)(f"tune.space {where!r}: {exc}") from None
