"""Segmentation metrics from a confusion matrix: the AN2DL challenge mIoU, foreground mIoU, Dice, accuracy.

Counting uses ``scatter_add_`` into a fixed number of bins rather than ``torch.bincount``: on CUDA,
bincount reads the input's min and max back to the host to size its output, a sync per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_KINDS = ("an2dl", "fg")


def _cells(preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None):
    """Flat cell index per pixel: t*K+p, K*K for a dropped pixel, K*K+1 for an out-of-range label."""
    if preds.shape != target.shape:
        raise ValueError(f"preds and target shapes differ: {tuple(preds.shape)} vs {tuple(target.shape)}")
    if preds.is_floating_point() or target.is_floating_point():
        raise ValueError(
            f"preds and target must hold integer class labels, got {preds.dtype}, {target.dtype}"
        )
    k = num_classes
    p, t = preds.long(), target.long()
    p_ok = (p >= 0) & (p < k)
    cells = torch.where(p_ok & (t >= 0) & (t < k), t * k + p, k * k + 1)
    if ignore_index is not None:
        # An ignored truth may lie outside [0, K) (e.g. 255); a bad prediction there is still a bug.
        cells = torch.where((t == ignore_index) & p_ok, k * k, cells)
    return cells


def _count(cells: torch.Tensor, num_bins: int) -> torch.Tensor:
    flat = cells.reshape(-1)
    ones = torch.ones((), dtype=torch.int64, device=flat.device).expand(flat.numel())
    return torch.zeros(num_bins, dtype=torch.int64, device=flat.device).scatter_add_(0, flat, ones)


def confusion_matrix(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 0
) -> torch.Tensor:
    """Return the (K, K) int64 confusion matrix (rows = truth, cols = prediction) on the inputs' device.

    ``preds`` and ``target`` are integer label tensors of one shape. Pixels whose target equals
    ``ignore_index`` are dropped, as are pixels with a label outside ``[0, K)`` (``ConfusionMatrix``
    counts the latter and reports them). No host synchronisation.
    """
    k = num_classes
    return _count(_cells(preds, target, k, ignore_index), k * k + 2)[: k * k].view(k, k)


def per_image_confusion(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 0
) -> torch.Tensor:
    """Return (B, K, K) int64 confusion matrices, one per image along dim 0, counted in one pass."""
    if preds.dim() == 0:
        raise ValueError("per_image_confusion needs a leading batch dimension")
    k, b = num_classes, preds.shape[0]
    bins = k * k + 2
    cells = _cells(preds, target, k, ignore_index).reshape(b, -1)
    cells = cells + torch.arange(b, device=cells.device).unsqueeze(1) * bins
    return _count(cells, b * bins).view(b, bins)[:, : k * k].reshape(b, k, k)


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores derived from one confusion matrix; NaN marks an undefined value."""

    miou_an2dl: float
    miou_fg: float
    iou: tuple[float, ...]
    dice: tuple[float, ...]
    pixel_accuracy: float
    num_pixels: int

    def miou(self, kind: str) -> float:
        """Return the mean IoU of ``kind``: ``"an2dl"`` (challenge metric) or ``"fg"`` (foreground only)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown mIoU kind {kind!r}; expected one of {', '.join(_KINDS)}")
        return self.miou_an2dl if kind == "an2dl" else self.miou_fg

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        """Return a JSON-safe dict (NaN becomes None); per-class values are keyed by ``class_names``."""
        names = [str(i) for i in range(len(self.iou))] if class_names is None else list(class_names)
        if len(names) != len(self.iou):
            raise ValueError(f"got {len(names)} class names for {len(self.iou)} classes")
        return {
            "miou_an2dl": _json(self.miou_an2dl),
            "miou_fg": _json(self.miou_fg),
            "pixel_accuracy": _json(self.pixel_accuracy),
            "num_pixels": self.num_pixels,
            "iou": {n: _json(v) for n, v in zip(names, self.iou, strict=True)},
            "dice": {n: _json(v) for n, v in zip(names, self.dice, strict=True)},
        }


def _json(x: float) -> float | None:
    return None if math.isnan(x) else x


def _nanmean(values: torch.Tensor) -> float:
    defined = values[~values.isnan()]
    return float(defined.mean()) if defined.numel() else math.nan


def metrics_from_confusion(matrix: torch.Tensor, ignore_index: int | None = 0) -> SegmentationMetrics:
    """Compute ``SegmentationMetrics`` from a (K, K) confusion matrix (rows = truth) in float64.

    The ``ignore_index`` row is zeroed first, so a matrix that still counts ignored pixels gives the
    same result as one built with them dropped. A class whose TP+FP+FN is zero has NaN IoU and Dice and
    is left out of both means; ``an2dl`` averages all other classes (a foreground pixel predicted as the
    ignored class gives that class IoU 0), ``fg`` all other classes but ``ignore_index``.
    """
    m = matrix.detach().to(device="cpu", dtype=torch.float64).clone()
    k = m.shape[0]
    in_range = ignore_index is not None and 0 <= ignore_index < k
    if in_range:
        m[ignore_index] = 0
    tp = m.diagonal()
    fp_fn = m.sum(0) + m.sum(1) - 2 * tp
    undefined = (tp + fp_fn) == 0
    iou = torch.where(undefined, math.nan, tp / (tp + fp_fn))
    dice = torch.where(undefined, math.nan, 2 * tp / (2 * tp + fp_fn))
    fg = [c for c in range(k) if not (in_range and c == ignore_index)]
    total = m.sum()
    return SegmentationMetrics(
        miou_an2dl=_nanmean(iou),
        miou_fg=_nanmean(iou[fg]),
        iou=tuple(iou.tolist()),
        dice=tuple(dice.tolist()),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
        num_pixels=int(total),
    )


class ConfusionMatrix:
    """Accumulates a confusion matrix on the device across batches (no host sync in ``update``).

    With ``device=None`` the counts live on the device of the first batch.
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = 0, device: torch.device | str | None = None
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._device = None if device is None else torch.device(device)
        self._counts: torch.Tensor | None = None

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of integer label tensors (any shape, the same for both)."""
        k = self.num_classes
        if self._counts is None:
            self._counts = torch.zeros(k * k + 2, dtype=torch.int64, device=self._device or preds.device)
        dev = self._counts.device
        self._counts += _count(_cells(preds.to(dev), target.to(dev), k, self.ignore_index), k * k + 2)

    def reset(self) -> None:
        """Forget every counted pixel."""
        self._counts = None

    @property
    def matrix(self) -> torch.Tensor:
        """The (K, K) int64 matrix counted so far (rows = truth, cols = prediction)."""
        k = self.num_classes
        if self._counts is None:
            return torch.zeros(k, k, dtype=torch.int64, device=self._device)
        # A copy, so that later updates do not change a matrix the caller already holds.
        return self._counts[: k * k].view(k, k).clone()

    def compute(self) -> SegmentationMetrics:
        """Return the metrics so far; ValueError if any pixel had a label outside ``[0, num_classes)``."""
        bad = 0 if self._counts is None else int(self._counts[-1])
        if bad:
            raise ValueError(f"{bad} pixels had a label outside [0, {self.num_classes}); check num_classes")
        return metrics_from_confusion(self.matrix, self.ignore_index)
