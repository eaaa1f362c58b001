"""Leaderboard rendering: the ranked rows (`leaderboard.rows`) as a terminal table, Markdown, CSV, JSON, HTML.

Two row kinds share the renderers: run rows (`leaderboard_rows`, one per run) and group rows (`group_rows`,
one per configuration and dataset: mean, std and n over seeds). `best_per_arch` keeps the best group of
each architecture, the compact view of the report's Table 1. Every format names the variant (`label`,
from `leaderboard.labels`) and the data; rows of different datasets are never ranked together: the table,
Markdown and HTML show one table per dataset, CSV and JSON rank within each dataset's rows.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from leaderboard.rows import (
    CONFIG_CHARS,
    IGNORED_CLASS,
    METRICS,
    VARIANT_FIELDS,
    best_per_arch,
    by_dataset,
    class_columns,
    datasets,
    filter_data,
    group_rows,
    leaderboard_rows,
)
from leaderboard.rows import num as _num
from leaderboard.significance import COLUMNS as SIGNIFICANCE_COLUMNS
from leaderboard.significance import delta_cell, footnotes, oof_cell, shows_delta, shows_oof
from leaderboard.terminal import Column, render_table

if TYPE_CHECKING:  # imported in leaderboard_frame: `harness leaderboard` renders without it, faster
    import pandas as pd

__all__ = [
    "CONFIG_CHARS",
    "FORMATS",
    "IGNORED_CLASS",
    "METRICS",
    "MISSING",
    "best_per_arch",
    "by_dataset",
    "class_columns",
    "datasets",
    "display_table",
    "filter_data",
    "format_duration",
    "group_rows",
    "leaderboard_frame",
    "leaderboard_rows",
    "render",
]

FORMATS = ("table", "markdown", "csv", "json", "html")
MISSING = "–"

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
    "label",
    "data",
    "dataset_id",
    "error",
    "miou_an2dl",
    "miou_fg",
    "params",
    "gflops",
    "wall_time",
    "train_img_s",
    "epochs",
    "device",
    "created",
    "fold",
]


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


def _is_group(rows: list[dict]) -> bool:
    return bool(rows) and "n" in rows[0]


def _score_cell(row: dict) -> str:
    if "n" not in row or row["miou_std"] is None:
        return _fixed(row["miou"], 3)
    return f"{row['miou']:.3f} ± {row['miou_std']:.3f}"


def score_header(metric: str = "an2dl") -> str:
    """The score column's header: `mIoU` for the challenge's metric, `mIoU (fg)` for the foreground mean."""
    return "mIoU" if metric == "an2dl" else f"mIoU ({metric})"


def shows_status(rows: list[dict]) -> bool:
    """Status and error columns appear when some row did not finish (`--status failed|...|all`)."""
    return any(row.get("status") != "finished" for row in rows)


def columns(rows: list[dict], classes: list[str], metric: str = "an2dl") -> list[Column]:
    """The table's columns in order, each with its priority: identity kept whole, the rest optional."""
    grouped = _is_group(rows)
    ident = "config" if grouped else "run"
    cols = [
        Column("#", [str(r["rank"]) for r in rows], right=True),
        Column(ident, [str(r[ident if grouped else "run_id"] or MISSING) for r in rows]),
        Column("label", [str(r.get("label") or MISSING) for r in rows], wrap=True),
        Column("data", [str(r.get("data") or MISSING) for r in rows]),
        Column(score_header(metric), [_score_cell(r) for r in rows], right=True),
    ]
    if grouped:
        cols.append(Column("n", [str(r["n"]) for r in rows], right=True))
    if shows_oof(rows):
        cols.append(Column("oof", [oof_cell(r) for r in rows], right=True))
    if shows_delta(rows):
        cols.append(Column("Δ best", [delta_cell(r, rows) for r in rows], wrap=True))
    if shows_status(rows):
        cols.append(Column("status", [str(r.get("status") or MISSING) for r in rows]))
        cols.append(Column("error", [str(r.get("error") or "") for r in rows], wrap=True))
    cols += [
        Column(name, [_fixed(_num(r["iou"].get(name)), 3) for r in rows], False, right=True)
        for name in classes
    ]
    cols += [
        Column("params (M)", [_fixed(r["params"], 2, scale=1e6) for r in rows], False, right=True),
        Column("GFLOPs", [_fixed(r["gflops"], 2) for r in rows], False, right=True),
        Column("time", [format_duration(r["wall_time"]) for r in rows], False, right=True),
        Column("img/s", [_fixed(r["train_img_s"], 1) for r in rows], False, right=True),
    ]
    return cols


def display_table(
    rows: list[dict], class_names: list[str], metric: str = "an2dl"
) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of run or group rows, for any renderer (HTML pages use it too)."""
    cols = columns(rows, class_columns(rows, class_names), metric)
    return [c.header for c in cols], [[c.cells[i] for c in cols] for i in range(len(rows))]


def data_heading(data: str, rows: list[dict]) -> str:
    """The title of one dataset's table: ranks restart there, since scores on other data do not compare."""
    return f"data {data}: {len(rows)} row{'s' * (len(rows) != 1)}, ranked on this data only"


def _render_rich(rows: list[dict], classes: list[str], console: Any, metric: str, wide: bool) -> None:
    from rich.console import Console

    console = console or Console()
    parts = by_dataset(rows) or {None: []}
    for index, (data, part) in enumerate(parts.items()):
        if index:
            console.print()
        title = data_heading(data, part) if len(parts) > 1 else None
        render_table(columns(part, class_columns(part, classes), metric), console, wide=wide, title=title)
        for line in footnotes(part):
            console.print(line, markup=False, highlight=False)


