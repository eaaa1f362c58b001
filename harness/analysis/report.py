"""`harness report`: the top runs as PNG figures and one self-contained index.html.

Figures: learning curves and per-class IoU of the top N finished runs, the best run's row-normalised
validation confusion matrix, and image | truth | prediction overlays of the best run on a fixed spread of
its validation images. Everything is drawn on matplotlib's Agg canvas (``Figure`` directly, never pyplot),
so no display is needed and no global figure state is left behind.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.analysis.compare import PerImage, load_per_image, miou_batch
from harness.data.sheets import palette
from harness.errors import HarnessError
from harness.inference.metrics import per_image_confusion
from harness.store.runs import RunStore, resolve_store_path
from leaderboard.html import render_page
from leaderboard.table import class_columns, format_duration, leaderboard_rows

DEFAULT_TOP = 5
OVERLAY_IMAGES = 8
FILES = {
    "curves": "learning_curves.png",
    "iou": "class_iou.png",
    "confusion": "confusion.png",
    "overlays": "overlays.png",
    "index": "index.html",
}
_DPI = 100
_METRIC_KEYS = {"an2dl": ("miou_an2dl", "val_miou"), "fg": ("miou_fg", "val_miou_fg")}

Say = Callable[[str], None]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    # "tight" keeps long tick labels (run ids, class pixel counts) inside the picture.
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.1)
    return buffer.getvalue()


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cycle = colormaps["tab10"].colors
    return [cycle[i % len(cycle)] for i in range(n)]


def _run_label(row: dict) -> str:
    return f"#{row['rank']} {row['run_id']}"


def learning_curves(rows: list[dict], histories: dict[str, list[dict]], metric: str) -> bytes:
    """Train (solid) and validation (dashed) loss, and validation mIoU, per epoch; one colour per run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.6), layout="constrained")
    loss_ax, miou_ax = figure.subplots(1, 2)
    history_key = _METRIC_KEYS[metric][1]
    for row, colour in zip(rows, _colours(len(rows)), strict=True):
        history = histories.get(row["run_id"]) or []
        epochs = [h["epoch"] for h in history]
        label = _run_label(row)
        loss_ax.plot(
            epochs, [_nan(h.get("train_loss")) for h in history], "-o", color=colour, ms=3, label=label
        )
        loss_ax.plot(epochs, [_nan(h.get("val_loss")) for h in history], "--", color=colour)
        miou_ax.plot(
            epochs, [_nan(h.get(history_key)) for h in history], "-o", color=colour, ms=3, label=label
        )
    loss_ax.set(title="loss (solid: train, dashed: validation)", xlabel="epoch", ylabel="loss")
    miou_ax.set(title=f"validation mIoU ({metric})", xlabel="epoch", ylabel="mIoU")
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    miou_ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def class_iou_bars(rows: list[dict], classes: list[str]) -> bytes:
    """Grouped bars: one group per foreground class (plus the run's mIoU), one bar per run."""
    from matplotlib.figure import Figure

    groups = [*classes, "mIoU"]
    figure = Figure(figsize=(max(6.0, 1.4 * len(groups) + 2), 4.4), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(groups))
    for i, (row, colour) in enumerate(zip(rows, _colours(len(rows)), strict=True)):
        values = [_nan(row["iou"].get(name)) for name in classes] + [_nan(row["miou"])]
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, color=colour, label=_run_label(row))
    ax.set_xticks(x, groups)
    ax.set(ylim=(0, 1), ylabel="IoU", title="per-class validation IoU (best epoch)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def confusion_figure(
    confusion: np.ndarray, class_names: list[str], ignore_index: int | None, title: str
) -> bytes:
    """Row-normalised confusion matrix (rows = truth) with the ignored class's row and column dropped.

    Its row is empty by construction (ignored truth pixels are not counted) and its column is empty because
    inference never predicts it, so showing them would only add a blank row and column. Should a model
    predict it anyway, the column stays, so no pixel silently leaves its row's 100 %.
    """
    from matplotlib.figure import Figure

    k = confusion.shape[0]
    rows = [c for c in range(k) if c != ignore_index]
    predicted_ignored = (
        ignore_index is not None and 0 <= ignore_index < k and confusion[rows, ignore_index].any()
    )
    columns = list(range(k)) if predicted_ignored else rows
    matrix = confusion[np.ix_(rows, columns)].astype(np.float64)
    totals = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, totals, out=np.full_like(matrix, np.nan), where=totals > 0)
    name = [class_names[c] if c < len(class_names) else f"class {c}" for c in range(k)]
    figure = Figure(figsize=(1.1 * len(columns) + 2.4, 1.0 * len(rows) + 1.6), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(share):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0%}", ha="center", va="center", color="white" if value > 0.5 else "black")
    ax.set_xticks(range(len(columns)), [name[c] for c in columns], rotation=30, ha="right")
    ax.set_yticks(
        range(len(rows)), [f"{name[c]} ({int(t):,} px)" for c, t in zip(rows, totals[:, 0], strict=True)]
    )
    ax.set(xlabel="prediction", ylabel="truth", title=title)
    ax.title.set_fontsize(9)
    figure.colorbar(image, ax=ax, fraction=0.05, label="share of the truth row")
    return _png(figure)


