"""The Python API: what the CLI calls and what a notebook calls.

import harness
result = harness.run({"arch": {"name": "unet"}, "train": {"epochs": 5}})
print(result.run_id, result.miou)
harness.leaderboard()                       # a pandas DataFrame
masks = harness.predict(result.run_id, "synthetic")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from harness.analysis.heldout import select
from harness.config import DEFAULT_CHOICES, Resolved, RunConfig, build_config, dataset_for, resolve
from harness.data.dataset import SegmentationData, load_npz
from harness.data.images import is_image_source, read_images, read_masks, write_masks
from harness.errors import DataError, HarnessError
from harness.inference.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    Exportable,
    export_onnx,
    onnx_max_difference,
)
from harness.inference.scoring import Normalisation
from harness.plugins import Registry, load_plugins
from harness.store import RunStore, resolve_store_path
from harness.training.checkpoints import load_best_model
from harness.training.predictor import Predictor, combine, expand, validation_data
from harness.training.run import RunResult, execute
from leaderboard.labels import Labeller
from leaderboard.table import group_rows, leaderboard_frame, leaderboard_rows

if TYPE_CHECKING:  # pandas is imported by leaderboard_frame, only when a DataFrame is asked for
    import pandas as pd

__all__ = [
    "run",
    "load_run",
    "leaderboard",
    "runs",
    "predict",
    "evaluate",
    "load_predictor",
    "export",
    "RunConfig",
    "RunResult",
    "LoadedRun",
]


def _registry(plugins: Registry | None) -> Registry:
    return plugins if plugins is not None else load_plugins()


def run(
    config: RunConfig | dict[str, Any] | None = None,
    *,
    store: str | Path | None = None,
    progress: bool = False,
    plugins: Registry | None = None,
) -> RunResult:
    """Train and record one run. `config` is a RunConfig or a dict of the same shape (TOML layout)."""
    registry = _registry(plugins)
    if isinstance(config, RunConfig):
        cfg, cli = config, {}
    else:
        cfg, cli = build_config(config or {})
    resolved = resolve(cfg, registry, cli)
    return execute(resolved, resolve_store_path(store), registry, progress=progress)


@dataclass
class LoadedRun:
    """A recorded run with its best checkpoint loaded into a ready model (eval mode, on the CPU)."""

    record: dict[str, Any]
    resolved: Resolved
    model: nn.Module
    norm: Normalisation

    @property
    def run_id(self) -> str:
        return self.record["run_id"]


def load_run(run_id: str, *, store: str | Path | None = None, plugins: Registry | None = None) -> LoadedRun:
    """The run's record and its best checkpoint (a unique prefix of the id is enough)."""
    with RunStore(resolve_store_path(store), create=False) as run_store:
        record = run_store.get_run(run_id)
    resolved, model, norm = load_best_model(record, _registry(plugins))
    return LoadedRun(record=record, resolved=resolved, model=model, norm=norm)


def leaderboard(
    metric: str = "an2dl",
    *,
    store: str | Path | None = None,
    status: str | None = "finished",
    arch: str | None = None,
    loss: str | None = None,
    balancer: str | None = None,
    grouped: bool = False,
    since: str | None = None,
    plugins: Registry | None = None,
) -> pd.DataFrame:
    """The ranked runs as a DataFrame (one row per run, per-class IoU as iou_<class> columns, the variant's
    `label` and the `data`; ranks count within a dataset); with `grouped`, one row per configuration and
    dataset across seeds (miou_mean, miou_std, n)."""
    labeller = Labeller(_registry(plugins), DEFAULT_CHOICES)
    rows = leaderboard_rows(runs(store, status, arch, loss, balancer, since), metric, labeller)
    return leaderboard_frame(group_rows(rows) if grouped else rows)


def runs(store, status=None, arch=None, loss=None, balancer=None, since=None) -> list[dict[str, Any]]:
    """Recorded runs matching the filters, newest first; [] (and no file created) when there is no store.

    `since` is an ISO UTC timestamp (see harness.parsing.parse_since for ages like "3d")."""
    path = resolve_store_path(store)
    if not path.exists():
        return []
    with RunStore(path, create=False) as run_store:
        return run_store.list_runs(arch=arch, loss=loss, balancer=balancer, status=status, since=since)


def load_source(source: str | SegmentationData, num_classes: int, plugins: Registry | None = None):
    """A dataset from a SegmentationData, a registered dataset name or an AN2DL .npz path."""
    if isinstance(source, SegmentationData):
        return source
    registry = _registry(plugins)
    spec = dataset_for(source, registry)
    if spec is not None:
        return spec.build(spec.parse_params(registry=registry))
    return load_npz(source, num_classes=num_classes)