def _markdown_cell(text: str) -> str:
    # A literal pipe would split the cell; run ids and plugin names are user-chosen strings.
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: list[dict], classes: list[str], metric: str) -> list[str]:
    cols = columns(rows, classes, metric)
    align = ["---:" if c.right else "---" for c in cols]
    lines = [
        "| " + " | ".join(_markdown_cell(c.header) for c in cols) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_markdown_cell(c.cells[i]) for c in cols) + " |" for i in range(len(rows))]
    notes = footnotes(rows)
    return lines + (["", *notes] if notes else [])


def _render_markdown(rows: list[dict], classes: list[str], metric: str) -> str:
    parts = by_dataset(rows)
    if len(parts) <= 1:
        return "\n".join(_markdown_table(rows, classes, metric)) + "\n"
    lines: list[str] = []
    for data, part in parts.items():
        lines += [f"### {_markdown_cell(data_heading(data, part))}", ""]
        lines += [*_markdown_table(part, class_columns(part, classes), metric), ""]
    return "\n".join(lines)


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
    "label",
    "data",
    "dataset_id",
    "status",
    "error",
    "best_run",
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
# Per-plugin settings that differ from the defaults: JSON objects, in CSV as JSON text.
_PARAM_FIELDS = [f for f in VARIANT_FIELDS if f != "label"]


def _scalars(rows: list[dict]) -> list[str]:
    base = _GROUP_SCALARS if _is_group(rows) else _SCALARS
    extra = [key for key in SIGNIFICANCE_COLUMNS if any(key in row for row in rows)]
    return base + extra if extra else base


def _flat(row: dict, classes: list[str], scalars: list[str] = _SCALARS) -> dict:
    """Row with scalars only: the iou dict spread into iou_<class> entries."""
    flat = {key: _num(row.get(key)) for key in scalars}
    iou = row.get("iou") or {}
    flat.update({f"iou_{name}": _num(iou.get(name)) for name in classes})
    return flat


def _render_csv(rows: list[dict], classes: list[str]) -> str:
    buffer = io.StringIO()
    scalars = _scalars(rows)
    fields = [*scalars, *(f"iou_{name}" for name in classes), *_PARAM_FIELDS]
    # lineterminator "\n": csv's default "\r\n" shows up as stray ^M when the text is printed to a terminal.
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = {k: "" if v is None else v for k, v in _flat(row, classes, scalars).items()}
        record.update({k: "" if row.get(k) is None else json.dumps(row[k]) for k in _PARAM_FIELDS})
        writer.writerow(record)
    return buffer.getvalue()


def _render_json(rows: list[dict]) -> str:
    cleaned = [
        {**{key: _num(value) for key, value in row.items() if key != "iou"}, "iou": _json_iou(row)}
        for row in rows
    ]
    return json.dumps(cleaned, indent=2, allow_nan=False, default=str) + "\n"


def _json_iou(row: dict) -> dict:
    return {str(name): _num(value) for name, value in (row.get("iou") or {}).items()}


def html_tables(rows: list[dict], class_names: list[str], metric: str = "an2dl") -> list[tuple]:
    """(heading or None, headers, cells, rows) per dataset: what an HTML page shows as its tables."""
    parts = by_dataset(rows) or {None: []}
    out = []
    for data, part in parts.items():
        headers, cells = display_table(part, class_names, metric)
        out.append((data_heading(data, part) if len(parts) > 1 else None, headers, cells, part))
    return out


def _render_html(rows: list[dict], class_names: list[str], title: str, metric: str) -> str:
    from leaderboard.html import Table, render_page

    tables = [
        Table(heading, headers, cells)
        for heading, headers, cells, _ in html_tables(rows, class_names, metric)
    ]
    return render_page(title, tables=tables, notes=footnotes(rows))


def render(
    rows: list[dict],
    fmt: str,
    class_names: list[str],
    console: Any = None,
    title: str = "harness leaderboard",
    *,
    metric: str = "an2dl",
    wide: bool = False,
) -> str | None:
    """Render run or group rows as "table" (printed to ``console``, returns None), "markdown", "csv",
    "json" or "html" (one self-contained, escaped page titled ``title``).

    The table fits the console's width (``wide``: every column); per-class columns follow
    ``class_columns``; the JSON output keeps each row's full iou dict. ``metric`` names the score header.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    classes = class_columns(rows, class_names)
    if fmt == "table":
        _render_rich(rows, classes, console, metric, wide)
        return None
    if fmt == "markdown":
        return _render_markdown(rows, classes, metric)
    if fmt == "csv":
        return _render_csv(rows, classes)
    if fmt == "html":
        return _render_html(rows, class_names, title, metric)
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
    epochs = ["epochs"] if _is_group(rows) else []
    floats = [c for c in (*_FLOAT_COLUMNS, *epochs, *(f"iou_{name}" for name in classes)) if c in columns]
    ints = [c for c in _INT_COLUMNS if c in columns and c not in floats]
    return frame.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(ints, "Int64")})


_FLOAT_COLUMNS = (
    "miou",
    "miou_oof",
    "delta_vs_best",
    "ci_low",
    "ci_high",
    "miou_mean",
    "miou_std",
    "miou_an2dl",
    "miou_fg",
    "gflops",
    "wall_time",
    "train_img_s",
)
_INT_COLUMNS = ("rank", "seed", "params", "epochs", "n", "runs")
