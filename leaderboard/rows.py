"""Leaderboard rows: one per run (`leaderboard_rows`), one per configuration (`group_rows`: the runs of one
config hash on one dataset across seeds, as mean, std and n), and the best configuration of each
architecture (`best_per_arch`). Every row carries its variant label, its data label, its status and the
first line of its error; ranks count within a dataset, since scores on different data do not compare.
"""

from __future__ import annotations

import math
from typing import Any

from leaderboard.labels import Labeller, data_label

METRICS = {"an2dl": "miou_an2dl", "fg": "miou_fg"}
CONFIG_CHARS = 8  # a config hash prefix long enough to be unique in any real store, short enough to type
# The ignored label has no meaningful IoU; it is dropped from per-class columns even if a metrics dict has it.
IGNORED_CLASS = "background"
VARIANT_FIELDS = ("label", "arch_params", "loss_params", "balancer_params")


def num(value: Any) -> Any:
    """None for missing or non-finite numbers, so every output treats NaN and None alike."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def first_line(text: Any) -> str | None:
    """The first non-empty line of an error message (the rest is for the run's log)."""
    if not text:
        return None
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else None


def _row(run: dict, metric_key: str, labeller: Labeller) -> dict:
    metrics = run.get("metrics") or {}
    iou = {str(name): num(value) for name, value in (metrics.get("iou") or {}).items()}
    params = run.get("params")
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    names = {section: run.get(section) for section in ("arch", "loss", "balancer")}
    variant = labeller.variant(config, names)
    source = (config.get("data") or {}).get("source") if isinstance(config.get("data"), dict) else None
    return {
        "rank": None,
        "run_id": run.get("run_id"),
        "config": (run.get("config_hash") or "")[:CONFIG_CHARS] or None,
        "config_hash": run.get("config_hash"),
        "arch": run.get("arch"),
        "loss": run.get("loss"),
        "balancer": run.get("balancer"),
        "label": variant.label,
        "arch_params": variant.arch_params,
        "loss_params": variant.loss_params,
        "balancer_params": variant.balancer_params,
        "data": data_label(source, run.get("dataset_id")),
        "dataset_id": run.get("dataset_id"),
        "seed": run.get("seed"),
        "fold": run.get("fold"),
        "status": run.get("status"),
        "error": first_line(run.get("error")),
        "miou": num(metrics.get(metric_key)),
        "miou_an2dl": num(metrics.get("miou_an2dl")),
        "miou_fg": num(metrics.get("miou_fg")),
        "iou": iou,
        "params": None if params is None else int(params),
        "gflops": num(run.get("gflops")),
        "wall_time": num(run.get("wall_time")),
        "train_img_s": num(run.get("train_img_s")),
        "epochs": run.get("epochs"),
        "device": run.get("device"),
        "created": run.get("created"),
    }


def _rank_within_data(rows: list[dict]) -> list[dict]:
    """Best first, ranks counted per dataset; datasets in order of their best row."""
    order: dict[str, int] = {}
    for row in rows:
        order.setdefault(row["data"], len(order))
    rows.sort(key=lambda r: order[r["data"]])  # stable: keeps the score order within a dataset
    counters: dict[str, int] = {}
    for row in rows:
        counters[row["data"]] = counters.get(row["data"], 0) + 1
        row["rank"] = counters[row["data"]]
    return rows


def leaderboard_rows(runs: list[dict], metric: str = "an2dl", labeller: Labeller | None = None) -> list[dict]:
    """Rank ``runs`` (run dicts from the store) by ``metric`` ("an2dl" or "fg"), best first, per dataset.

    Every run given is kept (the caller chooses which statuses to pass); runs without the metric rank last.
    Ties keep the older run first so a rerun never overtakes the original on equal score. ``labeller``
    (with the plugin registry) names each variant; without one, labels are the plugin names.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    labeller = labeller or Labeller()
    rows = [_row(run, METRICS[metric], labeller) for run in runs]
    rows.sort(key=lambda r: (r["created"] or "", r["run_id"] or ""))
    rows.sort(key=lambda r: (r["miou"] is None, -(r["miou"] or 0.0)))
    return _rank_within_data(rows)


def datasets(rows: list[dict]) -> list[str]:
    """The data labels of ``rows``, in order of appearance (the best dataset's first)."""
    return list(dict.fromkeys(row.get("data") for row in rows))


def by_dataset(rows: list[dict]) -> dict[str, list[dict]]:
    """``rows`` split per data label, each part in its rank order."""
    parts: dict[str, list[dict]] = {}
    for row in rows:
        parts.setdefault(row.get("data"), []).append(row)
    return parts


def class_columns(rows: list[dict], class_names: list[str] | None = None) -> list[str]:
    """Per-class columns: classes that have an IoU in some row, in ``class_names`` order, minus background.

    Names only found in the rows follow in order of appearance; with no IoU data at all, ``class_names``
    is used as is so the table still shows the expected layout.
    """
    seen: list[str] = []
    for row in rows:
        seen.extend(name for name in row.get("iou") or {} if name not in seen)
    known = list(class_names or [])
    names = [n for n in known if n in seen] + [n for n in seen if n not in known] if seen else known
    return [n for n in names if n.lower() != IGNORED_CLASS]


def group_rows(rows: list[dict]) -> list[dict]:
    """One row per configuration (config hash) and dataset: its runs across seeds, ranked by mean.

    ``miou_mean``/``miou_std`` (sample std, None for a single run) and ``n`` summarise the chosen metric;
    per-class IoU, cost and speed are means over the group's runs. Runs without a score count in
    ``runs`` but not in ``n``. Groups without any score rank last; ties keep the older group first.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row.get("data"), row.get("dataset_id"), row.get("config_hash") or f"run:{row.get('run_id')}")
        groups.setdefault(key, []).append(row)
    out = [_group(members) for members in groups.values()]
    out.sort(key=lambda g: g["created"] or "")
    out.sort(key=lambda g: (g["miou"] is None, -(g["miou"] or 0.0)))
    return _rank_within_data(out)


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _group(members: list[dict]) -> dict:
    members = sorted(members, key=lambda r: (r.get("seed") or 0, -1 if r.get("fold") is None else r["fold"]))
    scores = [r["miou"] for r in members if r["miou"] is not None]
    classes: list[str] = []
    for row in members:
        classes.extend(name for name in row.get("iou") or {} if name not in classes)
    first = members[0]
    statuses = list(dict.fromkeys(r.get("status") for r in members))
    errors = [r["error"] for r in sorted(members, key=lambda r: r.get("created") or "") if r.get("error")]
    scored = [r for r in members if r["miou"] is not None]
    best = max(scored, key=lambda r: r["miou"]) if scored else first
    return {
        "rank": None,
        "config": first.get("config"),
        "config_hash": first.get("config_hash"),
        "arch": first.get("arch"),
        "loss": first.get("loss"),
        "balancer": first.get("balancer"),
        **{key: first.get(key) for key in VARIANT_FIELDS},
        "data": first.get("data"),
        "dataset_id": first.get("dataset_id"),
        "status": statuses[0] if len(statuses) == 1 else ",".join(str(s) for s in statuses),
        "error": errors[-1] if errors else None,
        "n": len(scores),
        "runs": len(members),
        "seeds": [r.get("seed") for r in members],
        "folds": [r.get("fold") for r in members],
        "run_ids": [r.get("run_id") for r in members],
        "best_run": best.get("run_id"),
        "miou": _mean(scores),
        "miou_mean": _mean(scores),
        "miou_std": _std(scores),
        "miou_an2dl": _mean([r.get("miou_an2dl") for r in members]),
        "miou_fg": _mean([r.get("miou_fg") for r in members]),
        "iou": {name: _mean([num((r.get("iou") or {}).get(name)) for r in members]) for name in classes},
        "params": first.get("params"),
        "gflops": first.get("gflops"),
        "wall_time": _mean([r.get("wall_time") for r in members]),
        "train_img_s": _mean([r.get("train_img_s") for r in members]),
        "epochs": _mean([r.get("epochs") for r in members]),
        "device": first.get("device"),
        "created": min((r.get("created") or "" for r in members), default=""),
    }


def best_per_arch(groups: list[dict]) -> list[dict]:
    """The best-ranked group of each architecture on each dataset (the report's Table 1: one score per
    network); the row's label says which variant won."""
    best: dict[tuple, dict] = {}
    for group in groups:
        best.setdefault((group.get("data"), group["arch"]), group)
    return _rank_within_data([dict(g) for g in best.values()])


def filter_data(rows_or_runs: list[dict], query: str) -> list[dict]:
    """The runs (store dicts) whose data `--data QUERY` names (see `labels.data_matches`)."""
    from leaderboard.labels import data_matches

    def source(run: dict) -> str | None:
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        return data.get("source")

    return [run for run in rows_or_runs if data_matches(query, source(run), run.get("dataset_id"))]
