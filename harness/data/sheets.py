"""Contact sheets: PNG grids of (grayscale image | colour mask) pairs, to look at data before training.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so no display is needed and
no global figure state is left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.data.dataset import CLASS_NAMES, SegmentationData
from harness.data.inspect import check_report
from harness.errors import HarnessError

MAX_PAIRS = 64

# Fixed per class so sheets compare across runs; background is a dull grey because the metric ignores it:
# background dark grey, soil orange, bedrock blue, sand yellow, big rock magenta.
CLASS_COLOURS = ("#3a3a3a", "#e08a2c", "#2f6fd0", "#f2dc4a", "#d63cd6")

# Layout in inches: the longer side of each panel, the gaps and the bands for titles and the legend.
_PANEL = 2.0
_GAP, _PAIR_GAP, _MARGIN = 0.04, 0.25, 0.1
_TITLE, _LEGEND = 0.22, 0.4
_DPI = 100


def palette(num_colours: int) -> np.ndarray:
    """(num_colours, 3) float RGB in 0-1: the class colours, then matplotlib's tab20 for any extra class."""
    from matplotlib import colormaps, colors

    extra = colormaps["tab20"].colors
    rgb = [colors.to_rgb(h) for h in CLASS_COLOURS] + [extra[i % len(extra)] for i in range(num_colours)]
    return np.array(rgb[:num_colours])


def _require_matplotlib() -> None:
    # matplotlib is needed for sheets alone, so the rest of the harness runs without it.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise HarnessError(
            "drawing a sheet needs matplotlib; install it with: pip install matplotlib"
        ) from None


