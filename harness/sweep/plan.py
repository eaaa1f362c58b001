"""Planning a sweep: the list of run configurations (a grid or a sweep file's [[runs]]) times the seeds
(times the folds, with data.folds).

A sweep is planned in full before anything trains, so a typo in any of its configurations fails with
one line and writes nothing. What "already done" means is decided here too (`PlannedRun.key`,
`done_keys`): a configuration whose (config hash, seed, fold) already has a finished run in the store is
skipped, so a killed sweep rerun with the same arguments trains only what is missing. Running the plan
is harness.sweep.local (and harness.sweep.ray_executor).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import SEED_LIMIT, Resolved, RunConfig, build_config, resolve
from harness.data.dataset import load_npz
from harness.errors import ConfigError, HarnessError
from harness.store import RunStore, StoreNotInitialised

SEEDS_MAX = 100


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: a fully resolved configuration (plugin params filled in) and its seed."""

    resolved: Resolved

    @property
    def config(self) -> RunConfig:
        return self.resolved.config

    @property
    def key(self) -> tuple[str, int, int | None]:
        """What "already done" means: the same experiment (config hash, seed and fold excluded) with the
        same seed and fold."""
        return self.resolved.hash, self.config.seed, self.config.data.fold

    @property
    def label(self) -> str:
        cfg = self.config
        fold = "" if cfg.data.fold is None else f" · fold {cfg.data.fold}"
        return f"{cfg.arch.name} · {cfg.loss.name} · {cfg.balancer.name} · seed {cfg.seed}{fold}"


def split_list(text: str | None, flag: str) -> list[str] | None:
    """`a,b,c` -> ['a', 'b', 'c'] (order kept, duplicates dropped); None stays None."""
    if text is None:
        return None
    items = list(dict.fromkeys(part.strip() for part in text.split(",")))
    if not items or any(not item for item in items):
        raise ConfigError(f"{flag} expects a comma-separated list of names, got '{text}'")
    return items


def seed_list(seeds: int | None, base_seed: int) -> list[int]:
    """`--seeds N`: N consecutive seeds from the configured seed."""
    if seeds is None:
        return [base_seed]
    if not 1 <= seeds <= SEEDS_MAX:
        raise ConfigError(f"--seeds must be between 1 and {SEEDS_MAX}, got {seeds}")
    if base_seed + seeds > SEED_LIMIT:
        raise ConfigError(
            f"--seeds {seeds} from seed {base_seed} would go past the largest seed {SEED_LIMIT - 1}; "
            "lower the seed"
        )
    return [base_seed + i for i in range(seeds)]


