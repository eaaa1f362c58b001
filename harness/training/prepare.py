"""Before a run is recorded: everything built and checked, then moved onto the device.

`prepare_on_device` is what a run (and the benchmark) calls: `prepare` loads, cleans and splits the
data, balances the training split, builds model and loss and measures the model's cost; bad input
(data, plugins, parameters, settings that cannot work) fails here, before the store is opened. Then the
model and the whole dataset go to the device, where they stay for the run.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.augment.backend import Augmentation
from harness.config import Resolved
from harness.data.dataset import SegmentationData, load_npz
from harness.data.distance import signed_distance_maps
from harness.data.folds import run_split
from harness.data.inspect import clean as clean_outliers
from harness.data.inspect import inspect as inspect_data
from harness.errors import ConfigError, DataError
from harness.inference.cost import count_params, forward_gflops
from harness.inference.device import pick_amp_dtype, pick_device
from harness.inference.scoring import Normalisation, pad_to_multiple
from harness.training.distributed import SINGLE, World


@dataclass
class Prepared:
    """Everything built and checked before the run is recorded: bad input fails here, storing nothing."""

    data: SegmentationData
    train_images: torch.Tensor
    train_masks: torch.Tensor
    val_images: torch.Tensor
    val_masks: torch.Tensor
    val_indices: torch.Tensor  # rows of `data` held out for validation (paired comparisons use them)
    class_weights: torch.Tensor | None
    model: nn.Module
    loss_fn: nn.Module
    norm: Normalisation
    device: torch.device
    amp_dtype: torch.dtype | None
    params: int
    gflops: float | None
    augmentation: Augmentation  # the pipeline, seed and distance-map function the loop augments with
    train_strong: torch.Tensor | None = None  # (N,) bool rows marked for stronger augmentation
    train_distances: torch.Tensor | None = None  # (N,K,H,W) float16, only for losses that need them
    val_distances: torch.Tensor | None = None
    world: World = SINGLE  # the processes sharing this run (torchrun); SINGLE for a plain run
    scaler: Any = None  # a GradScaler under fp16 autocast (CUDA without bf16); bf16 needs none
    fitted: dict[str, Any] | None = (
        None  # what the architecture's fit step fitted (recorded with the metrics)
    )


def prepare_on_device(resolved: Resolved, world: World = SINGLE) -> Prepared:
    """`prepare`, then the model, loss and data moved to the run's device (and its GradScaler made)."""
    prep = prepare(resolved, world)
    if world.size > 1 and len(prep.train_images) < world.size:
        raise ConfigError(f"{len(prep.train_images)} training images cannot be shared by {world.size} ranks")
    if world.size > 1 and resolved.config.train.sync_bn:
        # Converted in place before DDP wraps it; the checkpoint keys stay those of plain BatchNorm.
        prep.model = nn.SyncBatchNorm.convert_sync_batchnorm(prep.model)
    if resolved.config.train.channels_last:
        prep.model.to(memory_format=torch.channels_last)
    prep.model.to(prep.device)
    prep.loss_fn.to(prep.device)
    if prep.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: the autotuned kernels pay off at once
    # The data lives on the device for the whole run: batches are gathered by index there, never copied.
    for name in ("train_images", "train_masks", "train_strong", "val_images", "val_masks"):
        value = getattr(prep, name)
        if value is not None:
            setattr(prep, name, value.to(prep.device))
    if prep.amp_dtype == torch.float16:  # fp16 (no bf16 on this GPU) needs loss scaling; bf16 does not
        prep.scaler = torch.amp.GradScaler(prep.device.type)
    return prep


