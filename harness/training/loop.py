"""The training loop, top to bottom: epochs of training steps, validation, the best and last checkpoints.

`run_loop` is called by `harness.training.run.execute` once the run is prepared (`harness.training.
prepare`) and recorded; the functions below it come in the order it calls them: optimizer and
schedule, then per epoch `train_one_epoch` (each step: augment, `compute_loss`, `backward_and_step`),
`validate` and `save_epoch`. Extension goes through the lifecycle hooks (hookspecs.py), never through
subclasses. The loop keeps the whole dataset as uint8 tensors on the device and does not sync the host
inside an epoch.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from typing import Any

import torch
from torch import nn

from harness.augment.backend import batch_augmenter, epoch_view
from harness.config import Resolved
from harness.inference.device import eval_batch_size
from harness.inference.metrics import metrics_from_confusion
from harness.inference.scoring import (
    autocast_for,
    forward_logits,
    pad_masks,
    pad_to_multiple,
    predict_masks,
    score,
)
from harness.inference.tta import with_tta
from harness.specs import RunInfo
from harness.store import RunStore
from harness.training.checkpoints import (
    CHECKPOINT_NAME,
    LAST_CHECKPOINT_NAME,
    PER_IMAGE_NAME,
    restore,
    save_checkpoint,
    save_last,
    save_per_image,
)
from harness.training.distributed import SINGLE, World
from harness.training.ema import WeightAverage, make_average
from harness.training.prepare import Prepared
from harness.training.schedule import OneCycleSchedule, PlateauSchedule, Schedule
from harness.training.state import Budget, Diverged, LoopState


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
    model, world = prep.model, prep.world
    optimizer = make_optimizer(model, cfg.train, prep.device)
    per_epoch = steps_per_epoch(len(prep.train_images), cfg.train.batch_size, world)
    schedule = make_schedule(optimizer, cfg.train, per_epoch, budget)
    average = make_average(model, cfg.train)  # train.ema: validated, saved and predicted from
    if last is not None:
        restore(last, model, optimizer, schedule, prep.scaler)
        if average is not None and "ema" in last:
            average.load_state_dict(last["ema"])
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
            resolved, prep, net, optimizer, schedule, epoch, budget, progress, average
        )
        if not math.isfinite(train_loss) and (prep.scaler is None or not _finite_weights(model)):
            state.epochs = epoch  # under a GradScaler an overflowing step is skipped, not a divergence
            raise Diverged(epoch, train_loss)
        state.images_seen += seen
        state.train_seconds += seconds
        eval_started = time.monotonic()
        state.phase = "validation"
        metrics, val_loss, per_image = validate(resolved, prep, net if average is None else average.model)
        budget.eval_seconds = time.monotonic() - eval_started
        state.epochs = epoch
        values = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_miou": _nan_to_none(metrics.miou_an2dl),
            "val_miou_fg": _nan_to_none(metrics.miou_fg),
            "val_iou": {n: _nan_to_none(v) for n, v in zip(prep.data.class_names, metrics.iou, strict=True)},
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
            if prep.fitted is not None:  # what the architecture fitted to the data (maskrcnn's anchors)
                state.best_metrics["fitted"] = prep.fitted
        state.stale = 0 if improved else state.stale + 1
        schedule.step_epoch(current)
        if world.is_main:
            save_epoch(info, prep, optimizer, schedule, state, per_image, improved, average)
        if improved and getattr(registry.hook.harness_best_epoch, "get_hookimpls", list)():
            sample = functools.cache(lambda: best_sample(resolved, prep, average=average))  # if a plugin asks
            registry.hook.harness_best_epoch(run=info, epoch=epoch, sample=sample)
        if progress is not None:
            progress.epoch_line({**values, "val_miou": current, "val_miou_fg": metrics.miou_fg}, improved)
        registry.hook.harness_epoch_end(run=info, epoch=epoch, values=values)
        if state.stale >= cfg.train.early_stop_patience or budget.exhausted(world):
            break


def make_optimizer(model: nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel per step where the device has one (CPU and CUDA): fewer passes over
    the parameters than the per-tensor loop, same update."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def steps_per_epoch(count: int, batch: int, world: World = SINGLE) -> int:
    """Optimizer steps per epoch; under torchrun each rank takes count / N rows in batches of batch / N."""
    return max((count // world.size) // (batch // world.size), 1)


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


def _has_unused_parameters(resolved: Resolved, prep: Prepared) -> bool:
    """Whether one training step leaves some parameter without a gradient (DDP must then be told)."""
    probe = copy.deepcopy(prep.model).train()  # a copy: the real weights and statistics stay untouched
    rows = slice(0, min(2, len(prep.train_images)))
    x = prep.norm.apply(prep.train_images[rows].to(prep.device))
    target = prep.train_masks[rows].to(prep.device).long()
    extra = () if prep.train_distances is None else (prep.train_distances[rows].to(prep.device),)
    compute_loss(resolved, probe, prep.loss_fn, x, target, resolved.multiple, extra).backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


def train_one_epoch(
    resolved,
    prep: Prepared,
    net: nn.Module,
    optimizer,
    schedule,
    epoch: int,
    budget: Budget,
    progress,
    average: WeightAverage | None = None,
):
    """One pass over a shuffled, freshly augmented training set. Returns (mean loss, images, seconds).
    `average` (train.ema) follows the weights after every step.

    Batches are gathered by index from the uint8 tensors on the device and augmented there; the loss is
    summed on the device and read once, at the end: nothing in the step waits for the host.
    """
    cfg = resolved.config.train
    device, world, augmentation = prep.device, prep.world, prep.augmentation
    images, masks, distances = epoch_view(
        augmentation, epoch, prep.train_images, prep.train_masks, prep.train_strong, prep.train_distances
    )
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    if distances is not None:
        distances = distances.to(device, non_blocking=True)
    augment = batch_augmenter(augmentation, epoch, device, world.rank, world.size)
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
        if average is not None:
            average.update(prep.model)
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


def compute_loss(
    resolved: Resolved, model: nn.Module, loss_fn: nn.Module, x, target, multiple: int, extra=()
):
    """One training loss, following the capability flags (never the names); `extra` = distance maps."""
    if resolved.arch.instance_based:  # padded like any input; the masks' padding is the ignored class
        padded, _ = pad_to_multiple(x, multiple)
        losses = model(padded, pad_masks(target, multiple, resolved.config.data.ignore_index))
        return sum(losses.values())
    out = forward_logits(model, x, multiple)
    if resolved.arch.deep_supervision:
        weights = resolved.config.train.deep_supervision_weights or [1.0] * len(out)
        return sum(w * loss_fn(o, target, *extra) for w, o in zip(weights, out, strict=True)) / sum(weights)
    return loss_fn(out.float(), target, *extra)


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


def _finite_weights(model: nn.Module) -> bool:
    """Whether every parameter is finite (one reduction and one host sync, once per epoch at most)."""
    finite = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(finite).all()) if finite else True


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
        with_tta(net, cfg.train.val_tta),
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


def best_sample(resolved: Resolved, prep: Prepared, rows: int = 8, average: WeightAverage | None = None):
    """(images, masks, predictions) of the first `rows` validation images, uint8 numpy (N, H, W) arrays;
    predicted by the weights validation scored (the average under train.ema)."""
    images, masks = prep.val_images[:rows], prep.val_masks[:rows]
    predictions = predict_masks(
        prep.model if average is None else average.model,
        images,
        norm=prep.norm,
        multiple=resolved.multiple,
        ignore_index=resolved.config.data.ignore_index,
        device=prep.device,
        amp_dtype=prep.amp_dtype,
    )
    return images.cpu().numpy(), masks.cpu().numpy(), predictions.numpy()


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def save_epoch(
    info: RunInfo,
    prep: Prepared,
    optimizer,
    schedule: Schedule,
    state: LoopState,
    per_image,
    improved: bool,
    average: WeightAverage | None = None,
) -> None:
    """An epoch's checkpoints: best.pt and the per-image matrices when it improved, last.pt always.
    With train.ema best.pt holds the averaged weights (what was validated); last.pt the live ones and
    the average."""
    model, norm, class_names = prep.model, [prep.norm.mean, prep.norm.std], list(prep.data.class_names)
    if improved:
        save_checkpoint(
            info.run_dir / CHECKPOINT_NAME,
            model if average is None else average.model,
            config=info.config,
            epoch=state.epochs,
            normalisation=norm,
            metrics=state.best_metrics,
            class_names=class_names,
        )
        save_per_image(info.run_dir / PER_IMAGE_NAME, prep.val_indices, per_image)
    save_last(
        info.run_dir / LAST_CHECKPOINT_NAME,
        model,
        optimizer,
        schedule,
        loop=state.to_checkpoint(),
        scaler=prep.scaler,
        normalisation=norm,
        device=prep.device,
        ema=None if average is None else average.state_dict(),
    )