def _with_choice(tree: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    """`tree` with the plugin of `section` set to `name`; params given in the file for another plugin go."""
    tree = dict(tree)
    node = tree.get(section) if isinstance(tree.get(section), dict) else {}
    tree[section] = dict(node) if node.get("name") == name else {"name": name}
    return tree


def plan(
    base: dict[str, Any],
    registry: Any,
    *,
    archs: Sequence[str] | None = None,
    losses: Sequence[str] | None = None,
    balancers: Sequence[str] | None = None,
    seeds: int | None = None,
    settings: Sequence[str] = (),
    plugin_params: dict[str, list[str]] | None = None,
) -> list[PlannedRun]:
    """Every run of the sweep, resolved and checked against the plugins (bad input raises before any run).

    `base` is a RunConfig-shaped dict. If it has a `runs` list (a sweep file), each entry overlays the
    rest of the file and is one configuration; otherwise the grid archs x losses x balancers (each
    defaulting to the base's choice) is expanded. `settings` (`--set`) and `plugin_params` apply to
    every configuration; every configuration is repeated for each seed.
    """
    base = dict(base)
    listed = base.pop("runs", None)
    if listed is not None:
        if archs or losses or balancers:
            raise ConfigError(
                "give either --arch/--loss/--balancer lists or a [[runs]] list in the file, not both"
            )
        if not isinstance(listed, list) or not listed or not all(isinstance(r, dict) for r in listed):
            raise ConfigError("the sweep file's `runs` must be a non-empty list of tables ([[runs]])")
        trees = [_merge(base, entry) for entry in listed]
    else:
        trees = []
        for arch, loss, balancer in itertools.product(archs or [None], losses or [None], balancers or [None]):
            tree = base
            for section, name in (("arch", arch), ("loss", loss), ("balancer", balancer)):
                if name is not None:
                    tree = _with_choice(tree, section, name)
            trees.append(tree)
    planned: list[PlannedRun] = []
    seen: set[tuple[str, int, int | None]] = set()
    for number, tree in enumerate(trees, start=1):
        config, cli = build_config(tree, settings=list(settings), plugin_params=plugin_params)
        try:
            resolved = resolve(config, registry, cli)
        except HarnessError as exc:
            where = f"run {number} of the sweep" if listed is not None else _grid_name(config)
            raise type(exc)(f"{where}: {exc}") from None
        for seed, fold in itertools.product(seed_list(seeds, config.seed), fold_list(config)):
            # Only seed and fold change: plugins and params are already checked, the hash excludes both.
            item = PlannedRun(with_seed_fold(resolved, seed, fold))
            if item.key not in seen:  # the same configuration listed twice runs once
                seen.add(item.key)
                planned.append(item)
    _check_data_files(planned)
    _check_folds(planned)
    return planned


def fold_list(config: RunConfig) -> list[int | None]:
    """The folds to run: data.fold if given, every fold 0..K-1 with data.folds alone, else [None]."""
    data = config.data
    if data.folds is None or data.fold is not None:
        return [data.fold]
    return list(range(data.folds))


def with_seed_fold(resolved: Resolved, seed: int, fold: int | None) -> Resolved:
    """`resolved` with another seed and fold (the config hash, which excludes both, stays valid)."""
    data = resolved.config.data.model_copy(update={"fold": fold})
    return resolved.model_copy(
        update={"config": resolved.config.model_copy(update={"seed": seed, "data": data})}
    )


def _check_data_files(planned: list[PlannedRun]) -> None:
    """Load every data file the plan names once, so a bad file is one line before anything runs (and
    not the same failure recorded for every run)."""
    checked: set[tuple[str, int]] = set()
    for item in planned:
        data = item.resolved.config.data
        if item.resolved.dataset is None and (data.source, data.num_classes) not in checked:
            load_npz(data.source, num_classes=data.num_classes)
            checked.add((data.source, data.num_classes))


def _check_folds(planned: list[PlannedRun]) -> None:
    """Partition the data of every fold-trained configuration once, so folds that cannot be made (more
    folds than images, than rare-class images or than groups) are one line before anything runs."""
    from harness.data.folds import run_split
    from harness.training.prepare import load_data

    checked: set[tuple] = set()
    for item in planned:
        data = item.config.data
        key = (data.model_dump_json(exclude={"fold"}), item.config.seed)
        if data.folds is None or key in checked:
            continue
        checked.add(key)
        run_split(load_data(item.resolved), data, item.config.seed)


def _grid_name(config: RunConfig) -> str:
    return f"{config.arch.name}/{config.loss.name}/{config.balancer.name}"


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` on top of `base`, recursively for tables; a different plugin name drops the base's params."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if "name" in value and old.get("name") not in (None, value["name"]):
                old = {}
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def done_keys(store_path: Path) -> set[tuple[str, int, int | None]]:
    """(config hash, seed, fold) of every finished run in the store; empty when there is no store yet."""
    if not store_path.exists():
        return set()
    try:
        with RunStore(store_path, create=False) as store:
            return store.finished_hashes()
    except StoreNotInitialised:  # another sweep is creating it at this moment: nothing is finished yet
        return set()


def changed_params(spec: Any, params: Any, registry: Any) -> str:
    """`k=v` for each parameter that differs from the plugin's default (how variants tell apart)."""
    defaults = spec.parse_params(registry=registry).model_dump(mode="json")
    chosen = params.model_dump(mode="json")
    return ", ".join(f"{k}={v}" for k, v in chosen.items() if defaults.get(k) != v)


def describe_plan(
    runs: Iterable[PlannedRun], done: set[tuple[str, int, int | None]], registry: Any
) -> list[dict[str, Any]]:
    """One dict per planned run for `--dry-run`: what would run and what would be skipped."""
    return [
        {
            "arch": p.config.arch.name,
            "loss": p.config.loss.name,
            "balancer": p.config.balancer.name,
            "seed": p.config.seed,
            "fold": p.config.data.fold,
            "config": p.resolved.hash[:8],
            "arch_params": changed_params(p.resolved.arch, p.resolved.arch_params, registry),
            "epochs": p.config.train.epochs,
            "max_minutes": p.config.train.max_minutes,
            "action": "skip (finished)" if p.key in done else "run",
        }
        for p in runs
    ]
