"""The albumentations backend: a pipeline run per image on the host, on (N, H, W) uint8 numpy arrays.

`build_augmenter` composes the steps of `harness.augment.vocabulary` into albumentations transforms with
the mask-safe settings that config cannot change (nearest-neighbour masks, exposed pixels filled with 0),
one compose for ordinary rows and one, on the strong stream, for rows marked strong. albumentations itself
is imported only when an augmenter is built. Every step has an albumentations version; only some have a
batched one (`harness.augment.batched`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.augment.seeds import strong_seed
from harness.augment.vocabulary import DEFAULT_PARAMS, AugmentPipeline, TransformSpec
from harness.errors import ConfigError

# (images, masks, strong_rows=None) -> augmented copies, all (N, H, W) uint8 numpy arrays.
HostAugmenter = Callable[..., tuple[np.ndarray, np.ndarray]]


_CLASS_NAMES = {
    "hflip": "HorizontalFlip",
    "affine": "Affine",
    "brightness_contrast": "RandomBrightnessContrast",
    "solarize": "Solarize",
    "elastic": "ElasticTransform",
    "grid_distortion": "GridDistortion",
    "noise": "GaussNoise",
}
_GEOMETRIC = ("affine", "elastic", "grid_distortion")


@functools.cache
def load_albumentations() -> tuple[Any, Any]:
    """The albumentations and cv2 modules, imported on first use (importing them takes a while)."""
    # albumentations asks the network for newer releases on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations
    import cv2

    return albumentations, cv2


@functools.cache
def _shape_keeping_rot90() -> type:
    """RandomRotate90 that turns non-square frames by 0 or 180 degrees only, so H x W never changes."""
    A, _ = load_albumentations()

    class ShapeKeepingRotate90(A.RandomRotate90):
        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
            height, width = params["shape"][:2]
            factor = params["factor"]
            # Maps the uniform draw 0,1,2,3 to 0,2,2,0: still uniform, and the RNG use stays the same.
            if height != width and factor % 2:
                factor = (factor + 1) % 4
            return {"factor": factor}

    return ShapeKeepingRotate90


def make_transform(spec: TransformSpec) -> Any:
    """The albumentations transform for one step, with the mask-safe settings that config cannot change."""
    A, cv2 = load_albumentations()
    kwargs = {**DEFAULT_PARAMS.get(spec.name, {}), **spec.params}
    if "translate_px" in spec.params:
        kwargs.pop("translate_percent", None)  # albumentations refuses both
    if spec.name in _GEOMETRIC:
        kwargs |= {
            "interpolation": cv2.INTER_LINEAR,
            "mask_interpolation": cv2.INTER_NEAREST,  # a blend of two class ids is a third, wrong class
            "border_mode": cv2.BORDER_CONSTANT,
            "fill_mask": 0,  # background is ignored, so exposed pixels teach nothing wrong
        }
    factory = _shape_keeping_rot90() if spec.name == "rot90" else getattr(A, _CLASS_NAMES[spec.name])
    return factory(**kwargs, p=spec.p)


def _compose(steps: list[TransformSpec], seed: int, where: str) -> Callable[..., dict] | None:
    if not steps:
        return None
    A, _ = load_albumentations()
    transforms = []
    for index, step in enumerate(steps):
        try:
            transforms.append(make_transform(step))
        except (ValueError, TypeError) as exc:
            # Only a constraint between arguments that the allow-list's types cannot express gets here.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{where}[{index}] ({step.name}): {reason}") from None
    return A.Compose(transforms, seed=seed)


def build_augmenter(pipeline: AugmentPipeline, seed: int) -> HostAugmenter | None:
    """A callable (images, masks, strong_rows=None) -> augmented copies, or None when nothing would change.

    `images` and `masks` are (N, H, W) uint8; `strong_rows` is a bool (N,) array choosing `pipeline.strong()`
    for those rows. Inputs are left untouched. The RNGs are seeded once and advance with each call, so a
    fresh augmenter with the same seed replays the same sequence, call after call.
    """
    if seed < 0:
        raise ConfigError(f"augmentation seed must be >= 0, got {seed}")
    normal = _compose(pipeline.steps, seed, "augment.steps")
    strong = _compose(pipeline.strong(), strong_seed(seed), "augment.strong_steps")
    if normal is None and strong is None:
        return None

    def augment(
        images: np.ndarray, masks: np.ndarray, strong_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        strong_rows = _check_batch(images, masks, strong_rows)
        out_images, out_masks = images.copy(), masks.copy()
        for i in range(len(images)):
            compose = strong if strong_rows[i] else normal
            if compose is not None:
                result = compose(image=images[i], mask=masks[i])
                out_images[i], out_masks[i] = result["image"], result["mask"]
        return out_images, out_masks

    return augment


def _check_batch(images: np.ndarray, masks: np.ndarray, strong_rows: np.ndarray | None) -> np.ndarray:
    # Programming errors, not user input: the training loop builds these arrays itself.
    if images.shape != masks.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and masks {masks.shape} must both be (N, H, W)")
    if images.dtype != np.uint8 or masks.dtype != np.uint8:
        raise ValueError(f"images ({images.dtype}) and masks ({masks.dtype}) must be uint8")
    if strong_rows is None:
        return np.zeros(len(images), dtype=bool)
    strong_rows = np.asarray(strong_rows)
    # An index array would silently read as booleans; insist on a mask of one flag per row.
    if strong_rows.dtype != np.bool_ or strong_rows.shape != (len(images),):
        raise ValueError(
            f"strong_rows must be a bool array of shape ({len(images)},), "
            f"got {strong_rows.dtype} {strong_rows.shape}"
        )
    return strong_rows