def prepare(resolved: Resolved, world: World = SINGLE) -> Prepared:
    """Load, split and balance the data; build model and loss; measure the model's cost.

    Under torchrun every rank prepares the same data and model (same seed); `world` names its device.
    """
    cfg = resolved.config
    seed_everything(cfg.seed)
    device = world.device or pick_device(cfg.train.device)
    data = load_data(resolved)
    train_idx, val_idx = run_split(data, cfg.data, cfg.seed)
    _check_labelled(data, train_idx, val_idx, cfg.data.ignore_index)
    balance = resolved.balancer.build(resolved.balancer_params)
    balanced = balance(
        data.images[train_idx],
        data.masks[train_idx],
        num_classes=data.num_classes,
        ignore_index=cfg.data.ignore_index,
        seed=cfg.seed,
    )
    model = resolved.arch.build(resolved.arch_params, in_channels=1, num_classes=data.num_classes)
    loss_fn = resolved.loss.build(
        resolved.loss_params,
        num_classes=data.num_classes,
        ignore_index=cfg.data.ignore_index,
        class_weights=balanced.class_weights,
    )
    _check_supervision_weights(resolved, model, data)
    # An architecture that adapts to its data (maskrcnn's anchors) does it once, before the cost.
    fit = resolved.arch.fit
    fitted = fit(model, balanced.masks.cpu()) if fit is not None else None
    params = count_params(model)
    try:
        gflops = forward_gflops(model)
    except Exception:  # some ops have no FLOP formula; cost is informative, not essential
        gflops = None
    augmentation = augmentation_of(resolved)
    distances = augmentation.distance_maps
    return Prepared(
        data=data,
        train_images=balanced.images,
        train_masks=balanced.masks,
        val_images=data.images[val_idx],
        val_masks=data.masks[val_idx],
        val_indices=torch.as_tensor(val_idx),
        class_weights=balanced.class_weights,
        model=model,
        loss_fn=loss_fn,
        norm=Normalisation.of(balanced.images),
        device=device,
        amp_dtype=pick_amp_dtype(device, cfg.train.amp),
        params=params,
        gflops=gflops,
        augmentation=augmentation,
        train_strong=balanced.strong,
        train_distances=None if distances is None else distances(balanced.masks),
        val_distances=None if distances is None else distances(data.masks[val_idx]),
        world=world,
        fitted=fitted,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(resolved: Resolved) -> SegmentationData:
    """The configured dataset, limited to the first N images if asked."""
    cfg = resolved.config.data
    if resolved.dataset is not None:
        data = resolved.dataset.build(resolved.data_params)
    else:
        data = load_npz(cfg.source, num_classes=cfg.num_classes)
    if cfg.clean == "outliers":
        data = clean_outliers(data, inspect_data(data))
    if data.num_classes != cfg.num_classes:
        raise DataError(f"{data.source}: has {data.num_classes} classes; config says {cfg.num_classes}")
    if cfg.limit is not None:
        data = data.subset(torch.arange(min(cfg.limit, len(data))))
    return data


def _check_labelled(data: SegmentationData, train_idx, val_idx, ignore_index: int | None) -> None:
    """Refuse, before anything is recorded, a split with nothing to learn from or nothing to score."""
    for part, rows in (("training", train_idx), ("validation", val_idx)):
        masks = data.masks[torch.as_tensor(rows)]
        if ignore_index is not None and not bool((masks != ignore_index).any()):
            raise DataError(
                f"{data.source}: every pixel of the {part} split is class {ignore_index} (ignored): "
                "nothing to learn from or score"
            )


def _check_supervision_weights(resolved: Resolved, model: nn.Module, data: SegmentationData) -> None:
    """Catch a wrong number of deep-supervision weights before the run is recorded, not at step one."""
    weights = resolved.config.train.deep_supervision_weights
    if not (resolved.arch.deep_supervision and weights):
        return
    probe = copy.deepcopy(model).train()  # a copy: the probe must not touch the real BatchNorm statistics
    with torch.no_grad():
        x, _ = pad_to_multiple(torch.zeros(2, 1, *data.images.shape[-2:]), resolved.multiple)
        outputs = len(probe(x))
    if len(weights) != outputs:
        raise ConfigError(
            f"train.deep_supervision_weights has {len(weights)} values; '{resolved.arch.name}' "
            f"with these params gives {outputs} outputs"
        )


def augmentation_of(resolved: Resolved) -> Augmentation:
    """How the run augments: its pipeline, its seed and, when the loss needs them, its distance maps."""
    distances: Callable[[torch.Tensor], torch.Tensor] | None = None
    if resolved.needs_distance_maps:
        cfg = resolved.config.data
        distances = functools.partial(
            signed_distance_maps, num_classes=cfg.num_classes, ignore_index=cfg.ignore_index
        )
    return Augmentation(resolved.config.augment.pipeline(), resolved.config.seed, distances)


def check_distributed(resolved: Resolved, world: World) -> None:
    """Settings that cannot work with `world.size` processes fail before anything is built."""
    cfg = resolved.config.train
    if cfg.batch_size % world.size:
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} is the global batch: it must divide evenly among the "
            f"{world.size} processes (each takes batch_size / {world.size})"
        )
    if cfg.sync_bn and world.device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); leave it off on CPU")
