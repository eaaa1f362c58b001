"""`harness bench --parts`: what each part of the harness's training step costs on top of the bare step.

The bare step is `BareLoop`'s: forward, plain cross-entropy, backward and a fused AdamW step on one
pre-made batch. Each variant adds one part of what `train_one_epoch` does per step, and the last adds
them all; the variants run in alternating repeats on the same model and optimizer, so that noise hits
them alike, and each reports its median milliseconds per step and the difference to the bare step.

- `batch`: a fresh batch each step: gathered by index from the uint8 tensors on the device, augmented
  there (the run's preset), normalised and laid out in the harness's memory format;
- `schedule`: the LR schedule's per-step update;
- `loss`: the run's own loss (the config's plugin, deep supervision and instance losses as configured)
  instead of plain cross-entropy;
- `clip`: gradient-norm clipping (`train.grad_clip`);
- `all parts`: all four, which is the step of `train_one_epoch`.

The order of the variants turns by one each repeat, so that no variant is always the first after a switch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.analysis.bench_loops import BareLoop, sync
from harness.augment.backend import batch_augmenter
from harness.inference.scoring import autocast_for, pad_masks, pad_to_multiple
from harness.training.loop import compute_loss, make_schedule
from harness.training.prepare import Prepared
from harness.training.state import Budget

PARTS = ("batch", "schedule", "loss", "clip")


class StepParts:
    """The bare step with any subset of `PARTS` switched on, on one model (a copy of the prepared one)."""

    def __init__(self, resolved, prep: Prepared, model: nn.Module):
        self.resolved, self.prep = resolved, prep
        self.cfg = resolved.config.train
        self.bare = BareLoop(resolved, prep, model, steps=1)
        self.model, self.optimizer = model, self.bare.optimizer
        per_epoch = max(len(prep.train_images) // self.cfg.batch_size, 1)
        self.schedule = make_schedule(self.optimizer, self.cfg, per_epoch, Budget(None))
        self.augment = batch_augmenter(prep.augmentation, 1, prep.device, 0, 1)
        self.order = torch.randperm(len(prep.train_images), device=prep.device)
        self.cursor = 0

    def fresh_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch, prep = self.cfg.batch_size, self.prep
        if self.cursor + batch > len(self.order):
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + batch]
        self.cursor += batch
        images, masks = prep.train_images[idx], prep.train_masks[idx]
        if self.augment is not None:
            strong = None if prep.train_strong is None else prep.train_strong[idx]
            images, masks = self.augment(images, masks, strong)
        x, target = prep.norm.apply(images, channels_last=self.cfg.channels_last), masks.long()
        if self.resolved.arch.instance_based:  # padded as the bare batch is (compute_loss pads too)
            x, _ = pad_to_multiple(x, self.resolved.multiple)
            target = pad_masks(target, self.resolved.multiple, self.resolved.config.data.ignore_index)
        return x, target

    def step(self, parts: frozenset[str]) -> None:
        x, target = self.fresh_batch() if "batch" in parts else (self.bare.x, self.bare.target)
        if "schedule" in parts:
            self.schedule.step_batch()
        with autocast_for(self.prep.device, self.prep.amp_dtype):
            if "loss" in parts:
                loss = compute_loss(
                    self.resolved, self.model, self.prep.loss_fn, x, target, self.resolved.multiple
                )
            else:
                loss = self.bare.loss(x, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if "clip" in parts and self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()


def time_parts(
    resolved, prep: Prepared, model: nn.Module, steps: int, repeats: int, on_step: Callable[[str], None]
) -> dict[str, Any]:
    """Median ms per step of the bare step, of each part added alone and of all of them."""
    parts = StepParts(resolved, prep, model)
    variants = {
        "bare": frozenset(),
        **{name: frozenset({name}) for name in PARTS},
        "all parts": frozenset(PARTS),
    }
    timings: dict[str, list[float]] = {name: [] for name in variants}
    model.train()
    for chosen in variants.values():  # warm-up: allocator caches, the first batch of each shape
        parts.step(chosen)
    names = list(variants)
    for repeat in range(repeats):
        on_step(f"step parts, repeat {repeat + 1}/{repeats}")
        # Each repeat starts one variant later: a drift within a repeat (the first variant after a switch,
        # a neighbour's load) does not always fall on the same one.
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            chosen = variants[name]
            sync(prep.device)
            started = time.perf_counter()
            for _ in range(steps):
                parts.step(chosen)
            sync(prep.device)
            timings[name].append((time.perf_counter() - started) * 1000 / steps)
    bare = statistics.median(timings["bare"])
    return {
        name: {"ms": statistics.median(values), "over_bare_ms": statistics.median(values) - bare}
        for name, values in timings.items()
    }
