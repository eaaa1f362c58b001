"""Copy-paste pixel balancing: connected components of rare classes are pasted onto training images.

Components are found per class (8-connected, `skimage.measure.label`) in the training split given;
those smaller than `min_area` pixels are dropped. Each image, in order, becomes a target with chance
`probability` and then receives `per_image` pastes. A paste picks a class uniformly among the rare
classes that have components (so a second rare class is not drowned by a more fragmented one), then
one of its components uniformly; optionally rescales it (bilinear for the image, nearest for the
mask), flips it horizontally with chance 1/2, turns it by a multiple of 90 degrees chosen among those
whose turned crop fits the image, and places it uniformly anywhere fully inside the target. Only the
component's own pixels are written, image values and class together; a component that fits in no
orientation (possible only when scaled up) is skipped.

With `keep_originals`, the input rows come back unchanged and every target that received a paste is
appended as a new row, in target order; without, the pasted version replaces its target in place.
Pasted rows are not marked for stronger augmentation (`strong` stays None). A split without any
component to paste, or where no image was picked, comes back as given. All randomness comes from a
numpy generator seeded with `seed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from skimage.measure import label, regionprops
from skimage.transform import resize

from harness import hookimpl
from harness.specs import BalancedSplit, BalancerSpec
from plugins.balancers.oversample import check_classes, rows_with

Scale = Annotated[float, Field(ge=0.25, le=4.0)]


class CopyPasteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[Annotated[int, Field(ge=0)]] = Field(
        [4], min_length=1, description="Classes whose connected components are cut and pasted."
    )
    min_area: int = Field(4, ge=1, le=10_000, description="Smallest component (pixels) worth pasting.")
    per_image: int = Field(2, ge=1, le=50, description="Pastes into each image picked as a target.")
    probability: float = Field(0.5, ge=0.0, le=1.0, description="Chance that an image is picked as a target.")
    rotate: bool = Field(True, description="Turn pastes by a random multiple of 90 degrees (where it fits).")
    flip: bool = Field(True, description="Flip pastes horizontally with chance 1/2.")
    scale_range: tuple[Scale, Scale] | None = Field(
        None, description="[low, high] uniform rescaling of pastes, e.g. [0.75, 1.25]; None: no rescaling."
    )
    keep_originals: bool = Field(
        True, description="Append pasted images as new rows (True) or replace their targets (False)."
    )

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"scale_range low {value[0]} is above high {value[1]}")
        return value


@dataclass(frozen=True)
class Component:
    """One connected component: its bounding box's image values and its own pixels within the box."""

    label: int
    pixels: np.ndarray  # (h, w) uint8
    footprint: np.ndarray  # (h, w) bool


def find_components(
    images: np.ndarray, masks: np.ndarray, rows: np.ndarray, params: CopyPasteParams
) -> dict[int, list[Component]]:
    """Components of at least `min_area` pixels per class, for the classes that have any."""
    found: dict[int, list[Component]] = {}
    for row in rows:
        for cls in params.classes:
            for region in regionprops(label(masks[row] == cls, connectivity=2)):
                if region.area < params.min_area:
                    continue
                top, left, bottom, right = region.bbox
                pixels = images[row, top:bottom, left:right].copy()
                found.setdefault(cls, []).append(Component(cls, pixels, region.image.copy()))
    return found