def contact_sheet(
    images: np.ndarray | torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    out: str | Path,
    *,
    titles: list[str] | None = None,
    columns: int = 4,
    class_names: tuple[str, ...] | list[str] = CLASS_NAMES,
) -> Path:
    """Write a PNG grid of `columns` (image | mask) pairs per row, with a class legend; returns `out`.

    `images` and `masks` are (N, H, W), 1 <= N <= MAX_PAIRS; uint8 images are shown on a fixed 0-255
    scale, other dtypes autoscaled. Raises HarnessError (one line) for a bad output path or bad input.
    """
    _require_matplotlib()
    out = _check_out(Path(out))
    images, masks = _as_numpy(images), _as_numpy(masks)
    _check_pairs(images, masks, titles, columns)
    # Fewer pairs than columns would leave empty space on the right; the rows then hold them all.
    columns = min(columns, len(images))
    colours = palette(max(len(class_names), int(masks.max()) + 1))
    figure = _figure(len(images), columns, images.shape[1:], bool(titles))
    rows = -(-len(images) // columns)
    for k in range(len(images)):
        left, bottom = _pair_origin(k, columns, rows, images.shape[1:], bool(titles))
        image_axes, mask_axes = _pair_axes(figure, left, bottom, images.shape[1:])
        scale = {"vmin": 0, "vmax": 255} if images.dtype == np.uint8 else {}
        image_axes.imshow(images[k], cmap="gray", interpolation="nearest", **scale)
        mask_axes.imshow(colours[masks[k]], interpolation="nearest")
        if titles:
            image_axes.set_title(titles[k], fontsize=8, loc="left", pad=2)
    _legend(figure, colours, class_names)
    try:
        figure.savefig(out, format="png", dpi=_DPI)
    except OSError as exc:
        raise HarnessError(f"{out}: cannot write the contact sheet ({exc.strerror or exc})") from None
    return out


def _check_out(out: Path) -> Path:
    if not out.parent.is_dir():
        raise HarnessError(f"{out}: folder {out.parent} does not exist; create it or pick another path")
    if out.is_dir():
        raise HarnessError(f"{out}: is a directory; pass a file name such as {out / 'sheet.png'}")
    return out


def _check_pairs(images: np.ndarray, masks: np.ndarray, titles: list[str] | None, columns: int) -> None:
    if images.ndim != 3 or images.shape != masks.shape:
        raise HarnessError(
            f"a contact sheet needs (N, H, W) images and masks alike, got {images.shape} and {masks.shape}"
        )
    if not 1 <= len(images) <= MAX_PAIRS:
        raise HarnessError(f"a contact sheet shows 1 to {MAX_PAIRS} pairs, got {len(images)}")
    if titles is not None and len(titles) != len(images):
        raise HarnessError(f"{len(titles)} titles for {len(images)} pairs; give one title per pair")
    if columns < 1:
        raise HarnessError(f"a contact sheet needs at least 1 column, got {columns}")
    if masks.dtype.kind not in "ui" or masks.min() < 0:
        raise HarnessError(
            f"masks must hold class ids 0, 1, ... (got dtype {masks.dtype}, min {masks.min()})"
        )


def _panel_size(hw: tuple[int, ...]) -> tuple[float, float]:
    height, width = hw
    scale = _PANEL / max(height, width)
    return width * scale, height * scale


def _figure(n: int, columns: int, hw: tuple[int, ...], titled: bool):
    from matplotlib.figure import Figure

    panel_w, panel_h = _panel_size(hw)
    rows = -(-n // columns)
    width = 2 * _MARGIN + columns * (2 * panel_w + _GAP) + (columns - 1) * _PAIR_GAP
    height = 2 * _MARGIN + _LEGEND + rows * (panel_h + (_TITLE if titled else _GAP * 2))
    return Figure(figsize=(width, height), dpi=_DPI)


def _pair_origin(k: int, columns: int, rows: int, hw: tuple[int, ...], titled: bool) -> tuple[float, float]:
    """The bottom-left corner, in inches, of the k-th pair; pairs fill rows top-down, left to right."""
    panel_w, panel_h = _panel_size(hw)
    row_h = panel_h + (_TITLE if titled else _GAP * 2)
    row, column = divmod(k, columns)
    left = _MARGIN + column * (2 * panel_w + _GAP + _PAIR_GAP)
    bottom = _MARGIN + _LEGEND + (rows - 1 - row) * row_h
    return left, bottom


def _pair_axes(figure, left: float, bottom: float, hw: tuple[int, ...]) -> tuple:
    width, height = figure.get_size_inches()
    panel_w, panel_h = _panel_size(hw)
    axes = []
    for x in (left, left + panel_w + _GAP):
        # add_axes takes fractions of the figure, so inches are divided by its size.
        ax = figure.add_axes((x / width, bottom / height, panel_w / width, panel_h / height))
        ax.set_axis_off()
        axes.append(ax)
    return tuple(axes)


def _legend(figure, colours: np.ndarray, class_names: tuple[str, ...] | list[str]) -> None:
    from matplotlib.patches import Patch

    names = list(class_names) + [f"class {i}" for i in range(len(class_names), len(colours))]
    handles = [Patch(facecolor=colours[i], edgecolor="black", label=name) for i, name in enumerate(names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)


def sheet_rows(report: dict, *, limit: int = MAX_PAIRS, per_group: int = 4) -> tuple[list[int], list[str]]:
    """The rows an inspection sheet shows, with their titles.

    Outliers first (all of them up to `limit`); without outliers, `per_group` members of each duplicate
    group, largest group first; with neither, the first `limit` images as a plain sample.
    """
    if report["outliers"]:
        rows = report["outliers"][:limit]
        return rows, [f"#{i} outlier" for i in rows]
    rows, titles = [], []
    for number, group in enumerate(report["duplicate_mask_groups"], start=1):
        for i in group["indices"][:per_group]:
            if len(rows) == limit:
                return rows, titles
            rows.append(i)
            titles.append(f"#{i} group {number} ({group['size']}x)")
    if not rows:
        rows = list(range(min(limit, report["summary"]["images"])))
        titles = [f"#{i}" for i in rows]
    return rows, titles


def outlier_sheet(data: SegmentationData, report: dict, out: str | Path, *, columns: int = 4) -> Path:
    """The contact sheet for `harness data inspect --sheet`: outliers, else the largest duplicate groups."""
    check_report(data, report)
    rows, titles = sheet_rows(report)
    if not rows:
        raise HarnessError(f"{data.source}: the dataset has no images to draw")
    index = torch.as_tensor(rows, dtype=torch.long)
    return contact_sheet(
        data.images[index],
        data.masks[index],
        out,
        titles=titles,
        columns=columns,
        class_names=data.class_names,
    )


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
