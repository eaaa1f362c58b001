"""Folders of images in and out: what `--data DIR`, `--masks DIR` and `predict --out DIR` read and write.

A source is a folder (every PNG/JPEG/TIFF in it, sorted by name) or a glob pattern. Images are read as
uint8 grayscale (RGB/RGBA are converted, with one notice; 16-bit images are scaled to 0-255); each keeps
its own size. Masks are PNGs of class indices with the image's file name (suffix .png).
"""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# A colour per class for `--palette` previews: background black, then soil, bedrock, sand, big rock, ...
PALETTE = np.array(
    [[0, 0, 0], [214, 140, 69], [120, 120, 130], [240, 220, 120], [200, 40, 40]]
    + [[(37 * i) % 256, (91 * i) % 256, (53 * i) % 256] for i in range(5, 256)],
    dtype=np.uint8,
)


@dataclass
class ImageFolder:
    """Images read from a folder or glob: one (H,W) uint8 array per file, in `paths` order."""

    paths: list[Path]
    images: list[np.ndarray]
    converted: int  # how many were colour and turned grayscale

    @property
    def names(self) -> list[str]:
        return [path.name for path in self.paths]

    def notice(self) -> str | None:
        """One line for the user when colour images were converted, else None."""
        if not self.converted:
            return None
        return f"note: {self.converted} of {len(self.paths)} images were colour; converted to grayscale"


def is_image_source(source: str) -> bool:
    """Whether `source` names a folder or a glob pattern (not an npz or a dataset name)."""
    return Path(source).is_dir() or any(ch in source for ch in "*?[")


def image_paths(source: str) -> list[Path]:
    """The image files of a folder or glob, sorted; DataError when there are none."""
    folder = Path(source)
    found = sorted(folder.iterdir()) if folder.is_dir() else sorted(Path(p) for p in glob.glob(source))
    paths = [p for p in found if p.is_file() and p.suffix.lower() in SUFFIXES]
    if not paths:
        raise DataError(f"{source}: no PNG, JPEG or TIFF images found ({', '.join(SUFFIXES)})")
    return paths


def _read(path: Path) -> np.ndarray:
    from skimage import io  # imported here: only folder sources need it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(io.imread(path))
    except Exception as exc:  # PIL, tifffile and imageio each raise their own kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise DataError(f"{path}: not a readable image ({first})") from None


def to_gray(image: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """(H,W) uint8 from a gray, RGB or RGBA image of uint8, uint16, bool or float in [0,1]; and whether it
    was colour."""
    kind, colour = image.dtype, image.ndim == 3 and image.shape[-1] in (3, 4)
    if colour:
        rgb = image[..., :3].astype(np.float64)
        image = rgb @ np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray's weights
    elif image.ndim != 2:
        raise DataError(f"{path}: image of shape {image.shape}; expected (H,W) gray or (H,W,3) colour")
    if np.issubdtype(kind, np.floating) and image.max(initial=0) <= 1.0:
        image = image * 255.0
    elif kind == np.uint16:
        image = image / 257.0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), colour


def read_images(source: str) -> ImageFolder:
    """Every image of a folder or glob as uint8 grayscale; the first unreadable file is named."""
    paths = image_paths(source)
    images, converted = [], 0
    for path in paths:
        gray, colour = to_gray(_read(path), path)
        images.append(gray)
        converted += colour
    return ImageFolder(paths, images, converted)


def read_masks(folder: str, names: list[str], shapes: list[tuple[int, ...]], num_classes: int):
    """The mask of each image name (same stem, any supported suffix) from `folder`, checked against the
    image's shape and the class count."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{folder}: --masks must be a folder of PNG masks named like the images")
    masks = []
    for name, shape in zip(names, shapes, strict=True):
        stem = Path(name).stem
        candidates = [root / f"{stem}{suffix}" for suffix in SUFFIXES] + [root / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{root}: no mask for image {name} (expected {stem}.png)")
        mask = _read(path)
        if mask.ndim == 3:  # a mask saved as RGB gray: the channels are equal
            mask = mask[..., 0]
        if mask.shape != shape:
            raise DataError(f"{path}: mask of shape {mask.shape} for an image of shape {shape}")
        if mask.min(initial=0) < 0 or mask.max(initial=0) >= num_classes:
            raise DataError(f"{path}: values outside the classes 0..{num_classes - 1}")
        masks.append(mask.astype(np.uint8))
    return masks


def write_masks(masks: list[np.ndarray], names: list[str], out: Path, palette: bool = False) -> list[Path]:
    """One PNG of class indices per image (`name`'s stem + .png) in `out`; with `palette`, a coloured
    preview beside each (stem + .palette.png). Returns the mask paths."""
    from skimage import io

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for mask, name in zip(masks, names, strict=True):
        path = out / f"{Path(name).stem}.png"
        io.imsave(path, mask.astype(np.uint8), check_contrast=False)
        if palette:
            io.imsave(out / f"{Path(name).stem}.palette.png", PALETTE[mask], check_contrast=False)
        written.append(path)
    return written
