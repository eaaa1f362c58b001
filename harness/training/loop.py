"""The training loop, top to bottom: data, balancer, model, loss, loop, validation, checkpoint, record.

Extension goes through the lifecycle hooks (hookspecs.py), never through subclasses. The loop keeps
the whole dataset as uint8 tensors on the device and does not sync the host inside an epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import secrets
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.augment.batched import BatchAugmenter, batched_support
from harness.augment.vocabulary import build_augmenter
from harness.config import Resolved
from harness.data.dataset import SegmentationData, load_npz, split
from harness.data.distance import signed_distance_maps
from harness.data.inspect import clean as clean_outliers
from harness.data.inspect import inspect as inspect_data
from harness.errors import ConfigError, DataError
from harness.inference.cost import count_params, forward_gflops
from harness.inference.device import eval_batch_size, pick_amp_dtype, pick_device
from harness.inference.metrics import metrics_from_confusion
from harness.inference.scoring import (
    CheckpointError,
    Normalisation,
    autocast_for,
    forward_logits,
    pad_to_multiple,
    save_checkpoint,
    score,
)
from harness.store.runs import Heartbeat, RunStore
from harness.training.distributed import (
    SINGLE,
    NullStore,
    SilentRegistry,
    World,
    launched_size,
    process_group,
)
from harness.training.progress import ConsoleProgress
from harness.training.schedule import OneCycleSchedule, PlateauSchedule, Schedule

CHECKPOINT_NAME = "best.pt"
# Written at every epoch end: weights, optimizer, schedule, loop state and RNG, what `--resume` continues.
LAST_CHECKPOINT_NAME = "last.pt"
log = logging.getLogger("harness")
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
    error: str | None = None

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
    scaler: Any = None  # a GradScaler under fp16 autocast (CUDA without bf16); bf16 needs none


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


def _check_labelled(data: SegmentationData, train_idx, val_idx, ignore_index: int | None) -> None:
    """Refuse, before anything is recorded, a split with nothing to learn from or nothing to score."""
    for part, rows in (("training", train_idx), ("validation", val_idx)):
        masks = data.masks[torch.as_tensor(rows)]
        if ignore_index is not None and not bool((masks != ignore_index).any()):
            raise DataError(
                f"{data.source}: every pixel of the {part} split is class {ignore_index} (ignored): "
                "nothing to learn from or score"
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
    stale: int = 0  # epochs since the best one (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)
    phase: str = "training"  # or "validation": what an out-of-memory error happened in

    @property
    def img_s(self) -> float | None:
        return self.images_seen / self.train_seconds if self.train_seconds > 0 else None

    def to_checkpoint(self) -> dict[str, Any]:
        """The fields a resumed run continues from (history lives in the store)."""
        keep = ("epochs", "best_epoch", "best_score", "best_metrics", "images_seen", "train_seconds", "stale")
        return {name: getattr(self, name) for name in keep}


class Diverged(Exception):
    """The training loss became NaN or infinite: the run is recorded 'diverged' and the sweep goes on."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training loss became {loss} in epoch {epoch} (try a lower train.lr)")
        self.epoch = epoch


class OutOfMemory(RuntimeError):
    """Device memory ran out; the message names the run, the batch size and the setting to lower."""


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
        self.started = time.monotonic()
        self.deadline = self.started + minutes * 60 if minutes else math.inf
        self.eval_seconds = 0.0

    def fraction_spent(self) -> float:
        """Share of the budget used (0 without one); the last validation's time is kept in reserve."""
        if self.deadline == math.inf:
            return 0.0
        usable = max(self.deadline - self.eval_seconds - self.started, 1e-9)
        return (time.monotonic() - self.started) / usable

    def exhausted(self, world: World = SINGLE) -> bool:
        """Out of time; under torchrun out of time on any rank, so that all ranks stop at the same step."""
        out = time.monotonic() + self.eval_seconds >= self.deadline
        if world.size == 1 or self.deadline == math.inf:
            return out
        return world.any(out)


def uses_batched_augmentation(resolved: Resolved) -> bool:
    """Whether augmentation runs per batch on the device (every step has a batched torch equivalent).

    Losses that need distance maps keep the per-epoch host path: their maps must follow the warped masks.
    """
    return batched_support(resolved.config.augment.pipeline()) and not resolved.needs_distance_maps


def _augment_seed(resolved: Resolved, epoch: int, world: World) -> int:
    # Each epoch its own stream; each rank too (under torchrun they augment different rows).
    return (resolved.config.seed * 1000 + epoch) * world.size + world.rank


