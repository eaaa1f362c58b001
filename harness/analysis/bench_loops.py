"""The two loops `harness bench` times side by side: a naive notebook loop and the harness's own path.

- `NaiveLoop` is written the way a notebook would: float32 NCHW, a `DataLoader` over a Dataset that runs
  albumentations per sample, `.item()` on the loss every step, the training confusion matrix on the CPU
  with numpy, the default AdamW;
- `HarnessLoop` is the training loop's own `train_one_epoch` on a `Prepared` run: uint8 data resident on
  the device, batched on-device augmentation, bf16 autocast, channels_last, fused AdamW, one host sync
  per epoch;
- `BareLoop` is the model's own cost on this device, the limit the harness path can approach: forward,
  backward and a fused AdamW step on one pre-made batch of device tensors, in the harness's dtype and
  memory format, with plain cross-entropy; no augmentation, no shuffling, no schedule, no clipping.

Each `epoch()` returns the images per second of one pass.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch
from torch import nn

from harness.augment.albumentations import load_albumentations
from harness.inference.scoring import autocast_for, forward_logits, pad_masks, pad_to_multiple, score
from harness.training.loop import compute_loss, make_optimizer, make_schedule, train_one_epoch
from harness.training.prepare import Prepared
from harness.training.state import Budget


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA runs asynchronously), so that a clock read after it means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------------
# The naive reference loop, as a notebook writes it


class NotebookDataset(torch.utils.data.Dataset):
    """Per-sample albumentations and a float tensor per item, scaled to [0, 1]."""

    def __init__(self, images: np.ndarray, masks: np.ndarray):
        A, _ = load_albumentations()
        self.images, self.masks = images, masks
        self.transform = A.Compose([A.HorizontalFlip(p=0.5)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.transform(image=self.images[index], mask=self.masks[index])
        image = torch.from_numpy(out["image"].astype(np.float32) / 255.0).unsqueeze(0)
        return image, torch.from_numpy(out["mask"].astype(np.int64))


def _numpy_confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(target.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)


class NaiveLoop:
    """One model trained the notebook way; `epoch()` runs one pass over its loader and returns img/s."""

    def __init__(self, resolved, model: nn.Module, loss_fn: nn.Module, images, masks, device, batch_size):
        self.resolved, self.model, self.loss_fn, self.device = resolved, model.to(device), loss_fn, device
        train = resolved.config.train
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        dataset = NotebookDataset(images.numpy(), masks.numpy())
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True
        )
        self.k = resolved.config.data.num_classes
        self.confusion = np.zeros((self.k, self.k), dtype=np.int64)

    def epoch(self) -> float:
        self.model.train()
        seen, running, started = 0, 0.0, time.perf_counter()
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            loss = compute_loss(self.resolved, self.model, self.loss_fn, x, y, self.resolved.multiple)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            running += loss.item()
            if not self.resolved.arch.instance_based:  # in training it returns losses, not logits
                with torch.no_grad():
                    logits = forward_logits(self.model, x, self.resolved.multiple)
                    logits = logits[-1] if isinstance(logits, list) else logits
                pred = logits.argmax(1).cpu().numpy()
                self.confusion += _numpy_confusion(pred, y.cpu().numpy(), self.k)
            seen += len(x)
        return seen / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# The bare loop: the model's own forward, backward and step


class BareLoop:
    """`steps` optimizer steps of `model` on one pre-made batch; `epoch()` returns img/s.

    The batch is normalised, cast to the memory format of the harness and resident on the device before
    the clock starts; the loss is the model's plainest (cross-entropy, averaged over deep-supervision
    outputs; an instance-based model's own losses), under the harness's autocast dtype.
    """

    def __init__(self, resolved, prep: Prepared, model: nn.Module, steps: int):
        self.resolved, self.model, self.steps, self.device = resolved, model, steps, prep.device
        cfg = resolved.config
        self.amp_dtype, self.multiple = prep.amp_dtype, resolved.multiple
        self.ignore_index = cfg.data.ignore_index
        self.optimizer = make_optimizer(model, cfg.train, prep.device)
        rows = slice(0, cfg.train.batch_size)
        images = prep.train_images[rows].to(prep.device)
        self.x = prep.norm.apply(images, channels_last=cfg.train.channels_last)
        self.target = prep.train_masks[rows].to(prep.device).long()
        if resolved.arch.instance_based:  # its input padded once, here, not per step
            self.x, _ = pad_to_multiple(self.x, self.multiple)
            self.target = pad_masks(self.target, self.multiple, self.ignore_index)

    def loss(self, x: torch.Tensor | None = None, target: torch.Tensor | None = None) -> torch.Tensor:
        """The plainest loss of a batch (default: the pre-made one; an instance-based model's padded)."""
        x, target = (self.x, self.target) if x is None else (x, target)
        if self.resolved.arch.instance_based:
            return sum(self.model(x, target).values())
        out = forward_logits(self.model, x, self.multiple)
        outs = out if isinstance(out, list) else [out]
        cross_entropy = nn.functional.cross_entropy
        losses = [cross_entropy(o.float(), target, ignore_index=self.ignore_index) for o in outs]
        return sum(losses) / len(losses)

    def epoch(self) -> float:
        self.model.train()
        sync(self.device)
        started = time.perf_counter()
        for _ in range(self.steps):
            with autocast_for(self.device, self.amp_dtype):
                loss = self.loss()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        sync(self.device)
        return self.steps * len(self.x) / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# The harness path


class HarnessLoop:
    """The training loop's own epoch function on a `Prepared` run, over its first `use_rows` images."""

    def __init__(self, resolved, prep: Prepared):
        self.resolved, self.full = resolved, prep
        self.prep = prep
        cfg = resolved.config.train
        self.optimizer = make_optimizer(prep.model, cfg, prep.device)
        self.budget = Budget(None)
        per_epoch = max(len(prep.train_images) // cfg.batch_size, 1)
        self.schedule = make_schedule(self.optimizer, cfg, per_epoch, self.budget)
        self.net = torch.compile(prep.model) if cfg.compile else prep.model
        self.epochs = 0

    def use_rows(self, rows: int) -> None:
        """Make an epoch the first `rows` training images (a whole number of batches)."""
        full = self.full
        self.prep = dataclasses.replace(
            full,
            train_images=full.train_images[:rows],
            train_masks=full.train_masks[:rows],
            train_strong=None if full.train_strong is None else full.train_strong[:rows],
            train_distances=None if full.train_distances is None else full.train_distances[:rows],
        )

    def epoch(self) -> float:
        self.epochs += 1
        _, seen, seconds = train_one_epoch(
            self.resolved, self.prep, self.net, self.optimizer, self.schedule, self.epochs, self.budget, None
        )
        return seen / seconds

    def infer_img_s(self, batch_size: int, repeats: int, count: int = 512) -> float:
        """Validation's own scoring (autocast, `batch_size` images per forward, metric on the device) of
        `count` images, the validation split repeated as needed."""
        prep, images = self.prep, self.prep.val_images
        count = max(count, batch_size)
        reps = -(-count // max(len(images), 1))
        images = images.repeat(reps, 1, 1)[:count]
        masks = prep.val_masks.repeat(reps, 1, 1)[:count]
        kwargs = dict(
            norm=prep.norm,
            multiple=self.resolved.multiple,
            num_classes=prep.data.num_classes,
            ignore_index=self.resolved.config.data.ignore_index,
            device=prep.device,
            batch_size=batch_size,
            amp_dtype=prep.amp_dtype,
        )
        images, masks = images.to(prep.device), masks.to(prep.device)
        score(self.net, images, masks, **kwargs)  # warm-up
        timing = []
        for _ in range(repeats):
            sync(prep.device)
            started = time.perf_counter()
            score(self.net, images, masks, **kwargs)
            sync(prep.device)
            timing.append(len(images) / (time.perf_counter() - started))
        return statistics.median(timing)
