"""How do two runs or configurations differ? Their resolved configs, flattened and compared key by key.

Each side is resolved exactly as ``harness compare`` resolves it (``resolve_side``): a run id, a unique run
id prefix, or a config hash prefix (the finished runs of that configuration, newest per seed). A config
is flattened to dotted keys (``arch.params.bottleneck``); lists stay whole values. Only keys whose values
differ are kept, a key one side lacks shows as ``–``, and the record's ``dataset_id`` (which rows the run
trained on) is compared with the settings. The `log` section is left out, as the config hash leaves it
out: where a run's metrics were logged is not part of what was trained. On a config side with several
runs, a key whose value is not the same in all of them (the seed, the device) holds every value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.compare import Side, key_order, resolve_side
from harness.store import RunStore

MISSING = "–"
RECORD_FIELDS = ("dataset_id",)  # fields of the run record, outside its config, that a diff shows too
NOT_COMPARED = ("log",)  # config sections that do not change what a run is (the hash leaves them out too)


class _Absent:
    """The value of a key one side does not have (shown as ``–``, ``null`` with ``"missing"`` in JSON)."""

    def __repr__(self) -> str:
        return MISSING


ABSENT = _Absent()


@dataclass(frozen=True)
class Varies:
    """A config side's runs disagree on this key: every distinct value, in run order."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Difference:
    """One key whose value differs; ``a`` and ``b`` are values, ``ABSENT`` or ``Varies``."""

    key: str
    a: Any
    b: Any


def flatten(config: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"arch": {"params": {"depth": 4}}}`` -> ``{"arch.params.depth": 4}``; lists and scalars are leaves,
    an empty mapping adds no key (so ``params = {}`` and no params read the same)."""
    flat: dict[str, Any] = {}
    for key, value in (config or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _same(x: Any, y: Any) -> bool:
    """Equal as JSON values: 1 and 1.0 agree, True and 1 do not (a bool setting is not a number)."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    return x == y


def merge(flats: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's settings from the flattened settings of its runs: a key's value where all runs agree,
    ``Varies`` where they do not (a run lacking the key counts as ``ABSENT``)."""
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k not in keys)
    merged: dict[str, Any] = {}
    for key in keys:
        distinct: list[Any] = []
        for flat in flats:
            value = flat.get(key, ABSENT)
            if not any(_same(value, seen) for seen in distinct):
                distinct.append(value)
        merged[key] = distinct[0] if len(distinct) == 1 else Varies(tuple(distinct))
    return merged


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, Varies) and isinstance(y, Varies):
        return len(x.values) == len(y.values) and all(any(_same(u, v) for v in y.values) for u in x.values)
    if isinstance(x, Varies | _Absent) or isinstance(y, Varies | _Absent):
        return x is y
    return _same(x, y)


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """The keys whose values differ, A's keys in order, then the keys only B has."""
    keys = list(a) + [k for k in b if k not in a]
    out = []
    for key in keys:
        x, y = a.get(key, ABSENT), b.get(key, ABSENT)
        if not _equal(x, y):
            out.append(Difference(key, x, y))
    return out


def side_settings(side: Side) -> dict[str, Any]:
    """The flattened resolved config of a side's runs (merged across a config's runs) and its record
    fields (``dataset_id``)."""
    runs = [side.runs[k] for k in sorted(side.runs, key=key_order)]  # a varying value lists in seed order
    flats = []
    for run in runs:
        config = {k: v for k, v in (run.get("config") or {}).items() if k not in NOT_COMPARED}
        flat = flatten(config)
        flat.update({f: run[f] for f in RECORD_FIELDS if run.get(f) is not None})
        flats.append(flat)
    settings = merge(flats)
    config_keys = [k for k in settings if k not in RECORD_FIELDS]  # the record's fields come last
    return {k: settings[k] for k in [*config_keys, *(f for f in RECORD_FIELDS if f in settings)]}


def show(value: Any) -> str:
    """A value as the table shows it: strings bare, ``–`` for a missing key, other values as JSON."""
    if isinstance(value, Varies):
        return ", ".join(show(v) for v in value.values)
    if value is ABSENT:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def as_json(value: Any) -> Any:
    """A value for ``--format json``: itself, ``{"missing": true}``, or ``{"varies": [...]}``."""
    if isinstance(value, Varies):
        return {"varies": [as_json(v) for v in value.values]}
    if value is ABSENT:
        return {"missing": True}
    return value


def describe(side: Side) -> dict[str, Any]:
    """What a side is: its kind and key, the config hash, its run ids and their seeds."""
    runs = [(key, side.runs[key]) for key in sorted(side.runs, key=key_order)]
    return {
        "kind": side.kind,
        "key": side.key,
        "config_hash": next(iter(side.runs.values())).get("config_hash"),
        "runs": [run["run_id"] for _, run in runs],
        "seeds": [seed for (seed, _), _ in runs],
    }


@dataclass(frozen=True)
class ConfigDiff:
    """The outcome of ``diff``: what each side is and the keys whose values differ."""

    a: dict[str, Any]
    b: dict[str, Any]
    differences: list[Difference]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`harness diff --format json`)."""
        return {
            "a": self.a,
            "b": self.b,
            "same": not self.differences,
            "differences": [{"key": d.key, "a": as_json(d.a), "b": as_json(d.b)} for d in self.differences],
        }


def label(side: dict[str, Any]) -> str:
    """``run ID (config HASH, seed S)`` or ``config HASH (N finished runs, seeds ...)``."""
    seeds = ", ".join(str(s) for s in side["seeds"])
    config = str(side["config_hash"] or MISSING)[:8]
    if side["kind"] == "run":
        return f"run {side['key']} (config {config}, seed {seeds})"
    count = len(side["runs"])
    return f"config {config} ({count} finished run{'s' * (count != 1)}, seed{'s' * (count != 1)} {seeds})"


def diff(store: RunStore, a: str, b: str) -> ConfigDiff:
    """The settings that differ between sides ``a`` and ``b`` of ``store`` (ids, prefixes, config hashes)."""
    side_a, side_b = resolve_side(store, a), resolve_side(store, b)
    found = differences(side_settings(side_a), side_settings(side_b))
    return ConfigDiff(describe(side_a), describe(side_b), found)


def diff_store(path: str | Path, a: str, b: str) -> ConfigDiff:
    """``diff`` on the store file at ``path`` (which must exist)."""
    with RunStore(path, create=False) as store:
        return diff(store, a, b)