def batch_augmenter(
    resolved: Resolved, epoch: int, world: World, device: torch.device
) -> BatchAugmenter | None:
    """The on-device augmenter of `epoch`, or None when augmentation runs on the host or does nothing."""
    pipeline = resolved.config.augment.pipeline()
    if not (pipeline.steps or pipeline.strong()) or not uses_batched_augmentation(resolved):
        return None
    return BatchAugmenter(pipeline, _augment_seed(resolved, epoch, world), device)


def epoch_view(resolved: Resolved, prep: Prepared, epoch: int):
    """What the model sees in `epoch` before per-batch augmentation: the balanced training split and its
    distance maps, augmented here, on the host, only when the pipeline has no batched equivalent."""
    images, masks, distances = prep.train_images, prep.train_masks, prep.train_distances
    if uses_batched_augmentation(resolved):
        return images, masks, distances
    augment = build_augmenter(resolved.config.augment.pipeline(), seed=resolved.config.seed * 1000 + epoch)
    if augment is not None:
        strong = None if prep.train_strong is None else prep.train_strong.cpu().numpy()
        aug_images, aug_masks = augment(images.cpu().numpy(), masks.cpu().numpy(), strong)
        images, masks = torch.from_numpy(aug_images), torch.from_numpy(aug_masks)
        distances = _distances(resolved, masks)  # the augmented masks are new masks
    return images, masks, distances


