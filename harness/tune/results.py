"""What a study leaves: its best trial's config as a ready `--config` TOML file, Optuna's parameter
importances (a table's rows and a PNG), and the ranked trials.

The best config is the resolved config its run recorded in the store, so `harness run --config FILE`
resolves to the same config hash. TOML has no null: a setting that is None is left out of the file,
which gives it its default; `write_best_config` checks the hash of what it wrote.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna

from harness.config import build_config, read_toml, resolve
from harness.store import RunStore

HEADER = (
    "# The best trial of harness tune study {study!r}: trial {number}, {metric} val mIoU {value:.4f}, "
    "run {run}.\n"
)


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Every trial, complete ones best first, then pruned (by their last reported value), then the rest."""

    def key(t: optuna.trial.FrozenTrial):
        if t.state == optuna.trial.TrialState.COMPLETE:
            return (0, -t.value)
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else -math.inf
        return (1 if t.state == optuna.trial.TrialState.PRUNED else 2, -last)

    return sorted(study.get_trials(deepcopy=False), key=key)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return max(complete, key=lambda t: t.value) if complete else None


def toml_value(value: Any) -> str:
    """A scalar or a list as TOML (json's strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def to_toml(tree: dict[str, Any], prefix: str = "") -> str:
    """A nested dict as TOML: scalars first, then one [table] per sub-dict; None values left out."""
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}"
        for k, v in tree.items()
        if v is not None and not isinstance(v, dict)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tree.items():
        if isinstance(value, dict):
            name = f"{prefix}.{json.dumps(key)}" if prefix else json.dumps(key)
            text += f"\n[{name}]\n" + to_toml(value, name)
    return text


def best_config(
    study: optuna.Study, store_path: Path
) -> tuple[optuna.trial.FrozenTrial, dict[str, Any]] | None:
    """The best complete trial and the config its run recorded (None when no trial completed)."""
    trial = best_trial(study)
    if trial is None:
        return None
    with RunStore(store_path, create=False) as store:
        config = store.get_run(trial.user_attrs["run_id"])["config"]
    config.pop("log", None)  # logging is not part of a recipe (nor of its hash)
    config.get("train", {}).pop("device", None)  # where it runs is the user's choice
    return trial, config


def write_best_config(
    study: optuna.Study, store_path: Path, path: Path, registry: Any, metric: str
) -> tuple[optuna.trial.FrozenTrial, bool] | None:
    """Write the best trial's config to `path`; returns (trial, whether the file resolves to its hash)."""
    found = best_config(study, store_path)
    if found is None:
        return None
    trial, config = found
    header = HEADER.format(
        study=study.study_name,
        number=trial.number,
        metric=metric,
        value=trial.value,
        run=trial.user_attrs["run_id"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "# Use it as: harness run --config " + path.name + "\n\n" + to_toml(config))
    rebuilt, cli = build_config(read_toml(path))
    return trial, resolve(rebuilt, registry, cli).hash == trial.user_attrs.get("config_hash")


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA in Optuna 5) over the complete
    trials; None with fewer than two."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not complete[0].params:
        return None
    try:
        with warnings.catch_warnings():  # "importances will be equal" when the trials tie: the table says so
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # e.g. every complete trial has the same parameters
        return None


def importance_png(values: dict[str, float], path: Path, title: str) -> None:
    """A horizontal bar per parameter, most important on top."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.2))
    bars = ax.barh(names, [values[n] for n in names], color="#4c72b0")
    ax.bar_label(bars, fmt="%.3f", padding=3)  # the table's figures, on the bars
    ax.set_xlim(0, max(values.values(), default=0) * 1.15 or 1)
    ax.set_xlabel("importance (Optuna; shares summing to 1)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
