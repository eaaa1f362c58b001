"""Leaderboard aggregation and rendering: runs ranked by mean IoU, with per-class IoU, size and speed.

Two row kinds share the renderers: run rows (`leaderboard_rows`, one per run) and group rows (`group_rows`,
one per configuration: the runs of one config hash across seeds, as mean, std and n). `best_per_arch`
keeps the best group of each architecture, the compact view of the report's Table 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in leaderboard_frame: `harness leaderboard` renders without it, faster
    import pandas as pd

METRICS = {"an2dl": "miou_an2dl", "fg": "miou_fg"}
FORMATS = ("table", "markdown", "csv", "json", "html")
MISSING = "–"
CONFIG_CHARS = 8  # a config hash prefix long enough to be unique in any real store, short enough to type
# The ignored label has no meaningful IoU; it is dropped from per-class columns even if a metrics dict has it.
IGNORED_CLASS = "background"

_SCALARS = [
    "rank",
    "run_id",
    "config",
    "arch",
    "loss",
    "balancer",
    "seed",
    "status",
    "miou",
    "miou_an2dl",
    "miou_fg",
    "params",
    "gflops",
    "wall_time",
    "train_img_s",
    "epochs",
    "device",
    "created",
]


def _num(value: Any) -> Any:
    """None for missing or non-finite numbers, so every output treats NaN and None alike."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _row(run: dict, metric_key: str) -> dict:
    metrics = run.get("metrics") or {}
    iou = {str(name): _num(value) for name, value in (metrics.get("iou") or {}).items()}
    params = run.get("params")
    return {
        "rank": None,
        "run_id": run.get("run_id"),
        "config": (run.get("config_hash") or "")[:CONFIG_CHARS] or None,
        "config_hash": run.get("config_hash"),
        "arch": run.get("arch"),
        "loss": run.get("loss"),
        "balancer": run.get("balancer"),
        "seed": run.get("seed"),
        "status": run.get("status"),
        "miou": _num(metrics.get(metric_key)),
        "miou_an2dl": _num(metrics.get("miou_an2dl")),
        "miou_fg": _num(metrics.get("miou_fg")),
        "iou": iou,
        "params": None if params is None else int(params),
        "gflops": _num(run.get("gflops")),
        "wall_time": _num(run.get("wall_time")),
        "train_img_s": _num(run.get("train_img_s")),
        "epochs": run.get("epochs"),
        "device": run.get("device"),
        "created": run.get("created"),
    }


def leaderboard_rows(runs: list[dict], metric: str = "an2dl") -> list[dict]:
    """Rank ``runs`` (run dicts from the store) by ``metric`` ("an2dl" or "fg"), best first.

    Every run given is kept (the caller chooses which statuses to pass); runs without the metric rank last.
    Ties keep the older run first so a rerun never overtakes the original on equal score.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    rows = [_row(run, METRICS[metric]) for run in runs]
    rows.sort(key=lambda r: (r["created"] or "", r["run_id"] or ""))
    rows.sort(key=lambda r: (r["miou"] is None, -(r["miou"] or 0.0)))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


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


def format_duration(seconds: float | None) -> str:
    """Human duration: 42s, 4m12s, 1h05m; None gives the missing marker."""
    if seconds is None:
        return MISSING
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _fixed(value: float | None, decimals: int, scale: float = 1.0) -> str:
    return MISSING if value is None else f"{value / scale:.{decimals}f}"


def group_rows(rows: list[dict]) -> list[dict]:
    """One row per configuration (config hash): the runs of that config across seeds, ranked by mean.

    ``miou_mean``/``miou_std`` (sample std, None for a single run) and ``n`` summarise the chosen metric;
    per-class IoU, cost and speed are means over the group's runs. Runs without a score count in
    ``runs`` but not in ``n``. Groups without any score rank last; ties keep the older group first.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = row.get("config_hash") or f"run:{row.get('run_id')}"
        groups.setdefault(key, []).append(row)
    out = [_group(members) for members in groups.values()]
    out.sort(key=lambda g: g["created"] or "")
    out.sort(key=lambda g: (g["miou"] is None, -(g["miou"] or 0.0)))
    for rank, group in enumerate(out, start=1):
        group["rank"] = rank
    return out


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _group(members: list[dict]) -> dict:
    members = sorted(members, key=lambda r: r.get("seed") or 0)
    scores = [r["miou"] for r in members if r["miou"] is not None]
    classes: list[str] = []
    for row in members:
        classes.extend(name for name in row.get("iou") or {} if name not in classes)
    first = members[0]
    return {
        "rank": None,
        "config": first.get("config"),
        "config_hash": first.get("config_hash"),
        "arch": first.get("arch"),
        "loss": first.get("loss"),
        "balancer": first.get("balancer"),
        "n": len(scores),
        "runs": len(members),
        "seeds": [r.get("seed") for r in members],
        "run_ids": [r.get("run_id") for r in members],
        "miou": _mean(scores),
        "miou_mean": _mean(scores),
        "miou_std": _std(scores),
        "miou_an2dl": _mean([r.get("miou_an2dl") for r in members]),
        "miou_fg": _mean([r.get("miou_fg") for r in members]),
        "iou": {name: _mean([_num((r.get("iou") or {}).get(name)) for r in members]) for name in classes},
        "params": first.get("params"),
        "gflops": first.get("gflops"),
        "wall_time": _mean([r.get("wall_time") for r in members]),
        "train_img_s": _mean([r.get("train_img_s") for r in members]),
        "epochs": _mean([r.get("epochs") for r in members]),
        "device": first.get("device"),
        "created": min((r.get("created") or "" for r in members), default=""),
    }


