"""The best run's overlays: its best checkpoint and data reloaded, a fixed spread of its validation images
predicted, and the image | truth | prediction figure drawn, each image titled with its own mIoU.

The model is rebuilt from the run's stored config and checkpoint through the lower layers (config, store,
training's checkpoints and data loading, inference), not through `harness.api`, which sits above analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.analysis.compare import PerImage, miou_batch
from harness.analysis.figures import overlay_figure
from harness.errors import HarnessError
from harness.inference.device import pick_amp_dtype
from harness.inference.metrics import per_image_confusion
from harness.inference.scoring import predict_masks
from harness.plugins import Registry, load_plugins
from harness.store import RunStore
from harness.training.checkpoints import load_best_model

OVERLAY_IMAGES = 8

Say = Callable[[str], None]


def spread(count: int, wanted: int = OVERLAY_IMAGES) -> np.ndarray:
    """``wanted`` positions evenly spread over ``range(count)``, first and last included; fixed per count."""
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round().astype(np.int64))


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
    run: dict, per_image: PerImage, store_path: Path, plugins: Registry | None, *, count: int, step: Say
) -> OverlayRows:
    """Reload the run's best model and its data, and predict a fixed spread of its validation rows.

    The data comes back through the run's own resolved config, so the rows of ``val_per_image.npz`` index
    the same images they did in training; prediction uses the run's mixed precision setting, so the
    pictures show what validation scored.
    """
    # The training stack is imported only when overlays are drawn.
    from harness.training.prepare import load_data

    step("loading the model")
    with RunStore(store_path, create=False) as run_store:
        record = run_store.get_run(run["run_id"])
    resolved, model, norm = load_best_model(record, plugins if plugins is not None else load_plugins())
    cfg = resolved.config
    step("loading the data")
    data = load_data(resolved)
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
        model,
        images,
        norm=norm,
        multiple=resolved.multiple,
        ignore_index=cfg.data.ignore_index,
        device=cpu,
        batch_size=len(rows),
        amp_dtype=pick_amp_dtype(cpu, cfg.train.amp),
    )
    confusion = per_image_confusion(preds, truth, cfg.data.num_classes, cfg.data.ignore_index)
    scores = miou_batch(confusion.numpy(), cfg.data.ignore_index)
    return OverlayRows(rows, images, truth, preds, scores, list(data.class_names))


def best_run_overlays(
    run: dict,
    per_image: PerImage,
    store_path: Path,
    plugins: Registry | None,
    *,
    count: int,
    show_progress: bool,
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