def augmented_view(resolved: Resolved, prep: Prepared, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training split augmented as in `epoch`, on the CPU (for `harness data preview`).

    With batched augmentation the transforms and probabilities are the loop's, applied to the split in
    one call; the loop draws them batch by batch in shuffled order, so individual draws differ.
    """
    images, masks, _ = epoch_view(resolved, prep, epoch)
    augment = batch_augmenter(resolved, epoch, prep.world, images.device)
    if augment is not None:
        images, masks = augment(images, masks, prep.train_strong)
    return images.cpu(), masks.cpu()


def train_one_epoch(
    resolved, prep: Prepared, net: nn.Module, optimizer, schedule, epoch: int, budget: Budget, progress
):
    """One pass over a shuffled, freshly augmented training set. Returns (mean loss, images, seconds).

    Batches are gathered by index from the uint8 tensors on the device and augmented there; the loss is
    summed on the device and read once, at the end: nothing in the step waits for the host.
    """
    cfg = resolved.config.train
    device, world = prep.device, prep.world
    images, masks, distances = epoch_view(resolved, prep, epoch)
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    if distances is not None:
        distances = distances.to(device, non_blocking=True)
    augment = batch_augmenter(resolved, epoch, world, device)
    strong = None if prep.train_strong is None else prep.train_strong.to(device)
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
        batch_images, batch_masks = images[idx], masks[idx]
        if augment is not None:
            batch_images, batch_masks = augment(
                batch_images, batch_masks, None if strong is None else strong[idx]
            )
        x = prep.norm.apply(batch_images, channels_last=cfg.channels_last)
        target = batch_masks.long()
        schedule.step_batch()
        with autocast_for(device, prep.amp_dtype):
            extra = () if distances is None else (distances[idx],)
            loss = compute_loss(resolved, net, prep.loss_fn, x, target, resolved.multiple, extra)
        optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss, net, optimizer, cfg.grad_clip, prep.scaler)
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


def backward_and_step(loss, net: nn.Module, optimizer, grad_clip: float | None, scaler) -> None:
    """Backward, optional clipping and the optimizer step; through the GradScaler under fp16 autocast."""
    if scaler is None:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)  # skipped when the scaled gradients overflowed
    scaler.update()


def make_optimizer(model: nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where the device has one (CPU and CUDA): fewer passes over
    the parameters than the per-tensor loop, same update."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def make_schedule(optimizer, cfg, per_epoch: int, budget: Budget) -> Schedule:
    if cfg.schedule == "onecycle":
        return OneCycleSchedule(optimizer, cfg.epochs * per_epoch, budget, pct=cfg.onecycle_pct)
    return PlateauSchedule(
        optimizer,
        round(cfg.warmup_epochs * per_epoch),
        factor=cfg.plateau_factor,
        patience=cfg.plateau_patience,
        min_lr=cfg.min_lr,
    )


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
        batch_size=eval_batch_size(prep.device, cfg.train.eval_batch_size),
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
    last: dict[str, Any] | None = None,
):
    """Epochs until the epoch limit, early stopping or the time budget; checkpoints the best epoch and,
    at every epoch end, the last one. `last`: a last checkpoint to continue from (`--resume`), with
    `state` already restored from it."""
    cfg = resolved.config
    model = prep.model
    optimizer = make_optimizer(model, cfg.train, prep.device)
    world = prep.world
    schedule = make_schedule(
        optimizer, cfg.train, steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world), budget
    )
    if last is not None:
        _restore(last, model, optimizer, schedule, prep.scaler)
    if world.size > 1:
        net = world.wrap(model, find_unused_parameters=_has_unused_parameters(resolved, prep))
    else:
        net = model
    net = torch.compile(net) if cfg.train.compile else net
    for epoch in range(state.epochs + 1, cfg.train.epochs + 1):
        if resolved.loss.scheduled:
            prep.loss_fn.set_epoch(epoch)
        if progress is not None:
            progress.start_epoch(epoch, state)
        state.phase = "training"
        train_loss, seen, seconds = train_one_epoch(
            resolved, prep, net, optimizer, schedule, epoch, budget, progress
        )
        if not math.isfinite(train_loss) and (prep.scaler is None or not _finite_weights(model)):
            state.epochs = epoch  # under a GradScaler an overflowing step is skipped, not a divergence
            raise Diverged(epoch, train_loss)
        state.images_seen += seen
        state.train_seconds += seconds
        eval_started = time.monotonic()
        state.phase = "validation"
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
        state.stale = 0 if improved else state.stale + 1
        schedule.step_epoch(current)
        if world.is_main:
            save_last(info.run_dir / LAST_CHECKPOINT_NAME, model, optimizer, schedule, state, prep)
        if progress is not None:
            progress.epoch_line({**values, "val_miou": current, "val_miou_fg": metrics.miou_fg}, improved)
        registry.hook.harness_epoch_end(run=info, epoch=epoch, values=values)
        if state.stale >= cfg.train.early_stop_patience or budget.exhausted(world):
            break


def _finite_weights(model: nn.Module) -> bool:
    """Whether every parameter is finite (one reduction and one host sync, once per epoch at most)."""
    finite = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(finite).all()) if finite else True


def save_last(path: Path, model: nn.Module, optimizer, schedule: Schedule, state: LoopState, prep) -> None:
    """The checkpoint `--resume` continues from: weights, optimizer (moments and step count), LR schedule,
    loop state and RNG state after an epoch, written atomically like best.pt."""
    rng = {"torch": torch.get_rng_state()}
    if prep.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(
        path,
        model,
        epoch=state.epochs,
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
        scaler=None if prep.scaler is None else prep.scaler.state_dict(),
        loop=state.to_checkpoint(),
        rng=rng,
        normalisation=[prep.norm.mean, prep.norm.std],
    )


def _restore(last: dict[str, Any], model: nn.Module, optimizer, schedule: Schedule, scaler) -> None:
    """Continue where a last checkpoint left off: weights, optimizer, schedule, GradScaler, RNG streams."""
    model.load_state_dict(last["state_dict"])
    optimizer.load_state_dict(last["optimizer"])
    schedule.load_state_dict(last["schedule"])
    if scaler is not None and last.get("scaler"):
        scaler.load_state_dict(last["scaler"])
    torch.set_rng_state(last["rng"]["torch"])
    cuda_states = last["rng"].get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


@dataclass
class ResumePoint:
    """Where `--resume` continues a run: its id, its last checkpoint and what earlier sessions recorded."""

    run_id: str
    last: dict[str, Any]  # the last checkpoint (see save_last)
    history: list[dict[str, Any]]  # the epochs logged up to the checkpoint
    wall_time: float = 0.0  # seconds spent by earlier sessions

    @property
    def epoch(self) -> int:
        return int(self.last["epoch"])

    def state(self) -> LoopState:
        return LoopState(**self.last["loop"], history=[h for h in self.history if h["epoch"] <= self.epoch])


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


def execute(
    resolved: Resolved,
    store_path: str | Path,
    registry,
    *,
    progress: Any = False,
    resume: ResumePoint | None = None,
    exclusive: bool = False,
) -> RunResult:
    """Run one resolved config end to end and record it in the store at `store_path`.

    `progress`: False (silent), True (a console bar) or a factory `(epochs, steps) -> bar` (a sweep's).
    `resume`: continue a recorded run from its last checkpoint instead of starting a new one.
    `exclusive` (sweeps): raise `RunClaimed` instead of training a (config, seed) that the store already
    has finished or running in another live process.

    Everything that can fail on bad input (data, plugins, device) happens before the store is opened,
    so bad input never writes to it. Opening it marks runs of killed processes (stale heartbeat)
    'interrupted'. Ctrl-C (and SIGTERM, through the CLI) records the run as 'interrupted' (keeping its
    checkpoints) and re-raises; a NaN/inf training loss records it as 'diverged' and returns; running out
    of device memory records it as 'failed' and raises `OutOfMemory` naming the setting to lower; any
    other exception in training records it as 'failed' and re-raises.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: the run is trained with DDP and recorded once,
    by rank 0; every rank returns the same result.
    """
    started = time.monotonic()
    budget = Budget(resolved.config.train.max_minutes)  # counts data loading and model building too
    args = (registry, started, budget, progress, resume, exclusive)
    if launched_size() == 1:
        prep = _prepare_on_device(resolved, SINGLE)
        _check_fits(prep, resume)
        with RunStore(store_path) as store:
            _reap(store)
            return _train_recorded(resolved, prep, store, *args)
    with process_group(resolved.config.train.device) as world:
        _check_distributed(resolved, world)
        prep = _prepare_on_device(resolved, world)
        _check_fits(prep, resume)
        if not world.is_main:  # the same code paths, writing nothing
            store, registry, progress = NullStore(store_path), SilentRegistry(), False
        else:
            store = RunStore(store_path)
            _reap(store)
        with store:
            return _train_recorded(resolved, prep, store, *args)


def _check_fits(prep: Prepared, resume: ResumePoint | None) -> None:
    """A resumed run's last checkpoint must load into the model its config builds, before anything is
    written (a plugin changed since would otherwise mark the run failed)."""
    if resume is None:
        return
    try:
        prep.model.load_state_dict(resume.last["state_dict"])
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"run {resume.run_id}: its last checkpoint does not fit the model its config builds ({reason})"
        ) from None


def _reap(store: RunStore) -> None:
    """Mark interrupted the runs of killed processes (still 'running': process gone or heartbeat stale)."""
    for run in store.reap_stale():
        log.warning("harness: run %s was still 'running' but %s", run["run_id"], run["error"])


@contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM while a final status is written: a second Ctrl-C lands after the write."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _oom_message(run_id: str, train, phase: str) -> str:
    key = "train.eval_batch_size" if phase == "validation" else "train.batch_size"
    size = getattr(train, key.split(".")[1])
    fix = f"lower it, e.g. --set {key}={size // 2}" if size > 1 else "use a smaller model or another device"
    return f"run {run_id} ran out of device memory in {phase} at {key}={size}: {fix}"


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


def _device_label(prep: Prepared) -> str:
    """The store's device column: where the run happened (`cuda x8 (ddp)` for a torchrun run)."""
    if prep.world.size == 1:
        return str(prep.device)
    return f"{prep.device.type} x{prep.world.size} (ddp)"


def _train_recorded(
    resolved,
    prep,
    store: RunStore,
    registry,
    started: float,
    budget: Budget,
    progress: Any,
    resume: ResumePoint | None = None,
    exclusive: bool = False,
):
    cfg, world = resolved.config, prep.world
    # A new run's id is random: rank 0's goes to every rank.
    run_id = resume.run_id if resume else world.broadcast_object(new_run_id(cfg.arch.name))
    config_dict = cfg.model_dump(mode="json")
    info = RunInfo(run_id, config_dict, store.run_dir(run_id), _device_label(prep), store.path)
    if resume is not None:
        if world.is_main:
            store.resume_run(run_id, config=config_dict, config_hash=resolved.hash, from_epoch=resume.epoch)
    else:
        _start(store, run_id, resolved, prep, config_dict, exclusive)
    if world.is_main:
        info.run_dir.mkdir(parents=True, exist_ok=True)
    state = LoopState() if resume is None else resume.state()
    earlier = 0.0 if resume is None else resume.wall_time
    beat = Heartbeat(store.path, run_id) if world.is_main else nullcontext()
    status, error = "failed", None
    try:
        with beat:
            registry.hook.harness_run_start(run=info)
            steps = steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world)
            view = ConsoleProgress if progress is True else progress  # a sweep passes its own bar factory
            with view(cfg.train.epochs, steps) if view else nullcontext() as bar:
                run_loop(resolved, prep, info, store, registry, state, budget, bar, resume and resume.last)
        status = "finished" if state.best_metrics is not None else "failed"
        error = None if state.best_metrics is not None else "no epoch produced a validation score"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        exc.run_id = run_id  # the CLI's one line names it
        raise
    except Diverged as exc:  # recorded, not raised: a sweep goes on and the CLI reports the status
        status, error = "diverged", str(exc)
    except _OUT_OF_MEMORY as exc:
        error = _oom_message(run_id, cfg.train, state.phase)
        raise OutOfMemory(error) from exc
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        checkpoint = info.run_dir / CHECKPOINT_NAME
        wall_time = earlier + time.monotonic() - started
        with _signals_deferred():
            store.finish_run(
                run_id,
                status=status,
                metrics=state.best_metrics,
                epochs=state.epochs,
                best_epoch=state.best_epoch,
                wall_time=wall_time,
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
        wall_time=wall_time,
        train_img_s=state.img_s,
        checkpoint=info.run_dir / CHECKPOINT_NAME,
        config=config_dict,
        history=state.history,
        error=error,
    )


def _start(store: RunStore, run_id: str, resolved, prep, config_dict: dict, exclusive: bool) -> None:
    cfg = resolved.config
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
        exclusive=exclusive,
    )