def best_per_arch(groups: list[dict]) -> list[dict]:
    """The best-ranked group of each architecture (the report's Table 1: one score per network)."""
    best: dict[str, dict] = {}
    for group in groups:
        best.setdefault(group["arch"], group)
    out = [dict(g) for g in best.values()]
    for rank, group in enumerate(out, start=1):
        group["rank"] = rank
    return out


def _is_group(rows: list[dict]) -> bool:
    return bool(rows) and "n" in rows[0]


def _score_cell(row: dict) -> str:
    if "n" not in row:
        return _fixed(row["miou"], 3)
    if row["miou_std"] is None:
        return _fixed(row["miou"], 3)
    return f"{row['miou']:.3f} ± {row['miou_std']:.3f}"


def _display_cells(row: dict, classes: list[str]) -> list[str]:
    """The human-facing cells shared by the rich, markdown and HTML tables."""
    ident = [str(row["config"] or MISSING), str(row["n"])] if "n" in row else [str(row["run_id"])]
    return [
        str(row["rank"]),
        *ident,
        str(row["arch"] or MISSING),
        str(row["loss"] or MISSING),
        str(row["balancer"] or MISSING),
        _score_cell(row),
        *(_fixed(_num(row["iou"].get(name)), 3) for name in classes),
        _fixed(row["params"], 2, scale=1e6),
        _fixed(row["gflops"], 2),
        format_duration(row["wall_time"]),
        _fixed(row["train_img_s"], 1),
    ]


def _display_headers(classes: list[str], grouped: bool = False) -> list[str]:
    ident = ["config", "n"] if grouped else ["run"]
    return [
        "#",
        *ident,
        "arch",
        "loss",
        "balancer",
        "mIoU",
        *classes,
        "params (M)",
        "GFLOPs",
        "time",
        "img/s",
    ]


# Text columns are left-aligned, numbers right-aligned, in both the rich and the markdown table.
_TEXT_COLUMNS = {"run", "config", "arch", "loss", "balancer"}


