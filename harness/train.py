"""The training loop, top to bottom: data, balancer, model, loss, loop, validation, checkpoint, record.

Extension goes through the lifecycle hooks (hookspecs.py), never through subclasses. The loop keeps
the whole dataset as uint8 tensors on the device and does not sync the host inside an epoch.
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.augment import build_augmenter
from harness.config import Resolved
from harness.cost import count_params, forward_gflops
from harness.data import SegmentationData, load_npz, split
from harness.device import pick_amp_dtype, pick_device
from harness.distance import signed_distance_maps
from harness.distributed import SINGLE, NullStore, SilentRegistry, World, launched_size, process_group
from harness.errors import ConfigError, DataError
from harness.infer import Normalisation, autocast_for, forward_logits, pad_to_multiple, save_checkpoint, score
from harness.inspect import clean as clean_outliers
from harness.inspect import inspect as inspect_data
from harness.metrics import metrics_from_confusion
from harness.progress import ConsoleProgress
from leaderboard.store import RunStore

CHECKPOINT_NAME = "best.pt"
# The best epoch's confusion matrix per validation image: `harness compare` bootstraps over these.
PER_IMAGE_NAME = "val_per_image.npz"


def save_per_image(path: Path, indices: torch.Tensor, confusion: torch.Tensor) -> None:
    """Atomically write the validation rows and their (N, K, K) confusion matrices."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, indices=indices.cpu().numpy(), confusion=confusion.cpu().numpy())
    tmp.replace(path)


@dataclass(frozen=True)
class RunInfo:
    """What lifecycle hooks see of a run."""

    run_id: str
    config: dict[str, Any]
    run_dir: Path
    device: str
    store_path: Path


@dataclass
class RunResult:
    """The outcome of one run, as recorded in the store."""

    run_id: str
    status: str
    metrics: dict[str, Any] | None
    epochs: int
    best_epoch: int | None
    wall_time: float
    train_img_s: float | None
    checkpoint: Path | None
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def miou(self) -> float | None:
        return (self.metrics or {}).get("miou_an2dl")


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


def new_run_id(arch: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{arch}-{secrets.token_hex(3)}"


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
    train_strong: torch.Tensor | None = None  # (N,) bool rows marked for stronger augmentation
    train_distances: torch.Tensor | None = None  # (N,K,H,W) float16, only for losses that need them
    val_distances: torch.Tensor | None = None
    world: World = SINGLE  # the processes sharing this run (torchrun); SINGLE for a plain run


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


def prepare(resolved: Resolved, world: World = SINGLE) -> Prepared:
    """Load, split and balance the data; build model and loss; measure the model's cost.

    Under torchrun every rank prepares the same data and model (same seed); `world` names its device.
    """
    cfg = resolved.config
    seed_everything(cfg.seed)
    device = world.device or pick_device(cfg.train.device)
    data = load_data(resolved)
    train_idx, val_idx = split(data.masks, cfg.data.val_fraction, cfg.seed, data.num_classes)
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
    params = count_params(model)
    try:
        gflops = forward_gflops(model)
    except Exception:  # some ops have no FLOP formula; cost is informative, not essential
        gflops = None
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
        train_strong=balanced.strong,
        train_distances=_distances(resolved, balanced.masks),
        val_distances=_distances(resolved, data.masks[val_idx]),
        world=world,
    )


def _distances(resolved: Resolved, masks: torch.Tensor) -> torch.Tensor | None:
    """Signed distance maps of `masks` when the loss needs them (computed once per mask set)."""
    if not resolved.needs_distance_maps:
        return None
    cfg = resolved.config.data
    return signed_distance_maps(masks, cfg.num_classes, cfg.ignore_index)


@dataclass
class LoopState:
    """What the loop has finished so far; an interrupt records exactly this."""

    epochs: int = 0
    best_epoch: int | None = None
    best_score: float = -math.inf
    best_metrics: dict[str, Any] | None = None
    images_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def img_s(self) -> float | None:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else None


def compute_loss(
    resolved: Resolved, model: nn.Module, loss_fn: nn.Module, x, target, multiple: int, extra=()
):
    """One training loss, following the capability flags (never the names); `extra` = distance maps."""
    if resolved.arch.instance_based:
        losses = model(x, target)
        return sum(losses.values())
    out = forward_logits(model, x, multiple)
    if resolved.arch.deep_supervision:
        weights = resolved.config.train.deep_supervision_weights or [1.0] * len(out)
        return sum(w * loss_fn(o, target, *extra) for w, o in zip(weights, out, strict=True)) / sum(weights)
    return loss_fn(out.float(), target, *extra)