def load_predictor(
    runs: str | Sequence[str],
    *,
    store: str | Path | None = None,
    plugins: Registry | None = None,
    tta: str = "none",
    weights: Sequence[float] | None = None,
    device: str = "auto",
) -> Predictor:
    """One run, or the ensemble of several (a run id or prefix, or a configuration hash or prefix for all
    its finished runs), under test-time augmentation `tta` (none, flips, d4); `weights` per run."""
    names = [runs] if isinstance(runs, str) else list(runs)
    path = resolve_store_path(store)
    with RunStore(path, create=False) as run_store:
        ids = [record["run_id"] for record in expand(names, run_store)]
    loaded = [load_run(run_id, store=path, plugins=plugins) for run_id in ids]
    return combine(loaded, tta=tta, weights=None if weights is None else list(weights)).to(device)


def predict(
    run_id: str | Sequence[str],
    data: str | SegmentationData,
    *,
    out: str | Path | None = None,
    store: str | Path | None = None,
    device: str = "auto",
    plugins: Registry | None = None,
    tta: str = "none",
    weights: Sequence[float] | None = None,
    palette: bool = False,
    notice: Callable[[str], None] | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Masks (M,H,W) uint8 for the data's `test_set`; with `out`, also the challenge's submission CSV.

    `data` a folder or glob of images: a list of (H,W) masks, one per image in name order; with `out` a
    folder, one PNG of class indices per image (and a coloured preview each with `palette`). Several
    runs are an ensemble; `notice` receives the lines saying what ran (TTA transforms, ensemble runs).
    """
    folder = isinstance(data, str) and is_image_source(data)
    if out is not None:
        check_output(Path(out) if str(out) else None, folder=folder)
    predictor = load_predictor(run_id, store=store, plugins=plugins, tta=tta, weights=weights, device=device)
    say = notice or (lambda line: None)
    if folder:
        images = read_images(data)
        if images.notice():
            say(images.notice())
        _describe(predictor, {image.shape for image in images.images}, say)
        masks = predictor.masks_groups(images.images)
        if out is not None:
            write_masks(masks, images.names, Path(out), palette=palette)
        return masks
    dataset = load_source(data, predictor.config.data.num_classes, plugins)
    if dataset.test_images is None or len(dataset.test_images) == 0:
        raise DataError(f"{dataset.source}: has no test_set to predict")
    _describe(predictor, {tuple(dataset.test_images.shape[1:])}, say)
    masks = predictor.masks(dataset.test_images).numpy()
    if out is not None:
        write_submission(masks, Path(out))
    return masks


def _describe(predictor: Predictor, shapes: set[tuple[int, ...]], say: Callable[[str], None]) -> None:
    if len(predictor.run_ids) > 1 or predictor.weights is not None:
        weights = "" if predictor.weights is None else f", weights {predictor.weights}"
        say(f"ensemble of {len(predictor.run_ids)} runs: {', '.join(predictor.run_ids)}{weights}")
    if predictor.tta != "none":
        for height, width in sorted(shapes):
            say(predictor.tta_line(height, width))


def check_output(out: Path | None, folder: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work: empty, a directory (a file when
    `folder`: masks of a folder of images go in a directory), in a missing or unwritable directory."""
    if out is None:
        raise HarnessError("--out is empty; give the path of the CSV to write")
    if folder and out.exists() and not out.is_dir():
        raise HarnessError(f"{out}: is a file; give a directory for the masks of a folder of images")
    if folder and out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise HarnessError(f"{out}: cannot write in it; choose another --out")
        return
    if out.is_dir():
        raise HarnessError(f"{out}: is a directory; give the path of the CSV to write")
    if not out.parent.exists():
        raise HarnessError(f"{out}: directory {out.parent} does not exist")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK | os.X_OK):
        raise HarnessError(f"{out}: cannot write in {out.parent}; choose another --out")


