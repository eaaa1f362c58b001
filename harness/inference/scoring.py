"""Inference shared by validation, `evaluate` and `predict`: normalise, pad, forward, never predict the
ignored class, and score with the one metric in `harness.inference.metrics`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.inference.metrics import ConfusionMatrix, per_image_confusion


@dataclass(frozen=True)
class Normalisation:
    """Scalar mean and std of the training images (0-255 scale), stored in the checkpoint."""

    mean: float
    std: float

    @classmethod
    def of(cls, images: torch.Tensor) -> Normalisation:
        values = images.float()
        return cls(mean=float(values.mean()), std=max(float(values.std()), 1.0))

    def apply(self, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """(B,H,W) uint8 -> (B,1,H,W) float32 normalised."""
        x = (images.unsqueeze(1).float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple (architectures with poolings need it); returns the crop size."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


def pad_masks(masks: torch.Tensor, multiple: int, fill: int | None) -> torch.Tensor:
    """(B, H, W) masks padded at the bottom and right up to a multiple, like `pad_to_multiple`'s images,
    the new pixels labelled `fill` (the ignored class; 0 when there is none): they hold no instance."""
    height, width = masks.shape[-2:]
    pad = (0, (-width) % multiple, 0, (-height) % multiple)
    return F.pad(masks, pad, value=0 if fill is None else fill) if any(pad) else masks


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are channels-last: its input should then be too, or every conv
    converts it first."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    return (
        weight is not None
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
    )


def forward_logits(model: nn.Module, x: torch.Tensor, multiple: int) -> Any:
    """Model output for x, computed on padded input and cropped back (lists are cropped item-wise)."""
    padded, (height, width) = pad_to_multiple(x, multiple)
    out = model(padded)
    if isinstance(out, (list, tuple)):
        return [o[..., :height, :width] for o in out]
    return out[..., :height, :width]


def to_classes(logits: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Argmax over classes, with the ignored class (background) never chosen."""
    if ignore_index is not None:
        logits = logits.clone()
        logits[:, ignore_index] = float("-inf")
    return logits.argmax(dim=1)


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for mixed precision, or a no-op when dtype is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


@torch.inference_mode()
def predict_masks(
    model: nn.Module,
    images: torch.Tensor,
    *,
    norm: Normalisation,
    multiple: int,
    ignore_index: int | None,
    device: torch.device,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """(N,H,W) uint8 images -> (N,H,W) uint8 predicted classes (on the CPU)."""
    model.eval()
    out = []
    channels_last = _is_channels_last(model)
    for part in batches(len(images), batch_size):
        x = norm.apply(images[part].to(device), channels_last=channels_last)
        with autocast_for(device, amp_dtype):
            logits = forward_logits(model, x, multiple)
        out.append(to_classes(logits.float(), ignore_index).to(torch.uint8).cpu())
    return torch.cat(out) if out else torch.empty(0, *images.shape[1:], dtype=torch.uint8)


@torch.inference_mode()
def score(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    norm: Normalisation,
    multiple: int,
    num_classes: int,
    ignore_index: int | None,
    device: torch.device,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
    loss_fn: nn.Module | None = None,
    distances: torch.Tensor | None = None,
    per_image: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Any, float | None, torch.Tensor | None]:
    """Validation metrics (one confusion matrix over all images), the mean loss if loss_fn is given, and
    with `per_image` the (N, K, K) int64 confusion matrix of each image (paired comparisons need them).
    `on_batch(images)` is called after each batch (a progress bar's advance)."""
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index, device=device)
    loss_sum = torch.zeros((), device=device)
    images_confusion = []
    channels_last = _is_channels_last(model)
    for part in batches(len(images), batch_size):
        x = norm.apply(images[part].to(device), channels_last=channels_last)
        target = masks[part].to(device).long()
        with autocast_for(device, amp_dtype):
            logits = forward_logits(model, x, multiple)
        if loss_fn is not None:
            extra = () if distances is None else (distances[part].to(device),)
            loss_sum += loss_fn(logits.float(), target, *extra) * (part.stop - part.start)
        preds = to_classes(logits.float(), ignore_index)
        matrix.update(preds, target)
        if per_image:
            images_confusion.append(per_image_confusion(preds, target, num_classes, ignore_index))
        if on_batch is not None:
            on_batch(part.stop - part.start)
    mean_loss = float(loss_sum) / max(len(images), 1) if loss_fn is not None else None
    stacked = torch.cat(images_confusion) if images_confusion else None
    return matrix.compute(), mean_loss, stacked