def _rescale(pixels: np.ndarray, footprint: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image values resized bilinearly, the footprint by nearest neighbour (so it stays a hard mask)."""
    size = (max(1, round(pixels.shape[0] * factor)), max(1, round(pixels.shape[1] * factor)))
    image = resize(
        pixels.astype(np.float64), size, order=1, mode="edge", preserve_range=True, anti_aliasing=False
    )
    mask = resize(footprint.astype(np.uint8), size, order=0, preserve_range=True, anti_aliasing=False)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask > 0


def _transform(
    component: Component, params: CopyPasteParams, rng: np.random.Generator, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The component's pixels and footprint after scale, flip and turn; None when it cannot fit."""
    pixels, footprint = component.pixels, component.footprint
    if params.scale_range is not None:
        pixels, footprint = _rescale(pixels, footprint, rng.uniform(*params.scale_range))
    if params.flip and rng.random() < 0.5:
        pixels, footprint = pixels[:, ::-1], footprint[:, ::-1]
    height, width = footprint.shape
    turns = [t for t in range(4 if params.rotate else 1) if _fits(height, width, t, shape)]
    if not turns or not footprint.any():
        return None
    turn = turns[rng.integers(len(turns))]
    return np.rot90(pixels, turn), np.rot90(footprint, turn)


def _fits(height: int, width: int, turn: int, shape: tuple[int, int]) -> bool:
    """Whether a height x width crop turned `turn` quarter turns fits inside `shape`."""
    if turn % 2:
        height, width = width, height
    return height <= shape[0] and width <= shape[1]


def _paste(image: np.ndarray, mask: np.ndarray, placed, cls: int, rng: np.random.Generator) -> None:
    """Write the placed component at a uniform position fully inside the image (in place)."""
    pixels, footprint = placed
    height, width = footprint.shape
    top = rng.integers(image.shape[0] - height + 1)
    left = rng.integers(image.shape[1] - width + 1)
    window = np.s_[top : top + height, left : left + width]
    image[window][footprint] = pixels[footprint]
    mask[window][footprint] = cls


def paste_into(
    images: np.ndarray,
    masks: np.ndarray,
    found: dict[int, list[Component]],
    params: CopyPasteParams,
    seed: int,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(row, pasted image, pasted mask) for every target that received at least one paste."""
    rng = np.random.default_rng(seed)
    classes = sorted(found)
    pasted = []
    for row in range(len(images)):
        if rng.random() >= params.probability:
            continue
        image, mask, changed = images[row].copy(), masks[row].copy(), False
        for _ in range(params.per_image):
            cls = classes[rng.integers(len(classes))]
            component = found[cls][rng.integers(len(found[cls]))]
            placed = _transform(component, params, rng, image.shape)
            if placed is not None:
                _paste(image, mask, placed, cls, rng)
                changed = True
        if changed:
            pasted.append((row, image, mask))
    return pasted


def _assemble(images: torch.Tensor, masks: torch.Tensor, pasted, keep_originals: bool) -> BalancedSplit:
    """The output split: pasted rows appended after the inputs, or put in their targets' places."""
    rows = [row for row, _, _ in pasted]
    new_images = torch.from_numpy(np.stack([image for _, image, _ in pasted]))
    new_masks = torch.from_numpy(np.stack([mask for _, _, mask in pasted]))
    if keep_originals:
        return BalancedSplit(images=torch.cat([images, new_images]), masks=torch.cat([masks, new_masks]))
    out_images, out_masks = images.clone(), masks.clone()
    out_images[rows], out_masks[rows] = new_images, new_masks
    return BalancedSplit(images=out_images, masks=out_masks)


def build(params: CopyPasteParams):
    def balance(
        images: torch.Tensor, masks: torch.Tensor, *, num_classes: int, ignore_index: int | None, seed: int
    ) -> BalancedSplit:
        check_classes(params.classes, num_classes, ignore_index, "copypaste")
        image_array, mask_array = images.cpu().numpy(), masks.cpu().numpy()
        found = find_components(image_array, mask_array, rows_with(masks, params.classes), params)
        pasted = paste_into(image_array, mask_array, found, params, seed) if found else []
        if not pasted:
            return BalancedSplit(images=images, masks=masks, class_weights=None)
        return _assemble(images, masks, pasted, params.keep_originals)

    return balance


@hookimpl
def harness_balancers() -> list[BalancerSpec]:
    return [
        BalancerSpec(
            name="copypaste",
            summary="Paste connected components of rare classes onto training images (copy-paste)",
            params=CopyPasteParams,
            build=build,
        )
    ]
