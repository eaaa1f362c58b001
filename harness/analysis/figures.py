"""The report's figures, drawn on matplotlib's Agg canvas and returned as PNG bytes.

Learning curves and per-class IoU bars of the top runs, a row-normalised confusion matrix, and
image | truth | prediction overlays. Everything is drawn on ``Figure`` directly (never pyplot), so no
display is needed and no global figure state is left behind.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from harness.data.sheets import palette

# The per-epoch history key of each metric's validation mIoU.
HISTORY_KEYS = {"an2dl": "val_miou", "fg": "val_miou_fg"}
_DPI = 100


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
    """A row's legend entry: the `legend` its table gave it (`#rank label`), else its rank and run id."""
    return str(row.get("legend") or f"#{row['rank']} {row['run_id']}")


def learning_curves(rows: list[dict], histories: dict[str, list[dict]], metric: str) -> bytes:
    """Train (solid) and validation (dashed) loss, and validation mIoU, per epoch; one colour per run.

    Losses of different kinds do not share a scale (a dice loss is at most 1, a cross-entropy is not), so
    when the rows train different losses each curve is drawn relative to its own first train loss. The
    legend sits outside the axes, to the right, where it covers no curve.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.6), layout="constrained")
    loss_ax, miou_ax = figure.subplots(1, 2)
    history_key = HISTORY_KEYS[metric]
    relative = len({row.get("loss") for row in rows}) > 1
    for row, colour in zip(rows, _colours(len(rows)), strict=True):
        history = histories.get(row["run_id"]) or []
        epochs = [h["epoch"] for h in history]
        label = _run_label(row)
        train = [_nan(h.get("train_loss")) for h in history]
        val = [_nan(h.get("val_loss")) for h in history]
        first = next((v for v in train if v == v), None)  # v == v: the first that is not NaN
        if relative and first:
            train, val = [v / first for v in train], [v / first for v in val]
        loss_ax.plot(epochs, train, "-o", color=colour, ms=3, label=label)
        loss_ax.plot(epochs, val, "--", color=colour)
        miou_ax.plot(epochs, [_nan(h.get(history_key)) for h in history], "-o", color=colour, ms=3)
    if relative:
        loss_ax.set(
            title="loss relative to the first train loss\n(losses differ; solid: train, dashed: validation)",
            xlabel="epoch",
            ylabel="relative loss",
        )
    else:
        loss_ax.set(title="loss (solid: train, dashed: validation)", xlabel="epoch", ylabel="loss")
    miou_ax.set(title=f"validation mIoU ({metric})", xlabel="epoch", ylabel="mIoU")
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if rows:
        figure.legend(loc="outside right upper", fontsize=7)
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
