"""What a row trained and on what data, as short labels: the one place every format takes them from.

A variant label names each plugin with the settings that differ from that plugin's defaults —
`unet[bottleneck=se+gc]`, `combo[focal=1, dice=1]`, `oversample+copypaste` — joined by " · "; the loss and
the balancer are left out when they are the run defaults (`ce`, `none`) with their default settings.
The defaults come from the plugins' own params models (the registry), so a field added to a plugin later
does not show up as a difference. Block parameters (`bottleneck_params`, combo's per-part `params`) are
compared with the defaults of the blocks the run chose, not with an empty dict: `bottleneck=se+gc` alone
labels as just that. A plugin the registry does not know (uninstalled since) labels as its name.

A data label is the dataset's name (a registered name, or the file name of an npz) and the first
characters of the run's content hash (`dataset_id`), so two files of one name never look alike; a record
without a hash shows the name alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

SECTIONS = (("arch", "architecture"), ("loss", "loss"), ("balancer", "balancer"))
JOIN = " · "
DATA_HASH_CHARS = 6
# Path segments that only group parameters: `bottleneck_params.gc.reduction` reads `bottleneck.gc.reduction`.
_SUFFIXES = ("_params", "_block", "_fusion")
# A dict-valued setting whose keys are themselves the names that matter (combo's `parts`): shown unprefixed.
_NAMED_PARTS = "parts"
_HEX = re.compile(r"^[0-9a-f]{6,}$")


@dataclass(frozen=True)
class Variant:
    """A row's label and, per plugin, the settings that differ from its defaults (None: plugin unknown)."""

    label: str
    arch_params: dict[str, Any] | None
    loss_params: dict[str, Any] | None
    balancer_params: dict[str, Any] | None


def data_label(source: str | None, dataset_id: str | None) -> str:
    """`synthetic@986ec9`, `ai4mars-an2dl.npz@3f2a1c`; the name alone when the record has no content hash."""
    digest = str(dataset_id or "")
    if not source:  # a bare record: its dataset id is all there is
        return digest[:DATA_HASH_CHARS] if _HEX.match(digest) else digest or "–"
    name = _data_name(source)
    return f"{name}@{digest[:DATA_HASH_CHARS]}" if _HEX.match(digest) else name


def _data_name(source: str | None) -> str:
    if not source:
        return "–"
    text = str(source)
    return PurePath(text).name if ("/" in text or "\\" in text or text.endswith(".npz")) else text


def data_matches(query: str, source: str | None, dataset_id: str | None) -> bool:
    """Whether `--data QUERY` picks a run: its name, its file (path or file name) or a content-hash prefix,
    or its data label as the leaderboard shows it."""
    query = query.strip()
    if not query:
        return False
    text = str(source or "")
    if query in (text, _data_name(text), data_label(source, dataset_id)):
        return True
    if PurePath(query).name == _data_name(text) and (query.endswith(".npz") or "/" in query):
        return True
    digest = str(dataset_id or "")
    return len(query) >= 4 and _HEX.match(digest) is not None and digest.startswith(query.lower())


