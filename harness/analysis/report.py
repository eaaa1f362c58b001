"""`harness report`: the top runs as PNG figures and one self-contained index.html.

Figures (drawn by `harness.analysis.figures`): learning curves and per-class IoU of the top N finished
runs, the best run's row-normalised validation confusion matrix, and image | truth | prediction overlays
of the best run on a fixed spread of its validation images (predicted by `harness.analysis.overlays`).
The leaderboard's HTML page (`leaderboard_page`) is its table followed by the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.compare import PerImage, load_per_image
from harness.analysis.figures import HISTORY_KEYS, class_iou_bars, confusion_figure, learning_curves
from harness.analysis.overlays import OVERLAY_IMAGES, Say, best_run_overlays
from harness.config import DEFAULT_CHOICES
from harness.errors import HarnessError
from harness.plugins import Registry
from harness.store import RunStore, resolve_store_path
from leaderboard.html import ConfigLinks, Table, config_links, render_page
from leaderboard.labels import Labeller
from leaderboard.significance import footnotes
from leaderboard.table import (
    class_columns,
    datasets,
    filter_data,
    format_duration,
    html_tables,
    leaderboard_rows,
)

DEFAULT_TOP = 5
FIGURE_ROWS = 10  # the most rows one figure draws: more lines than this are not readable in one legend
FILES = {
    "curves": "learning_curves.png",
    "iou": "class_iou.png",
    "confusion": "confusion.png",
    "overlays": "overlays.png",
    "index": "index.html",
}


def _fixed(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_rows(
    rows: list[dict], runs: dict[str, dict], classes: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Headers and display cells of the report's table of the top runs (plain strings; the page escapes)."""
    headers = ["#", "run", "config", "label", "data", "seed", "mIoU", *classes, "epochs", "time"]
    cells = []
    for row in rows:
        run = runs[row["run_id"]]
        cells.append(
            [
                str(row["rank"]),
                str(row["run_id"]),
                str(run.get("config_hash") or "")[:8],
                str(row.get("label") or row["arch"]),
                str(row.get("data") or "–"),
                str(row["seed"]),
                _fixed(row["miou"]),
                *(_fixed(row["iou"].get(name)) for name in classes),
                f"{run.get('best_epoch')}/{row['epochs']}",
                format_duration(row["wall_time"]),
            ]
        )
    return headers, cells


def _out_dir(out: str | Path) -> Path:
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise HarnessError(f"{path}: exists and is not a folder; pass a folder for the report")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create the report folder ({exc.strerror or exc})") from None
    return path


def finished_runs(store_path: Path, **filters: str | None) -> list[dict]:
    """The store's finished runs matching the filters, newest first; [] (no file created) without a store."""
    if not store_path.exists():
        return []
    with RunStore(store_path, create=False) as run_store:
        return run_store.list_runs(status="finished", **filters)


def _finished_runs(store_path: Path, filters: dict[str, str | None]) -> list[dict]:
    runs = finished_runs(store_path, **filters)
    if not runs:
        chosen = ", ".join(f"{k} {v}" for k, v in filters.items() if v)
        where = f" matching {chosen}" if chosen else ""
        raise HarnessError(f"no finished runs{where} in {store_path}; train one with `harness run` first")
    return runs


@dataclass
class _Pages:
    """What the report has produced so far: files on disk, figures and notes for the page."""

    folder: Path | None  # None: figures stay in memory (the leaderboard's HTML page)
    say: Say
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)

    def figure(self, key: str, caption: str, png: bytes) -> None:
        self.figures.append((caption, png))
        if self.folder is None:
            return
        path = self.folder / FILES[key]
        path.write_bytes(png)
        self.written.append(path)
        self.say(f"wrote {path}")

    def skipped(self, what: str, reason: HarnessError) -> None:
        self.notes.append(f"{what} skipped: {reason}")
        self.say(f"{what.lower()} skipped: {reason}")