def display_table(rows: list[dict], class_names: list[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of run or group rows, for any renderer (HTML pages use it too)."""
    classes = class_columns(rows, class_names)
    return _display_headers(classes, _is_group(rows)), [_display_cells(r, classes) for r in rows]


def _render_rich(rows: list[dict], classes: list[str], console: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for header in _display_headers(classes, _is_group(rows)):
        justify = "left" if header in _TEXT_COLUMNS else "right"
        table.add_column(header, justify=justify, no_wrap=header != "run")
    for row in rows:
        table.add_row(*_display_cells(row, classes))
    (console or Console()).print(table)


def _markdown_cell(text: str) -> str:
    # A literal pipe would split the cell; run ids and plugin names are user-chosen strings.
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(rows: list[dict], classes: list[str]) -> str:
    headers = _display_headers(classes, _is_group(rows))
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in headers]
    lines = [
        "| " + " | ".join(_markdown_cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in _display_cells(r, classes)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_GROUP_SCALARS = [
    "rank",
    "config",
    "config_hash",
    "arch",
    "loss",
    "balancer",
    "n",
    "runs",
    "miou",
    "miou_mean",
    "miou_std",
    "miou_an2dl",
    "miou_fg",
    "params",
    "gflops",
    "wall_time",
    "train_img_s",
    "epochs",
    "device",
    "created",
]


def _scalars(rows: list[dict]) -> list[str]:
    return _GROUP_SCALARS if _is_group(rows) else _SCALARS


def _flat(row: dict, classes: list[str], scalars: list[str] = _SCALARS) -> dict:
    """Row with scalars only: the iou dict spread into iou_<class> entries."""
    flat = {key: _num(row.get(key)) for key in scalars}
    iou = row.get("iou") or {}
    flat.update({f"iou_{name}": _num(iou.get(name)) for name in classes})
    return flat


def _render_csv(rows: list[dict], classes: list[str]) -> str:
    buffer = io.StringIO()
    scalars = _scalars(rows)
    fields = [*scalars, *(f"iou_{name}" for name in classes)]
    # lineterminator "\n": csv's default "\r\n" shows up as stray ^M when the text is printed to a terminal.
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _flat(row, classes, scalars).items()})
    return buffer.getvalue()


def _render_json(rows: list[dict]) -> str:
    cleaned = [
        {**{key: _num(value) for key, value in row.items() if key != "iou"}, "iou": _json_iou(row)}
        for row in rows
    ]
    return json.dumps(cleaned, indent=2, allow_nan=False, default=str) + "\n"


def _json_iou(row: dict) -> dict:
    return {str(name): _num(value) for name, value in (row.get("iou") or {}).items()}


def _render_html(rows: list[dict], class_names: list[str], title: str) -> str:
    from leaderboard.html import render_page

    headers, cells = display_table(rows, class_names)
    return render_page(title, headers, cells, [])


def render(
    rows: list[dict],
    fmt: str,
    class_names: list[str],
    console: Any = None,
    title: str = "harness leaderboard",
) -> str | None:
    """Render run or group rows as "table" (printed to ``console``, returns None), "markdown", "csv",
    "json" or "html" (one self-contained, escaped page titled ``title``).

    Per-class columns follow ``class_columns``; the JSON output keeps each row's full iou dict.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    classes = class_columns(rows, class_names)
    if fmt == "table":
        _render_rich(rows, classes, console)
        return None
    if fmt == "markdown":
        return _render_markdown(rows, classes)
    if fmt == "csv":
        return _render_csv(rows, classes)
    if fmt == "html":
        return _render_html(rows, class_names, title)
    return _render_json(rows)


def leaderboard_frame(rows: list[dict]) -> pd.DataFrame:
    """A DataFrame with one column per scalar field and one ``iou_<class>`` column per class in any row."""
    import pandas as pd

    classes: list[str] = []
    for row in rows:
        classes.extend(name for name in row.get("iou") or {} if name not in classes)
    scalars = _scalars(rows)
    columns = [*scalars, *(f"iou_{name}" for name in classes)]
    frame = pd.DataFrame([_flat(row, classes, scalars) for row in rows], columns=columns)
    # Fixed dtypes, so an all-None column (e.g. the ignored class) is NaN and not an object column of None.
    # Epochs are counts per run but means per group.
    epochs = ["epochs"] if scalars is _GROUP_SCALARS else []
    floats = [c for c in (*_FLOAT_COLUMNS, *epochs, *(f"iou_{name}" for name in classes)) if c in columns]
    ints = [c for c in _INT_COLUMNS if c in columns and c not in floats]
    return frame.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(ints, "Int64")})


_FLOAT_COLUMNS = (
    "miou",
    "miou_mean",
    "miou_std",
    "miou_an2dl",
    "miou_fg",
    "gflops",
    "wall_time",
    "train_img_s",
)
_INT_COLUMNS = ("rank", "seed", "params", "epochs", "n", "runs")