def format_value(value: Any) -> str:
    """A setting as a label shows it: 1.0 -> 1, 0.25 -> 0.25, True -> true, None -> none, [3, 4] -> [3,4]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def plugin_label(name: str, changed: dict[str, Any] | None) -> str:
    """`name[k=v, ...]` for the changed settings, or the bare name."""
    if not changed:
        return name
    return f"{name}[{', '.join(f'{k}={format_value(v)}' for k, v in changed.items())}]"


def _is_params_key(key: str) -> bool:
    return key == "params" or key.endswith("_params")


def _shown(path: list[str]) -> str:
    out = []
    for part in path:
        if part == "params":
            continue
        for suffix in _SUFFIXES:
            if part.endswith(suffix) and len(part) > len(suffix):
                part = part[: -len(suffix)]
                break
        out.append(part)
    return ".".join(out)


def _flat_diff(value: Any, default: Any, path: list[str], out: dict[str, Any]) -> None:
    if isinstance(value, dict) and isinstance(default, dict):
        for key, inner in value.items():
            _flat_diff(inner, default.get(key, _ABSENT), [*path, str(key)], out)
        return
    if value != default:
        out[_shown(path)] = value


_ABSENT = object()


def changed_settings(params: dict[str, Any], defaults: dict[str, Any], chosen: dict[str, Any]) -> dict:
    """The settings of `params` that differ: plain fields against `defaults` (the plugin's own), parameter
    groups (`*_params`, `params`) against `chosen` (the defaults given the run's choices of blocks/parts)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if _is_params_key(key) and isinstance(value, dict):
            _flat_diff(value, chosen.get(key, {}), [key], out)
        elif key == _NAMED_PARTS and isinstance(value, dict) and value != defaults.get(key):
            out.update({str(part): weight for part, weight in value.items()})
        elif isinstance(value, dict) and isinstance(defaults.get(key), dict):
            _flat_diff(value, defaults[key], [key], out)
        elif value != defaults.get(key, _ABSENT):
            out[_shown([key])] = value
    return out


class Labeller:
    """Labels rows against a registry's plugin defaults (parsed once per plugin and choice of parts).

    `run_defaults` are the plugins a run gets when it names none (`harness.config.DEFAULT_CHOICES`, passed
    in: the leaderboard may not import the config layer, which imports the augmentation vocabulary); a loss
    or balancer that is one of them, with default settings, is left out of the label."""

    def __init__(self, registry: Any = None, run_defaults: dict[str, str] | None = None):
        self.registry = registry
        self.run_defaults = dict(run_defaults or {})
        self._cache: dict[tuple, dict[str, Any] | None] = {}

    def _parse(self, kind: str, name: str, values: dict[str, Any]) -> dict[str, Any] | None:
        key = (kind, name, repr(sorted(values.items())))
        if key not in self._cache:
            self._cache[key] = self._parsed(kind, name, values)
        return self._cache[key]

    def _parsed(self, kind: str, name: str, values: dict[str, Any]) -> dict[str, Any] | None:
        if self.registry is None:
            return None
        try:
            if kind == "balancer" and "+" in name:
                from harness.compose import compose_balancers

                _, parsed = compose_balancers(self.registry, name, values, None)
            else:
                spec = self.registry.get(kind, name)
                parsed = spec.parse_params(values, registry=self.registry)
        except Exception:  # an uninstalled plugin, or params a newer version no longer takes: name only
            return None
        return parsed.model_dump(mode="json")

    def changed(self, kind: str, name: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """The settings of one plugin that differ from its defaults; None when the registry lacks it."""
        params = params or {}
        defaults = self._parse(kind, name, {})
        if defaults is None:
            return None
        # The run's own choices (blocks, parts) decide what their parameter groups default to.
        choices = {
            k: v for k, v in params.items() if not _is_params_key(k) and k in defaults and v != defaults[k]
        }
        chosen = (self._parse(kind, name, choices) if choices else defaults) or defaults
        return changed_settings(params, defaults, chosen)

    def variant(self, config: dict | None, names: dict[str, str | None] | None = None) -> Variant:
        """The label of a run's resolved `config`; `names` (the record's arch, loss and balancer columns)
        name the plugins when given, the config's own names otherwise."""
        config = config or {}
        names = names or {}
        labels, changed = [], {}
        for section, kind in SECTIONS:
            node = config.get(section) if isinstance(config.get(section), dict) else {}
            name = names.get(section) or node.get("name")
            if not name:
                changed[section] = None
                continue
            diff = self.changed(kind, str(name), node.get("params"))
            changed[section] = diff
            if section == "arch" or diff or name != self.run_defaults.get(section):
                labels.append(plugin_label(str(name), diff))
        return Variant(
            label=JOIN.join(labels) or "–",
            arch_params=changed["arch"],
            loss_params=changed["loss"],
            balancer_params=changed["balancer"],
        )