def _best_run_figures(
    pages: _Pages, best: dict, per_image: PerImage, store_path: Path, plugins: Registry | None, **overlay: Any
) -> None:
    """The best run's confusion matrix and overlays; a failing overlay (say, a deleted checkpoint) becomes a
    note, since the rest of the report still stands."""
    ignore = ((best.get("config") or {}).get("data") or {}).get("ignore_index", 0)
    title = f"{best['run_id']}: {len(per_image.indices)} validation images, rows normalised"
    matrix = confusion_figure(per_image.confusion.sum(0), list(best.get("class_names") or []), ignore, title)
    pages.figure(
        "confusion",
        f"Confusion matrix of the best run {best['run_id']} (rows: truth, normalised to 100 %; the ignored "
        "background class is dropped: it is never scored and never predicted).",
        matrix,
    )
    try:
        png = best_run_overlays(best, per_image, store_path, plugins, **overlay)
    except HarnessError as exc:
        pages.skipped("Overlays", exc)
        return
    pages.figure(
        "overlays",
        f"Image | truth | prediction of the best run {best['run_id']} on a fixed spread of its validation "
        "images (#row in the dataset, the image's own mIoU; background pixels are not scored).",
        png,
    )


def _figures(
    pages: _Pages,
    store_path: Path,
    rows: list[dict],
    runs: dict[str, dict],
    classes: list[str],
    metric: str,
    plugins: Registry | None,
    overlays: int,
    show_progress: bool,
    where: str = "",
    best_figures: bool = True,
) -> None:
    """Every figure of the report for the ranked run `rows` (the first is the best run); `where` ends the
    captions (a dataset's heading); without `best_figures`, only the curves and the per-class bars."""
    best = runs[rows[0]["run_id"]]
    with RunStore(store_path, create=False) as run_store:
        histories = {row["run_id"]: run_store.history(row["run_id"]) for row in rows}
        per_image: PerImage | None = None
        try:
            per_image = load_per_image(run_store, best) if best_figures else None
        except HarnessError as exc:
            pages.skipped("Confusion matrix and overlays", exc)
    pages.figure("curves", f"Learning curves{where}.", learning_curves(rows, histories, metric))
    pages.figure("iou", f"Per-class validation IoU (best epoch){where}.", class_iou_bars(rows, classes))
    if per_image is not None and best_figures:
        _best_run_figures(
            pages, best, per_image, store_path, plugins, count=overlays, show_progress=show_progress
        )


def figure_rows(rows: list[dict], limit: int = FIGURE_ROWS) -> list[dict]:
    """The rows a page's figures draw: the table's own rows (up to `limit`), each as one run (a group's
    best seed: its curves and its per-class IoU), with the legend text `#rank label` of the table's row."""
    out = []
    for row in rows[:limit]:
        run_id = row.get("best_run") or row.get("run_id")
        if run_id is None:
            continue
        out.append({**row, "run_id": run_id, "legend": legend(row)})
    return out


def legend(row: dict) -> str:
    """A figure's legend entry for a table row: its rank and its label, as the table shows them."""
    return f"#{row.get('rank')} {row.get('label') or row.get('run_id')}"


def _targets(links: ConfigLinks, start: int, count: int) -> list[str | None]:
    return list(links.targets[start : start + count])