def spread(count: int, wanted: int = OVERLAY_IMAGES) -> np.ndarray:
    """``wanted`` positions evenly spread over ``range(count)``, first and last included; fixed per count."""
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round().astype(np.int64))


def overlay_figure(
    images: np.ndarray,
    truth: np.ndarray,
    preds: np.ndarray,
    titles: list[str],
    class_names: list[str],
) -> bytes:
    """One row per image: grayscale image | truth | prediction, in the class colours of contact sheets."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(images)
    colours = palette(max(len(class_names), int(max(truth.max(), preds.max())) + 1))
    height, width = images.shape[1:]
    panel_w = 2.6
    panel_h = panel_w * height / width
    figure = Figure(figsize=(3 * panel_w + 0.4, n * (panel_h + 0.3) + 0.9), layout="constrained")
    axes = np.atleast_2d(figure.subplots(n, 3))
    for row in range(n):
        panels = (
            (images[row], {"cmap": "gray", "vmin": 0, "vmax": 255}),
            (colours[truth[row]], {}),
            (colours[preds[row]], {}),
        )
        for column, (picture, style) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(picture, interpolation="nearest", **style)
            ax.set_axis_off()
        axes[row, 0].set_title(titles[row], fontsize=8, loc="left")
    figure.suptitle("image | truth | prediction", fontsize=9)
    names = list(class_names) + [f"class {i}" for i in range(len(class_names), len(colours))]
    handles = [Patch(facecolor=colours[i], edgecolor="black", label=name) for i, name in enumerate(names)]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8)
    return _png(figure)


@contextmanager
def _overlay_progress(show: bool, total: int) -> Iterator[Callable[[str], None]]:
    """A transient rich bar on stderr over the overlay steps (model, data, predict, draw), if shown."""
    from rich.console import Console

    console = Console(stderr=True)
    if not (show and console.is_terminal):  # a bar in a log file is noise; the "wrote" lines suffice there
        yield lambda description: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        SpinnerColumn(),
        TextColumn("overlays: {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("starting", total=total)
        started = [False]

        def step(description: str) -> None:
            # Each call announces the step about to run and completes the previous one.
            bar.update(task, description=description, advance=1 if started[0] else 0)
            started[0] = True

        yield step
        bar.update(task, completed=total)


@dataclass
class OverlayRows:
    """The best run's predictions on the overlay rows (dataset row numbers), with their own mIoU."""

    rows: np.ndarray
    images: torch.Tensor
    truth: torch.Tensor
    preds: torch.Tensor
    scores: np.ndarray
    class_names: list[str]


