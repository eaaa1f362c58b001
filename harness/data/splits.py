"""Splitting a dataset: which classes each image holds (`class_presence`) and the seeded train/validation
`split`, stratified on the rarest foreground class."""

from __future__ import annotations

import numpy as np
import torch

from harness.errors import DataError


def class_presence(masks: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) bool: whether each image contains each class."""
    flat = _as_numpy(masks).reshape(len(masks), -1)
    # One pass per class over uint8 data beats a bincount, which would widen 85M pixels to int64.
    return np.stack([(flat == c).any(axis=1) for c in range(num_classes)], axis=1)


def split(
    masks: torch.Tensor, val_fraction: float, seed: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded train/validation split as two sorted int64 index tensors, disjoint and covering all rows.

    Images containing the rarest foreground class (present in the fewest images) go to both parts in about
    the val_fraction ratio; the rest is split at random. Validation gets max(1, round(val_fraction * N)).
    """
    total = len(masks)
    if total < 2:
        raise DataError(f"a train/validation split needs at least 2 images, the dataset has {total}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_val = min(total - 1, max(1, round(val_fraction * total)))
    presence = class_presence(masks, num_classes)[:, 1:]
    images_per_class = presence.sum(axis=0)
    candidates = np.flatnonzero(images_per_class > 0)
    rare = np.zeros(total, dtype=bool)
    if len(candidates):
        rare = presence[:, candidates[np.argmin(images_per_class[candidates])]]
    rare_rows, other_rows = np.flatnonzero(rare), np.flatnonzero(~rare)
    rng = np.random.default_rng(seed)
    # A lone rare image stays in training, where the model can at least learn from it.
    k_rare = 0
    if len(rare_rows) >= 2:
        k_rare = min(n_val, max(1, min(len(rare_rows) - 1, round(val_fraction * len(rare_rows)))))
    # When the non-rare rows cannot fill validation, the shortfall comes from the rare rows.
    k_rare = max(k_rare, n_val - len(other_rows))
    val = np.concatenate([rng.permutation(rare_rows)[:k_rare], rng.permutation(other_rows)[: n_val - k_rare]])
    is_val = np.zeros(total, dtype=bool)
    is_val[val] = True
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))


def _as_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