def leaderboard_page(
    title: str,
    rows: list[dict],
    class_names: list[str],
    *,
    runs: list[dict],
    store: str | Path | None = None,
    metric: str = "an2dl",
    plugins: Registry | None = None,
) -> str:
    """The leaderboard as one self-contained HTML page: its table (one per dataset), then figures of the
    table's own rows (`figure_rows`: per-architecture best with `--by arch`), legends with the table's
    labels; each row's config cell links to its resolved config at the end, so the file can be mailed."""
    store_path = resolve_store_path(store)
    pages = _Pages(None, lambda line: None)
    links = config_links(rows, runs)
    tables, start = [], 0
    by_id = {run["run_id"]: run for run in runs}
    for index, (heading, headers, cells, part) in enumerate(html_tables(rows, class_names, metric)):
        tables.append(Table(heading, headers, cells, _targets(links, start, len(part))))
        start += len(part)
        drawn = [row for row in figure_rows(part) if row["run_id"] in by_id and row.get("miou") is not None]
        if not drawn:
            continue
        classes = class_columns(drawn, class_names)
        where = f" ({heading})" if heading else ""
        _figures(
            pages,
            store_path,
            drawn,
            by_id,
            classes,
            metric,
            plugins,
            OVERLAY_IMAGES,
            False,
            where,
            index == 0,
        )
    pages.notes.extend(footnotes(rows))
    if pages.figures:
        pages.notes.insert(
            0, f"Figures: the table's rows (up to {FIGURE_ROWS} per table), legends #rank label."
        )
    return render_page(title, figures=pages.figures, notes=pages.notes, links=links, tables=tables)


def build_report(
    out: str | Path,
    *,
    store: str | Path | None = None,
    top: int = DEFAULT_TOP,
    metric: str = "an2dl",
    arch: str | None = None,
    loss: str | None = None,
    balancer: str | None = None,
    data: str | None = None,
    overlays: int = OVERLAY_IMAGES,
    plugins: Registry | None = None,
    say: Say | None = None,
    show_progress: bool = False,
) -> list[Path]:
    """Write the report of the ``top`` finished runs (by ``metric``) into ``out``; returns the files written.

    ``say`` gets one line per file written. The best run's confusion matrix and overlays need its
    ``val_per_image.npz``; without it they are skipped with a note on the page rather than failing the
    whole report (runs recorded before per-image results were kept still get curves and bars).
    """
    if metric not in HISTORY_KEYS:
        raise HarnessError(f"unknown metric {metric!r}; choose an2dl or fg")
    if top < 1:
        raise HarnessError(f"--top must be at least 1, got {top}")
    store_path = resolve_store_path(store)
    filters = {"arch": arch, "loss": loss, "balancer": balancer}
    runs = {r["run_id"]: r for r in _finished_runs(store_path, filters)}
    if data is not None:
        runs = {r["run_id"]: r for r in filter_data(list(runs.values()), data)}
        if not runs:
            raise HarnessError(f"--data {data}: no finished runs on that data in {store_path}")
    labeller = Labeller(plugins, DEFAULT_CHOICES)
    ranked = leaderboard_rows(list(runs.values()), metric, labeller)
    # The runs of the best row's dataset only: scores on different data are not ranked together.
    shown_data = ranked[0]["data"]
    rows = [row for row in ranked if row["data"] == shown_data][:top]
    best = runs[rows[0]["run_id"]]
    classes = class_columns(rows, list(best.get("class_names") or []))
    pages = _Pages(_out_dir(out), say or (lambda line: None))
    pages.notes.append(
        f"Top {len(rows)} of {len(runs)} finished runs in {store_path} on data {shown_data}, ranked by "
        f"validation mIoU ({metric}); legends name each run as the table does: #rank label."
    )
    others = [name for name in datasets(ranked) if name != shown_data]
    if others:
        pages.notes.append(f"Runs on other data are left out ({', '.join(others)}): pass --data to see them.")
    rows = [{**row, "legend": legend(row)} for row in rows]
    _figures(pages, store_path, rows, runs, classes, metric, plugins, overlays, show_progress)
    headers, cells = table_rows(rows, runs, classes)
    title = f"harness report: top {len(rows)} runs by mIoU ({metric})"
    index = pages.folder / FILES["index"]
    links = config_links(rows, list(runs.values()))
    page = render_page(title, headers, cells, pages.figures, notes=pages.notes, links=links)
    index.write_text(page, encoding="utf-8")
    pages.written.append(index)
    pages.say(f"wrote {index}")
    return pages.written
