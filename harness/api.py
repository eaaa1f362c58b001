"""The Python API: what the CLI calls and what a notebook calls.

import harness
result = harness.run({"arch": {"name": "unet"}, "train": {"epochs": 5}})
print(result.run_id, result.miou)
harness.leaderboard()                       # a pandas DataFrame
masks = harness.predict(result.run_id, "synthetic")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from harness.analysis.heldout import select
from harness.config import DEFAULT_CHOICES, Resolved, RunConfig, build_config, dataset_for, resolve
from harness.data.dataset import SegmentationData, load_npz
from harness.errors import DataError, HarnessError
from harness.inference.device import eval_batch_size, pick_amp_dtype, pick_device
from harness.inference.scoring import Normalisation, predict_masks, score
from harness.plugins import Registry, load_plugins
from harness.store import RunStore, resolve_store_path
from harness.training.checkpoints import load_best_model
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


def _device_and_amp(loaded: LoadedRun, device: str) -> tuple[torch.device, torch.dtype | None]:
    target = pick_device(device)
    loaded.model.to(target)
    return target, pick_amp_dtype(target, loaded.resolved.config.train.amp)


def predict(
    run_id: str,
    data: str | SegmentationData,
    *,
    out: str | Path | None = None,
    store: str | Path | None = None,
    device: str = "auto",
    plugins: Registry | None = None,
) -> np.ndarray:
    """Masks (M,H,W) uint8 for the data's `test_set`; with `out`, also the challenge's submission CSV."""
    if out is not None:
        check_output(Path(out) if str(out) else None)
    loaded = load_run(run_id, store=store, plugins=plugins)
    cfg = loaded.resolved.config
    dataset = load_source(data, cfg.data.num_classes, plugins)
    if dataset.test_images is None or len(dataset.test_images) == 0:
        raise DataError(f"{dataset.source}: has no test_set to predict")
    target, amp = _device_and_amp(loaded, device)
    masks = predict_masks(
        loaded.model,
        dataset.test_images,
        norm=loaded.norm,
        multiple=loaded.resolved.multiple,
        ignore_index=cfg.data.ignore_index,
        device=target,
        batch_size=eval_batch_size(target, cfg.train.eval_batch_size),
        amp_dtype=amp,
    ).numpy()
    if out is not None:
        write_submission(masks, Path(out))
    return masks


def check_output(out: Path | None) -> None:
    """Refuse an output path that cannot be written, before any work: empty, a directory, in a missing or
    unwritable directory."""
    if out is None:
        raise HarnessError("--out is empty; give the path of the CSV to write")
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
    run_id: str,
    data: str | SegmentationData,
    *,
    store: str | Path | None = None,
    device: str = "auto",
    plugins: Registry | None = None,
    include_training: bool = False,
    limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The run's metrics on the labelled images (`training_set`) of `data`.

    On the run's own data (recognised by content) the images it trained on are left out unless
    `include_training`; `limit` scores at most that many; `scored` says which images were scored.
    `on_start(images)` and `on_batch(images)` report progress (a bar's total and its advance).
    For a model with `scoring_variants` (see `ArchitectureSpec`), "variants" also maps each variant's
    name to its mIoU (an2dl, fg) and per-class IoU: maskrcnn's detections, semantic head and both."""
    loaded = load_run(run_id, store=store, plugins=plugins)
    cfg = loaded.resolved.config
    dataset = load_source(data, cfg.data.num_classes, plugins)
    chosen = select(dataset, loaded.record, cfg, include_training=include_training, limit=limit)
    rows = torch.as_tensor(chosen.rows)
    images, masks = dataset.images[rows], dataset.masks[rows]
    ignored = cfg.data.ignore_index
    if ignored is not None and bool((masks == ignored).all()):
        raise DataError(
            f"{dataset.source}: nothing to score: every mask pixel of the {len(rows)} images scored is "
            f"class {ignored} ({dataset.class_names[ignored]}), which the metric ignores"
        )
    target, amp = _device_and_amp(loaded, device)
    variant_names = tuple(getattr(loaded.model, "scoring_variants", ()))
    if on_start is not None:
        on_start(len(rows) * (1 + len(variant_names)))  # each variant scores the images again

    def scored() -> dict[str, Any]:
        metrics, _, _ = score(
            loaded.model,
            images,
            masks,
            norm=loaded.norm,
            multiple=loaded.resolved.multiple,
            num_classes=cfg.data.num_classes,
            ignore_index=ignored,
            device=target,
            batch_size=eval_batch_size(target, cfg.train.eval_batch_size),
            amp_dtype=amp,
            on_batch=on_batch,
        )
        return metrics.to_dict(list(dataset.class_names))

    result = scored()
    # A model whose output combines parts (maskrcnn's detections and semantic head) is scored per part.
    variants = {}
    for name in variant_names:
        with loaded.model.scoring_variant(name):
            variants[name] = {key: value for key, value in scored().items() if key in VARIANT_KEYS}
    extra = {"variants": variants} if variants else {}
    return {
        "run_id": loaded.run_id,
        "data": dataset.source,
        "images": len(rows),
        "scored": chosen.note,
        "trained_on": chosen.trained_on,
        **result,
        **extra,
    }