class Budget:
    """`--max-minutes`: stop training early enough to still validate and record within the budget."""

    def __init__(self, minutes: float | None):
        self.deadline = time.monotonic() + minutes * 60 if minutes else math.inf
        self.eval_seconds = 0.0

    def exhausted(self, world: World = SINGLE) -> bool:
        """Out of time; under torchrun out of time on any rank, so that all ranks stop at the same step."""
        out = time.monotonic() + self.eval_seconds >= self.deadline
        if world.size == 1 or self.deadline == math.inf:
            return out
        return world.any(out)


def epoch_view(resolved: Resolved, prep: Prepared, epoch: int):
    """What the model sees in `epoch`: the balanced training split, freshly augmented, with distance maps."""
    images, masks, distances = prep.train_images, prep.train_masks, prep.train_distances
    augment = build_augmenter(resolved.config.augment.pipeline(), seed=resolved.config.seed * 1000 + epoch)
    if augment is not None:
        strong = None if prep.train_strong is None else prep.train_strong.numpy()
        aug_images, aug_masks = augment(images.numpy(), masks.numpy(), strong)
        images, masks = torch.from_numpy(aug_images), torch.from_numpy(aug_masks)
        distances = _distances(resolved, masks)  # the augmented masks are new masks
    return images, masks, distances


