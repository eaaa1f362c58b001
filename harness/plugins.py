"""The plugin manager: built-ins and entry points, loaded the same way and validated at load.

Built-ins are plain modules registered through the same hooks a third party uses (the datasette way):
the only place they are named is DEFAULT_PLUGINS. A plugin that fails to import, or returns something
that is not a valid spec, is reported by name as a problem; every other plugin still loads.

Entry-point plugins are code from other packages, imported at load: HARNESS_DISABLE_PLUGIN_AUTOLOAD=1
loads none of them, and HARNESS_PLUGINS=a,b only the ones named (the others are never imported).
Built-ins always load; `-p no:NAME` disables any plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import ValidationError

from harness import hookspecs
from harness.errors import PluginError
from harness.parsing import did_you_mean
from harness.specs import SPEC_KINDS, PluginSpec

ENTRY_POINT_GROUP = "harness"
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "HARNESS_PLUGINS"

DEFAULT_PLUGINS = (
    "plugins.architectures.unet",
    "plugins.architectures.unetpp",
    "plugins.architectures.attunet",
    "plugins.architectures.segnet",
    "plugins.architectures.deeplab",
    "plugins.architectures.r2unet",
    "plugins.architectures.maskrcnn",
    "plugins.architectures.presets",
    "plugins.blocks.conv",
    "plugins.blocks.residual",
    "plugins.blocks.se",
    "plugins.blocks.dilated",
    "plugins.blocks.inception",
    "plugins.blocks.gc",
    "plugins.blocks.aspp",
    "plugins.blocks.rdam",
    "plugins.blocks.mhsa",
    "plugins.blocks.transformer",
    "plugins.blocks.cba",
    "plugins.blocks.mlp",
    "plugins.losses.ce",
    "plugins.losses.dice",
    "plugins.losses.focal",
    "plugins.losses.tversky",
    "plugins.losses.lovasz",
    "plugins.losses.boundary",
    "plugins.losses.combo",
    "plugins.balancers.none",
    "plugins.balancers.classweights",
    "plugins.balancers.oversample",
    "plugins.balancers.copypaste",
    "plugins.datasets.synthetic",
    "plugins.loggers.csv",
    "plugins.loggers.tensorboard",
    "plugins.loggers.mlflow",
)

# kind -> the hook returning that kind's specs
SPEC_HOOKS = {
    "architecture": "harness_architectures",
    "block": "harness_blocks",
    "loss": "harness_losses",
    "balancer": "harness_balancers",
    "dataset": "harness_datasets",
}


@dataclass(frozen=True)
class Provided:
    """A spec and the plugin that provided it."""

    spec: PluginSpec
    provider: str
    builtin: bool


@dataclass
class Registry:
    """Every loaded spec by kind and name, the problems met while loading, and the pluggy manager."""

    manager: pluggy.PluginManager
    specs: dict[str, dict[str, Provided]] = field(default_factory=lambda: {k: {} for k in SPEC_HOOKS})
    duplicates: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def get(self, kind: str, name: str) -> PluginSpec:
        """The spec of `kind` named `name`, or PluginError with a did-you-mean and the choices."""
        if (kind, name) in self.duplicates:
            providers = " and ".join(self.duplicates[(kind, name)])
            raise PluginError(
                f"{kind} '{name}' is provided by both {providers}; disable one with -p no:PLUGIN"
            )
        entries = self.specs[kind]
        if name not in entries:
            choices = ", ".join(sorted(entries)) or "none loaded"
            raise PluginError(f"unknown {kind} {name!r}{did_you_mean(name, entries)} (choices: {choices})")
        return entries[name].spec

    def all(self, kind: str | None = None) -> list[Provided]:
        """Every loaded spec (of one kind, or all kinds), sorted by kind then name."""
        kinds = [kind] if kind else list(SPEC_HOOKS)
        return [self.specs[k][n] for k in kinds for n in sorted(self.specs[k])]

    @property
    def hook(self) -> Any:
        """The lifecycle hooks, called as `registry.hook.harness_run_start(run=...)`."""
        return self.manager.hook


def _register(manager: pluggy.PluginManager, module: Any, name: str, problems: list[str]) -> None:
    try:
        manager.register(module, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        problems.append(f"plugin '{name}' has a bad hook: {exc}")


def _describe(exc: BaseException) -> str:
    """`Type: message` on one line: each problem is printed as one warning line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _load_builtins(manager: pluggy.PluginManager, problems: list[str]) -> None:
    for module_name in DEFAULT_PLUGINS:
        if manager.is_blocked(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken built-in must not hide the others
            problems.append(f"plugin '{module_name}' failed to import: {_describe(exc)}")
            continue
        _register(manager, module, module_name, problems)


def _load_entry_points(
    manager: pluggy.PluginManager, problems: list[str], allowed: frozenset[str] | None
) -> None:
    seen = set()
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.add(entry.name)
        # Checked before entry.load(): a plugin left off the allowlist never runs a line of its code.
        if allowed is not None and entry.name not in allowed:
            continue
        if manager.is_blocked(entry.name) or manager.get_plugin(entry.name) is not None:
            continue
        dist = entry.dist.name if entry.dist else "?"
        try:
            module = entry.load()
        except (Exception, SystemExit) as exc:  # report by name and skip; every other plugin still loads
            problems.append(f"plugin '{entry.name}' (from {dist}) failed to import: {_describe(exc)}")
            continue
        _register(manager, module, entry.name, problems)
    builtin = {m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS} | set(DEFAULT_PLUGINS)
    for name in sorted((allowed or frozenset()) - seen - builtin):  # built-ins load anyway
        installed = ", ".join(sorted(seen)) or "none"
        problems.append(
            f"{ALLOW_ENV} names '{name}', which no installed plugin provides{did_you_mean(name, seen)} "
            f"(installed: {installed})"
        )


def parse_allowlist(text: str | None) -> frozenset[str] | None:
    """The entry-point plugin names of HARNESS_PLUGINS (`a,b`); None (no allowlist) when it names none.

    To load no entry-point plugin at all, HARNESS_DISABLE_PLUGIN_AUTOLOAD=1 says so explicitly.
    """
    names = frozenset(name.strip() for name in (text or "").split(",") if name.strip())
    return names or None


def _coerce_spec(kind: str, item: Any) -> PluginSpec:
    spec_class = SPEC_KINDS[kind]
    if isinstance(item, spec_class):
        return item
    if isinstance(item, dict):
        return spec_class.model_validate(item)
    raise TypeError(f"expected {spec_class.__name__}, got {type(item).__name__}")


def _collect(registry: Registry, builtin_names: set[str]) -> None:
    for kind, hook_name in SPEC_HOOKS.items():
        for impl in getattr(registry.manager.hook, hook_name).get_hookimpls():
            provider = impl.plugin_name
            try:
                items = impl.function() or []
                specs = [_coerce_spec(kind, item) for item in items]
            except (ValidationError, TypeError, ValueError) as exc:
                first = str(exc).strip().splitlines()
                reason = " ".join(line.strip() for line in first[:3])
                registry.problems.append(f"plugin '{provider}' returned a bad {kind} spec: {reason}")
                continue
            except Exception as exc:
                registry.problems.append(
                    f"plugin '{provider}' failed in {hook_name}: {type(exc).__name__}: {exc}"
                )
                continue
            for spec in specs:
                _add(registry, kind, spec, provider, provider in builtin_names)


def _add(registry: Registry, kind: str, spec: PluginSpec, provider: str, builtin: bool) -> None:
    existing = registry.specs[kind].get(spec.name)
    if existing is None and (kind, spec.name) not in registry.duplicates:
        registry.specs[kind][spec.name] = Provided(spec, provider, builtin)
        return
    providers = registry.duplicates.setdefault((kind, spec.name), [])
    if existing is not None:
        providers.append(existing.provider)
        del registry.specs[kind][spec.name]
    providers.append(provider)
    registry.problems.append(f"duplicate {kind} name '{spec.name}' from {' and '.join(providers)}")


def load_plugins(
    blocked: Iterable[str] = (), autoload: bool | None = None, allowed: Iterable[str] | None = None
) -> Registry:
    """Load built-ins and (unless disabled) entry-point plugins; validate every spec.

    `blocked` are plugin names from `-p no:NAME` (a built-in's module name or its last part, or an
    entry point's name). `autoload=None` reads HARNESS_DISABLE_PLUGIN_AUTOLOAD (any non-empty value
    disables, as pytest's does). `allowed`: the only entry-point plugins to load; None reads
    HARNESS_PLUGINS (unset: all of them). Built-ins are not entry points: they always load.
    Each call returns a new, independent registry; nothing global remembers it, so pass it on
    (`spec.parse_params(..., registry=registry)`) to whatever resolves plugin names.
    """
    manager = pluggy.PluginManager("harness")
    manager.add_hookspecs(hookspecs)
    for name in blocked:
        manager.set_blocked(name)
        short = [m for m in DEFAULT_PLUGINS if m.rsplit(".", 1)[-1] == name]
        for module_name in short:
            manager.set_blocked(module_name)
    problems: list[str] = []
    _load_builtins(manager, problems)
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    if autoload:
        allow = parse_allowlist(os.environ.get(ALLOW_ENV)) if allowed is None else frozenset(allowed)
        _load_entry_points(manager, problems, allow)
    registry = Registry(manager=manager, problems=problems)
    _collect(registry, set(DEFAULT_PLUGINS))
    return registry


def parse_blocked(options: Iterable[str]) -> list[str]:
    """Names from `-p no:NAME` options; anything else is a PluginError."""
    names = []
    for option in options:
        if not option.startswith("no:") or not option[3:]:
            raise PluginError(f"-p expects no:NAME to disable a plugin, got '{option}'")
        names.append(option[3:])
    return names


@dataclass
class LookupRecord:
    """A view of a registry that notes every spec it hands out: the plugins a config resolved through
    (its architecture, the blocks its params name, a combo's parts), whose revisions enter the hash."""

    registry: Registry
    seen: dict[tuple[str, str], PluginSpec] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> PluginSpec:
        spec = self.registry.get(kind, name)
        self.seen[(kind, name)] = spec
        return spec

    def __getattr__(self, attr: str) -> Any:  # specs, all, hook...: the registry's own
        return getattr(self.registry, attr)

    def revisions(self) -> dict[str, int]:
        """`kind:name` -> revision for each plugin seen at a revision above 0."""
        return {
            f"{kind}:{name}": spec.revision
            for (kind, name), spec in sorted(self.seen.items())
            if spec.revision
        }
