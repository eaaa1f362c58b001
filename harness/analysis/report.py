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
from harness.errors import HarnessError
from harness.plugins import Registry
from harness.store import RunStore, resolve_store_path
from leaderboard.html import ConfigLinks, config_links, render_page
from leaderboard.table import class_columns, format_duration, leaderboard_rows

DEFAULT_TOP = 5
FILES = {
    "curves": "learning_curves.png",
    "iou": "class_iou.png",
    "confusion": "confusion.png",
    "overlays": "overlays.png",
    "index": "index.html",
}


def _params_text(run: dict) -> str:
    params = ((run.get("config") or {}).get("arch") or {}).get("params") or {}
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "–"


def _fixed(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_rows(
    rows: list[dict], runs: dict[str, dict], classes: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Headers and display cells of the report's table of the top runs (plain strings; the page escapes)."""
    headers = ["#", "run", "config", "arch", "loss", "balancer", "seed", "mIoU", *classes]
    headers += ["arch params", "data", "epochs", "time"]
    cells = []
    for row in rows:
        run = runs[row["run_id"]]
        data = (run.get("config") or {}).get("data") or {}
        cells.append(
            [
                str(row["rank"]),
                str(row["run_id"]),
                str(run.get("config_hash") or "")[:8],
                str(row["arch"]),
                str(row["loss"]),
                str(row["balancer"]),
                str(row["seed"]),
                _fixed(row["miou"]),
                *(_fixed(row["iou"].get(name)) for name in classes),
                _params_text(run),
                str(data.get("source", "–")),
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
) -> None:
    """Every figure of the report for the ranked run `rows` (the first is the best run)."""
    best = runs[rows[0]["run_id"]]
    with RunStore(store_path, create=False) as run_store:
        histories = {row["run_id"]: run_store.history(row["run_id"]) for row in rows}
        try:
            per_image: PerImage | None = load_per_image(run_store, best)
        except HarnessError as exc:
            per_image = None
            pages.skipped("Confusion matrix and overlays", exc)
    pages.figure("curves", "Learning curves of the top runs.", learning_curves(rows, histories, metric))
    pages.figure(
        "iou", "Per-class validation IoU of the top runs (best epoch).", class_iou_bars(rows, classes)
    )
    if per_image is not None:
        _best_run_figures(
            pages, best, per_image, store_path, plugins, count=overlays, show_progress=show_progress
        )


def leaderboard_page(
    title: str,
    headers: list[str],
    cells: list[list[str]],
    *,
    store: str | Path | None = None,
    top: int = 5,
    metric: str = "an2dl",
    plugins: Registry | None = None,
    links: ConfigLinks | None = None,
) -> str:
    """The leaderboard as one self-contained HTML page: its table, then the report's figures for the top
    `top` finished runs (images embedded), so the single file can be mailed to a teammate; `links`
    (`leaderboard.html.config_links` of the table's rows) ends it with each row's resolved config."""
    store_path = resolve_store_path(store)
    pages = _Pages(None, lambda line: None)
    finished = {r["run_id"]: r for r in finished_runs(store_path)}
    if finished:
        rows = leaderboard_rows(list(finished.values()), metric)[:top]
        best = finished[rows[0]["run_id"]]
        classes = class_columns(rows, list(best.get("class_names") or []))
        _figures(pages, store_path, rows, finished, classes, metric, plugins, OVERLAY_IMAGES, False)
        pages.notes.insert(0, f"Figures: the top {len(rows)} finished runs by validation mIoU ({metric}).")
    return render_page(title, headers, cells, pages.figures, notes=pages.notes, links=links)


def build_report(
    out: str | Path,
    *,
    store: str | Path | None = None,
    top: int = DEFAULT_TOP,
    metric: str = "an2dl",
    arch: str | None = None,
    loss: str | None = None,
    balancer: str | None = None,
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
    rows = leaderboard_rows(list(runs.values()), metric)[:top]
    best = runs[rows[0]["run_id"]]
    classes = class_columns(rows, list(best.get("class_names") or []))
    pages = _Pages(_out_dir(out), say or (lambda line: None))
    pages.notes.append(
        f"Top {len(rows)} of {len(runs)} finished runs in {store_path}, ranked by validation mIoU ({metric})."
    )
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