def train_one_epoch(
    resolved, prep: Prepared, net: nn.Module, optimizer, warmup, epoch: int, budget: Budget, progress
):
    """One pass over a freshly augmented, shuffled training set. Returns (mean loss, images, seconds)."""
    cfg = resolved.config.train
    device, world = prep.device, prep.world
    images, masks, distances = epoch_view(resolved, prep, epoch)
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    if distances is not None:
        distances = distances.to(device, non_blocking=True)
    if world.size == 1:
        order = torch.randperm(len(images), device=device)
    else:  # every rank augments the whole epoch (same seed) and takes its shard of the shuffled rows
        order = world.epoch_order(len(images), resolved.config.seed, epoch).to(device)
    batch = cfg.batch_size // world.size  # batch_size is the global batch
    steps = len(order) // batch if len(order) >= batch else 1  # drop the ragged tail (BatchNorm)
    net.train()
    loss_sum = torch.zeros((), device=device)
    seen = 0
    started = time.perf_counter()
    for step in range(steps):
        idx = order[step * batch : (step + 1) * batch]
        x = prep.norm.apply(images[idx], channels_last=cfg.channels_last)
        target = masks[idx].long()
        warmup.step()
        with autocast_for(device, prep.amp_dtype):
            extra = () if distances is None else (distances[idx],)
            loss = compute_loss(resolved, net, prep.loss_fn, x, target, resolved.multiple, extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_sum += loss.detach()
        seen += len(idx)
        if progress is not None:
            progress.advance()
        if budget.exhausted(world):
            break
    if world.size == 1:
        mean_loss = float(loss_sum) / (step + 1)  # the one host sync of the epoch
    else:  # the logged loss and img/s cover all ranks (each took step + 1 steps)
        totals = world.sum_(torch.stack([loss_sum.double(), loss_sum.new_tensor(seen).double()]))
        mean_loss, seen = float(totals[0]) / ((step + 1) * world.size), int(totals[1])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return mean_loss, seen, time.perf_counter() - started


class Warmup:
    """Linear warm-up from lr/steps to lr over the first steps, then hands over to the plateau schedule."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int):
        self.optimizer, self.steps, self.done = optimizer, max(steps, 0), 0
        self.base = [group["lr"] for group in optimizer.param_groups]

    @property
    def finished(self) -> bool:
        return self.done >= self.steps

    def step(self) -> None:
        if self.finished:
            return
        self.done += 1
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * self.done / self.steps


def steps_per_epoch(count: int, batch: int, world: World = SINGLE) -> int:
    """Optimizer steps per epoch; under torchrun each rank takes count / N rows in batches of batch / N."""
    return max((count // world.size) // (batch // world.size), 1)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def validate(resolved: Resolved, prep: Prepared, net: nn.Module):
    """Validation metrics, mean loss and per-image confusion matrices of the whole validation split.

    Under torchrun each rank scores a contiguous shard with rank 0's weights and buffers; the per-image
    matrices are gathered in row order and summed, so the metrics are exactly the single-process ones
    (the loss only up to batching, for losses that are not a mean over pixels).
    """
    cfg, world = resolved.config, prep.world
    count = len(prep.val_images)
    part = slice(0, count) if world.size == 1 else world.shard(count)
    world.broadcast_buffers(prep.model)
    metrics, val_loss, per_image = score(
        net,
        prep.val_images[part],
        prep.val_masks[part],
        norm=prep.norm,
        multiple=resolved.multiple,
        num_classes=prep.data.num_classes,
        ignore_index=cfg.data.ignore_index,
        device=prep.device,
        batch_size=cfg.train.eval_batch_size,
        amp_dtype=prep.amp_dtype,
        loss_fn=prep.loss_fn,
        distances=None if prep.val_distances is None else prep.val_distances[part],
        per_image=True,
    )
    if world.size == 1:
        return metrics, val_loss, per_image
    k = prep.data.num_classes
    if per_image is None:  # an empty shard (fewer validation images than ranks)
        per_image = torch.zeros(0, k, k, dtype=torch.int64, device=prep.device)
    per_image = world.gather_rows(per_image, count)
    loss_sum = world.sum_(torch.tensor([val_loss * (part.stop - part.start)], device=prep.device))
    metrics = metrics_from_confusion(per_image.sum(0), cfg.data.ignore_index)
    return metrics, float(loss_sum) / max(count, 1), per_image


def _has_unused_parameters(resolved: Resolved, prep: Prepared) -> bool:
    """Whether one training step leaves some parameter without a gradient (DDP must then be told)."""
    probe = copy.deepcopy(prep.model).train()  # a copy: the real weights and statistics stay untouched
    rows = slice(0, min(2, len(prep.train_images)))
    x = prep.norm.apply(prep.train_images[rows].to(prep.device))
    target = prep.train_masks[rows].to(prep.device).long()
    extra = () if prep.train_distances is None else (prep.train_distances[rows].to(prep.device),)
    compute_loss(resolved, probe, prep.loss_fn, x, target, resolved.multiple, extra).backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


def run_loop(
    resolved: Resolved,
    prep: Prepared,
    info: RunInfo,
    store: RunStore,
    registry,
    state: LoopState,
    budget: Budget,
    progress,
):
    """Epochs until the epoch limit, early stopping or the time budget; checkpoints the best epoch."""
    cfg = resolved.config
    model = prep.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    world = prep.world
    per_epoch = steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world)
    warmup = Warmup(optimizer, round(cfg.train.warmup_epochs * per_epoch))
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=cfg.train.plateau_factor,
        patience=cfg.train.plateau_patience,
        min_lr=cfg.train.min_lr,
    )
    if world.size > 1:
        net = world.wrap(model, find_unused_parameters=_has_unused_parameters(resolved, prep))
    else:
        net = model
    net = torch.compile(net) if cfg.train.compile else net
    stale = 0
    for epoch in range(1, cfg.train.epochs + 1):
        if resolved.loss.scheduled:
            prep.loss_fn.set_epoch(epoch)
        if progress is not None:
            progress.start_epoch(epoch, state)
        train_loss, seen, seconds = train_one_epoch(
            resolved, prep, net, optimizer, warmup, epoch, budget, progress
        )
        state.images_seen += seen
        state.train_seconds += seconds
        eval_started = time.monotonic()
        metrics, val_loss, per_image = validate(resolved, prep, net)
        budget.eval_seconds = time.monotonic() - eval_started
        state.epochs = epoch
        values = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_miou": _nan_to_none(metrics.miou_an2dl),
            "val_miou_fg": _nan_to_none(metrics.miou_fg),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "img_s": seen / max(seconds, 1e-9),
        }
        state.history.append(values)
        store.log_epoch(info.run_id, epoch, values)
        # Every decision below follows the gathered metric, so all ranks take it alike.
        current = metrics.miou_an2dl if not math.isnan(metrics.miou_an2dl) else -math.inf
        improved = current > state.best_score
        if improved:
            state.best_score, state.best_epoch = current, epoch
            state.best_metrics = metrics.to_dict(list(prep.data.class_names))
        if improved and world.is_main:
            save_checkpoint(
                info.run_dir / CHECKPOINT_NAME,
                model,
                config=info.config,
                epoch=epoch,
                normalisation=[prep.norm.mean, prep.norm.std],
                metrics=state.best_metrics,
                class_names=list(prep.data.class_names),
            )
            save_per_image(info.run_dir / PER_IMAGE_NAME, prep.val_indices, per_image)
        stale = 0 if improved else stale + 1
        if progress is not None:
            progress.epoch_line({**values, "val_miou": current, "val_miou_fg": metrics.miou_fg}, improved)
        registry.hook.harness_epoch_end(run=info, epoch=epoch, values=values)
        if warmup.finished:
            plateau.step(current)
        if stale >= cfg.train.early_stop_patience or budget.exhausted(world):
            break


def execute(resolved: Resolved, store_path: str | Path, registry, *, progress: Any = False) -> RunResult:
    """Run one resolved config end to end and record it in the store at `store_path`.

    `progress`: False (silent), True (a console bar) or a factory `(epochs, steps) -> bar` (a sweep's).

    Everything that can fail on bad input (data, plugins, device) happens before the store is opened,
    so bad input never writes to it. Ctrl-C records the run as 'interrupted' (keeping its best
    checkpoint) and re-raises; an exception in training records it as 'failed' and re-raises.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: the run is trained with DDP and recorded once,
    by rank 0; every rank returns the same result.
    """
    started = time.monotonic()
    budget = Budget(resolved.config.train.max_minutes)  # counts data loading and model building too
    if launched_size() == 1:
        prep = _prepare_on_device(resolved, SINGLE)
        with RunStore(store_path) as store:
            return _train_recorded(resolved, prep, store, registry, started, budget, progress)
    with process_group(resolved.config.train.device) as world:
        _check_distributed(resolved, world)
        prep = _prepare_on_device(resolved, world)
        if not world.is_main:  # the same code paths, writing nothing
            store, registry, progress = NullStore(store_path), SilentRegistry(), False
        else:
            store = RunStore(store_path)
        with store:
            return _train_recorded(resolved, prep, store, registry, started, budget, progress)


def _check_distributed(resolved: Resolved, world: World) -> None:
    """Settings that cannot work with `world.size` processes fail before anything is built."""
    cfg = resolved.config.train
    if cfg.batch_size % world.size:
        raise ConfigError(
            f"train.batch_size {cfg.batch_size} is the global batch: it must divide evenly among the "
            f"{world.size} processes (each takes batch_size / {world.size})"
        )
    if cfg.sync_bn and world.device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); leave it off on CPU")


def _prepare_on_device(resolved: Resolved, world: World) -> Prepared:
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
    return prep


def _device_label(prep: Prepared) -> str:
    """The store's device column: where the run happened (`cuda x8 (ddp)` for a torchrun run)."""
    if prep.world.size == 1:
        return str(prep.device)
    return f"{prep.device.type} x{prep.world.size} (ddp)"


def _train_recorded(resolved, prep, store: RunStore, registry, started: float, budget: Budget, progress: Any):
    cfg, world = resolved.config, prep.world
    run_id = world.broadcast_object(new_run_id(cfg.arch.name))  # random: rank 0's id for every rank
    config_dict = cfg.model_dump(mode="json")
    info = RunInfo(run_id, config_dict, store.run_dir(run_id), _device_label(prep), store.path)
    store.start_run(
        run_id=run_id,
        config=config_dict,
        config_hash=resolved.hash,
        seed=cfg.seed,
        arch=cfg.arch.name,
        loss=cfg.loss.name,
        balancer=cfg.balancer.name,
        dataset_id=prep.data.dataset_id,
        device=_device_label(prep),
        torch_version=torch.__version__,
        params=prep.params,
        gflops=prep.gflops,
        class_names=list(prep.data.class_names),
    )
    if world.is_main:
        info.run_dir.mkdir(parents=True, exist_ok=True)
    state = LoopState()
    status, error = "failed", None
    try:
        registry.hook.harness_run_start(run=info)
        steps = steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world)
        view = ConsoleProgress if progress is True else progress  # a sweep passes its own bar factory
        with view(cfg.train.epochs, steps) if view else nullcontext() as bar:
            run_loop(resolved, prep, info, store, registry, state, budget, bar)
        status = "finished" if state.best_metrics is not None else "failed"
        error = None if state.best_metrics is not None else "no epoch produced a validation score"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        checkpoint = info.run_dir / CHECKPOINT_NAME
        store.finish_run(
            run_id,
            status=status,
            metrics=state.best_metrics,
            epochs=state.epochs,
            best_epoch=state.best_epoch,
            wall_time=time.monotonic() - started,
            train_img_s=state.img_s,
            error=error,
            checkpoint=str(checkpoint) if checkpoint.exists() else None,
        )
        registry.hook.harness_run_end(run=info, status=status, metrics=state.best_metrics)
    return RunResult(
        run_id=run_id,
        status=status,
        metrics=state.best_metrics,
        epochs=state.epochs,
        best_epoch=state.best_epoch,
        wall_time=time.monotonic() - started,
        train_img_s=state.img_s,
        checkpoint=info.run_dir / CHECKPOINT_NAME,
        config=config_dict,
        history=state.history,
    )