def write_submission(masks: np.ndarray, out: Path) -> None:
    """The challenge's CSV: header `id,0,...,H*W-1`, one row per image in order, masks row-major."""
    check_output(out)
    flat = masks.reshape(len(masks), -1).astype(np.int64)
    table = np.concatenate([np.arange(len(masks))[:, None], flat], axis=1)
    header = ",".join(["id", *map(str, range(flat.shape[1]))])
    tmp = out.with_name(out.name + ".tmp")
    try:
        np.savetxt(tmp, table, fmt="%d", delimiter=",", header=header, comments="")
        tmp.replace(out)
    except OSError as exc:  # a full disk, or `out` became a directory meanwhile: no temporary file left
        raise HarnessError(f"{out}: cannot be written ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


VARIANT_KEYS = ("miou_an2dl", "miou_fg", "iou")  # what `evaluate` reports of each scoring variant


def evaluate(
    run_id: str | Sequence[str],
    data: str | SegmentationData,
    *,
    store: str | Path | None = None,
    device: str = "auto",
    plugins: Registry | None = None,
    include_training: bool = False,
    limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    tta: str = "none",
    weights: Sequence[float] | None = None,
    masks: str | None = None,
) -> dict[str, Any]:
    """The metrics of a run (several runs: their ensemble; `tta` as for predict, the result then says
    which transforms ran) on the labelled images (`training_set`) of `data`; or, with `masks` (a folder of
    PNG masks named like the images), on the folder or glob of images `data`.

    On the runs' own data (recognised by content) the images any of them trained on are left out unless
    `include_training`; `limit` scores at most that many; `scored` says which images were scored.
    `on_start(images)` and `on_batch(images)` report progress (a bar's total and its advance).
    For a model with `scoring_variants` (see `ArchitectureSpec`), "variants" also maps each variant's
    name to its mIoU (an2dl, fg) and per-class IoU: maskrcnn's detections, semantic head and both."""
    predictor = load_predictor(run_id, store=store, plugins=plugins, tta=tta, weights=weights, device=device)
    cfg = predictor.config
    extra: dict[str, Any] = {}
    if len(predictor.run_ids) > 1 or weights is not None:
        extra = {"runs": predictor.run_ids, "weights": predictor.weights}
    if masks is not None or (isinstance(data, str) and is_image_source(data)):
        if masks is None:
            raise HarnessError(f"{data}: a folder of images needs --masks MASKS_DIR to be scored")
        images = read_images(str(data))
        truth = read_masks(masks, images.names, [i.shape for i in images.images], cfg.data.num_classes)
        shapes = sorted({image.shape for image in images.images})
        if predictor.tta != "none":
            extra["tta"] = "; ".join(predictor.tta_line(*shape) for shape in shapes)
        result = predictor.score_groups(images.images, truth).to_dict(list(predictor.class_names))
        scored = f"all {len(truth)} images of {data} (a folder is never the data a run trained on)"
        return {
            "run_id": predictor.run_ids[0], "data": str(data), "images": len(truth), "scored": scored,
            **extra, **result,
        }  # fmt: skip
    dataset = load_source(data, cfg.data.num_classes, plugins)
    chosen = select(dataset, predictor.runs, include_training=include_training, limit=limit)
    rows = torch.as_tensor(chosen.rows)
    images, truth = dataset.images[rows], dataset.masks[rows]
    ignored = cfg.data.ignore_index
    if ignored is not None and bool((truth == ignored).all()):
        raise DataError(
            f"{dataset.source}: nothing to score: every mask pixel of the {len(rows)} images scored is "
            f"class {ignored} ({dataset.class_names[ignored]}), which the metric ignores"
        )
    if predictor.tta != "none":
        extra["tta"] = predictor.tta_line(*dataset.images.shape[1:])
    variant_names = predictor.scoring_variants
    if on_start is not None:
        on_start(len(rows) * (1 + len(variant_names)))  # each variant scores the images again

    def scored() -> dict[str, Any]:
        metrics, _ = predictor.score(images, truth, on_batch=on_batch)
        return metrics.to_dict(list(dataset.class_names))

    result = scored()
    # A model whose output combines parts (maskrcnn's detections and semantic head) is scored per part.
    variants = {}
    for name in variant_names:
        with predictor.scoring_variant(name):
            variants[name] = {key: value for key, value in scored().items() if key in VARIANT_KEYS}
    if variants:
        extra["variants"] = variants
    return {
        "run_id": predictor.run_ids[0],
        "data": dataset.source,
        "images": len(rows),
        "scored": chosen.note,
        "trained_on": chosen.trained_on,
        **extra,
        **result,
    }


def export(
    run_id: str,
    *,
    out: str | Path | None = None,
    format: str = "onnx",
    store: str | Path | None = None,
    plugins: Registry | None = None,
    check_images: int = 4,
) -> dict[str, Any]:
    """Write the run's model as ONNX (normalisation built in, dynamic batch; default `model.onnx` in the
    run's directory), run it in onnxruntime on `check_images` validation images and give the largest
    difference to PyTorch."""
    if format != "onnx":
        raise HarnessError(f"unknown export format {format!r} (choices: onnx)")
    loaded = load_run(run_id, store=store, plugins=plugins)
    arch = loaded.resolved.arch
    if arch.instance_based:
        raise HarnessError(
            f"run {loaded.run_id}: architecture {arch.name!r} cannot be exported to ONNX: its detection is "
            "data-dependent (proposal counts, NMS), which torch.onnx.export(dynamo=True) cannot trace"
        )
    path = Path(out) if out is not None else Path(loaded.record["checkpoint"]).with_name("model.onnx")
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise HarnessError(f"{path}: cannot write there; give --out a file in a writable directory")
    images = validation_data(loaded.resolved).images[:check_images].unsqueeze(1).float()
    module = Exportable(loaded.model.float().eval(), loaded.norm, loaded.resolved.multiple)
    export_onnx(module, images[:2] if len(images) > 1 else images.repeat(2, 1, 1, 1), path, arch=arch.name)
    difference = onnx_max_difference(path, module, images)
    return {
        "run_id": loaded.run_id,
        "out": str(path),
        "opset": OPSET,
        "input": f"{INPUT_NAME}: float32 (batch, 1, {images.shape[2]}, {images.shape[3]}), pixels 0-255",
        "output": f"{OUTPUT_NAME}: float32 (batch, {loaded.resolved.config.data.num_classes}, "
        f"{images.shape[2]}, {images.shape[3]})",
        "images": len(images),
        "max_abs_diff": difference,
    }
