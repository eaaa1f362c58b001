"""Class weights from the training split's label frequencies; the images and masks pass through unchanged.

Every method ends the same way, so weights from different methods are on one scale:

1. raw weights for the foreground classes present in the split (non-ignored classes with pixels);
2. normalised so their mean is 1 (the losses divide by the weight sum, so only ratios matter, and a
   mean of 1 keeps `cap` meaningful across methods);
3. clipped at `cap`;
4. a foreground class absent from the split gets `cap` (with `cap` None: the largest present weight):
   it is at least as rare as the rarest present class, and a later balancer or the validation data
   may still bring it in;
5. the ignored class gets 0.

`manual` weights skip steps 1 to 4: they are used as given, except that the ignored class gets 0.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import hookimpl
from harness.errors import ConfigError
from harness.specs import BalancedSplit, BalancerSpec


class ClassWeightsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["inverse", "median", "effective", "manual"] = Field(
        "median",
        description="inverse: 1/freq; median: median frequency balancing (Eigen & Fergus 2015); "
        "effective: effective number of samples (Cui et al. 2019); manual: the `weights` list.",
    )
    # Cui et al.'s 0.9999 suits image counts; with pixel counts (~1e5 big-rock pixels) beta^n is ~0 for
    # every class and the weights come out uniform, so the default sits much closer to 1.
    beta: float = Field(
        0.999999, gt=0.0, lt=1.0, description="effective: (1-beta)/(1-beta^n), n the class's pixel count."
    )
    cap: float | None = Field(
        10.0,
        ge=1.0,
        description="Largest weight after normalising to mean 1 over present classes; None: none.",
    )
    weights: list[Annotated[float, Field(ge=0.0)]] | None = Field(
        None, min_length=1, description="manual: one weight per class (the ignored class's is set to 0)."
    )

    @model_validator(mode="after")
    def _weights_with_manual(self) -> ClassWeightsParams:
        if self.method == "manual" and self.weights is None:
            raise ValueError("method 'manual' needs `weights` (one per class)")
        if self.method != "manual" and self.weights is not None:
            raise ValueError(f"`weights` is only used with method 'manual', not '{self.method}'")
        return self


def _pixel_counts(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, K) pixels of each class in each image (labels outside 0..K-1 are not counted)."""
    flat = masks.reshape(len(masks), -1).astype(np.int64)
    offsets = np.arange(len(masks))[:, None] * (num_classes + 1)
    # Labels >= K share an overflow bin per image, dropped below, so they cannot spill into the next image.
    binned = np.minimum(flat, num_classes) + offsets
    counts = np.bincount(binned.ravel(), minlength=len(masks) * (num_classes + 1))
    return counts.reshape(len(masks), num_classes + 1)[:, :num_classes]


def _raw_weights(params: ClassWeightsParams, counts: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Unnormalised (K,) weights; meaningful only where the class is present."""
    totals = counts.sum(axis=0).astype(np.float64)
    safe = np.maximum(totals, 1.0)
    if params.method == "inverse":
        return totals[counted].sum() / safe
    if params.method == "effective":
        return (1.0 - params.beta) / -np.expm1(safe * np.log(params.beta))
    # Median frequency balancing counts a class's frequency only over the images it appears in; over
    # all pixels, median(freq)/freq normalised to mean 1 would be the same as `inverse`.
    valid_per_image = counts[:, counted].sum(axis=1).astype(np.float64)
    present_in = counts > 0
    image_pixels = np.maximum((present_in * valid_per_image[:, None]).sum(axis=0), 1.0)
    freq = totals / image_pixels
    present = counted & (totals > 0)
    return np.median(freq[present]) / np.where(totals > 0, freq, 1.0)


def compute_weights(
    params: ClassWeightsParams, masks: np.ndarray, num_classes: int, ignore_index: int | None
) -> np.ndarray:
    """(K,) float64 weights following the module docstring's steps."""
    counted = np.ones(num_classes, dtype=bool)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        counted[ignore_index] = False
    if params.method == "manual":
        weights = np.asarray(params.weights, dtype=np.float64)
        return np.where(counted, weights, 0.0)
    counts = _pixel_counts(masks, num_classes)
    present = counted & (counts.sum(axis=0) > 0)
    if not present.any():
        return counted.astype(np.float64)  # nothing to measure: uniform over the counted classes
    raw = _raw_weights(params, counts, counted)
    weights = np.zeros(num_classes)
    weights[present] = raw[present] / raw[present].mean()
    if params.cap is not None:
        weights = np.minimum(weights, params.cap)
    absent = counted & ~present
    weights[absent] = params.cap if params.cap is not None else weights[present].max()
    return weights


def build(params: ClassWeightsParams):
    def balance(
        images: torch.Tensor, masks: torch.Tensor, *, num_classes: int, ignore_index: int | None, seed: int
    ) -> BalancedSplit:
        if params.weights is not None and len(params.weights) != num_classes:
            raise ConfigError(
                f"balancer 'classweights': weights has {len(params.weights)} values; "
                f"expected {num_classes} (one per class)"
            )
        weights = compute_weights(params, masks.cpu().numpy(), num_classes, ignore_index)
        return BalancedSplit(
            images=images, masks=masks, class_weights=torch.tensor(weights, dtype=torch.float32)
        )

    return balance


@hookimpl
def harness_balancers() -> list[BalancerSpec]:
    return [
        BalancerSpec(
            name="classweights",
            summary="Per-class loss weights from label frequencies (inverse, median, effective, manual)",
            params=ClassWeightsParams,
            build=build,
        )
    ]