def overlay_rows(
    run: dict, per_image: PerImage, store_path: Path, plugins: Any, *, count: int, step: Say
) -> OverlayRows:
    """Reload the run's best model and its data, and predict a fixed spread of its validation rows.

    The data comes back through the run's own resolved config, so the rows of ``val_per_image.npz`` index
    the same images they did in training; prediction uses the run's mixed precision setting, so the
    pictures show what validation scored.
    """
    from harness import api
    from harness.inference.device import pick_amp_dtype
    from harness.inference.scoring import predict_masks
    from harness.training.loop import load_data

    step("loading the model")
    loaded = api.load_run(run["run_id"], store=store_path, plugins=plugins)
    cfg = loaded.resolved.config
    step("loading the data")
    data = load_data(loaded.resolved)
    rows = per_image.indices[spread(len(per_image.indices), count)]
    if rows.max() >= len(data):
        raise HarnessError(
            f"run {run['run_id']} validated on row {int(rows.max())} but its data "
            f"({data.source}) now has {len(data)} images; the dataset changed since the run"
        )
    index = torch.as_tensor(rows)
    images, truth = data.images[index], data.masks[index]
    step(f"predicting {len(rows)} images")
    cpu = torch.device("cpu")  # a handful of images: not worth waking an accelerator
    preds = predict_masks(
        loaded.model,
        images,
        norm=loaded.norm,
        multiple=loaded.resolved.multiple,
        ignore_index=cfg.data.ignore_index,
        device=cpu,
        batch_size=len(rows),
        amp_dtype=pick_amp_dtype(cpu, cfg.train.amp),
    )
    confusion = per_image_confusion(preds, truth, cfg.data.num_classes, cfg.data.ignore_index)
    scores = miou_batch(confusion.numpy(), cfg.data.ignore_index)
    return OverlayRows(rows, images, truth, preds, scores, list(data.class_names))


def best_run_overlays(
    run: dict, per_image: PerImage, store_path: Path, plugins: Any, *, count: int, show_progress: bool
) -> bytes:
    """The overlay figure of the best run (a progress bar over its steps when asked and on a terminal)."""
    with _overlay_progress(show_progress, 4) as step:
        got = overlay_rows(run, per_image, store_path, plugins, count=count, step=step)
        titles = [
            f"#{int(r)}  mIoU {s:.2f}" if np.isfinite(s) else f"#{int(r)}"
            for r, s in zip(got.rows, got.scores, strict=True)
        ]
        step("drawing")
        return overlay_figure(
            got.images.numpy(), got.truth.numpy(), got.preds.numpy(), titles, got.class_names
        )


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


def _finished_runs(store_path: Path, filters: dict[str, str | None]) -> list[dict]:
    from harness import api

    runs = api.runs(store_path, "finished", **filters)
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
    pages: _Pages, best: dict, per_image: PerImage, store_path: Path, plugins: Any, **overlay: Any
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
    plugins: Any,
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
    plugins: Any = None,
) -> str:
    """The leaderboard as one self-contained HTML page: its table, then the report's figures for the top
    `top` finished runs (images embedded), so the single file can be mailed to a teammate."""
    store_path = resolve_store_path(store)
    pages = _Pages(None, lambda line: None)
    from harness import api

    finished = {r["run_id"]: r for r in api.runs(store_path, "finished")}
    if finished:
        rows = leaderboard_rows(list(finished.values()), metric)[:top]
        best = finished[rows[0]["run_id"]]
        classes = class_columns(rows, list(best.get("class_names") or []))
        _figures(pages, store_path, rows, finished, classes, metric, plugins, OVERLAY_IMAGES, False)
        pages.notes.insert(0, f"Figures: the top {len(rows)} finished runs by validation mIoU ({metric}).")
    return render_page(title, headers, cells, pages.figures, notes=pages.notes)


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
    plugins: Any = None,
    say: Say | None = None,
    show_progress: bool = False,
) -> list[Path]:
    """Write the report of the ``top`` finished runs (by ``metric``) into ``out``; returns the files written.

    ``say`` gets one line per file written. The best run's confusion matrix and overlays need its
    ``val_per_image.npz``; without it they are skipped with a note on the page rather than failing the
    whole report (runs recorded before per-image results were kept still get curves and bars).
    """
    if metric not in _METRIC_KEYS:
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
    index.write_text(render_page(title, headers, cells, pages.figures, notes=pages.notes), encoding="utf-8")
    pages.written.append(index)
    pages.say(f"wrote {index}")
    return pages.written
