"""Leaderboard aggregation and rendering: runs ranked by mean IoU, with per-class IoU, size and speed."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pandas as pd

METRICS = {"an2dl": "miou_an2dl", "fg": "miou_fg"}
FORMATS = ("table", "markdown", "csv", "json")
MISSING = "–"
# The ignored label has no meaningful IoU; it is dropped from per-class columns even if a metrics dict has it.
IGNORED_CLASS = "background"

_SCALARS = [
    "rank",
    "run_id",
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


def _display_cells(row: dict, classes: list[str]) -> list[str]:
    """The human-facing cells shared by the rich and markdown tables."""
    return [
        str(row["rank"]),
        str(row["run_id"]),
        str(row["arch"] or MISSING),
        str(row["loss"] or MISSING),
        str(row["balancer"] or MISSING),
        _fixed(row["miou"], 3),
        *(_fixed(_num(row["iou"].get(name)), 3) for name in classes),
        _fixed(row["params"], 2, scale=1e6),
        _fixed(row["gflops"], 2),
        format_duration(row["wall_time"]),
        _fixed(row["train_img_s"], 1),
    ]


def _display_headers(classes: list[str]) -> list[str]:
    return ["#", "run", "arch", "loss", "balancer", "mIoU", *classes, "params (M)", "GFLOPs", "time", "img/s"]


# Text columns are left-aligned, numbers right-aligned, in both the rich and the markdown table.
_TEXT_COLUMNS = {"run", "arch", "loss", "balancer"}


def _render_rich(rows: list[dict], classes: list[str], console: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for header in _display_headers(classes):
        justify = "left" if header in _TEXT_COLUMNS else "right"
        table.add_column(header, justify=justify, no_wrap=header != "run")
    for row in rows:
        table.add_row(*_display_cells(row, classes))
    (console or Console()).print(table)


def _markdown_cell(text: str) -> str:
    # A literal pipe would split the cell; run ids and plugin names are user-chosen strings.
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(rows: list[dict], classes: list[str]) -> str:
    headers = _display_headers(classes)
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in headers]
    lines = [
        "| " + " | ".join(_markdown_cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in _display_cells(r, classes)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _flat(row: dict, classes: list[str]) -> dict:
    """Row with scalars only: the iou dict spread into iou_<class> entries."""
    flat = {key: _num(row.get(key)) for key in _SCALARS}
    iou = row.get("iou") or {}
    flat.update({f"iou_{name}": _num(iou.get(name)) for name in classes})
    return flat


def _render_csv(rows: list[dict], classes: list[str]) -> str:
    buffer = io.StringIO()
    fields = [*_SCALARS, *(f"iou_{name}" for name in classes)]
    # lineterminator "\n": csv's default "\r\n" shows up as stray ^M when the text is printed to a terminal.
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _flat(row, classes).items()})
    return buffer.getvalue()


def _render_json(rows: list[dict]) -> str:
    cleaned = [
        {**{key: _num(value) for key, value in row.items() if key != "iou"}, "iou": _json_iou(row)}
        for row in rows
    ]
    return json.dumps(cleaned, indent=2, allow_nan=False, default=str) + "\n"


def _json_iou(row: dict) -> dict:
    return {str(name): _num(value) for name, value in (row.get("iou") or {}).items()}


def render(rows: list[dict], fmt: str, class_names: list[str], console: Any = None) -> str | None:
    """Render leaderboard rows as "table" (printed to ``console``, returns None), "markdown", "csv" or "json".

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
    return _render_json(rows)


def leaderboard_frame(rows: list[dict]) -> pd.DataFrame:
    """A DataFrame with one column per scalar field and one ``iou_<class>`` column per class in any row."""
    classes: list[str] = []
    for row in rows:
        classes.extend(name for name in row.get("iou") or {} if name not in classes)
    columns = [*_SCALARS, *(f"iou_{name}" for name in classes)]
    frame = pd.DataFrame([_flat(row, classes) for row in rows], columns=columns)
    # Fixed dtypes, so an all-None column (e.g. the ignored class) is NaN and not an object column of None.
    floats = [*_FLOAT_COLUMNS, *(f"iou_{name}" for name in classes)]
    return frame.astype({**dict.fromkeys(floats, "float64"), **dict.fromkeys(_INT_COLUMNS, "Int64")})


_FLOAT_COLUMNS = ("miou", "miou_an2dl", "miou_fg", "gflops", "wall_time", "train_img_s")
_INT_COLUMNS = ("rank", "seed", "params", "epochs")
