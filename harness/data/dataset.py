"""The dataset type and the AN2DL npz loader: `SegmentationData`, the class names, `load_npz` and its checks.

Every image set is held as (N, H, W) uint8 tensors: one grayscale channel, masks of class ids. The
synthetic generator lives in `harness.data.synthetic`, the train/validation split in `harness.data.splits`.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, DataError
from harness.parsing import did_you_mean

CLASS_NAMES = ("background", "soil", "bedrock", "sand", "big rock")
NPZ_KEYS = ("training_set", "test_set", "groups")
# What an npz may inflate to in all, checked on the sizes its zip directory declares before anything is
# read (zipfile never inflates a member past its declared size, so the check cannot be lied past).
MAX_DATA_BYTES_ENV = "HARNESS_MAX_DATA_BYTES"
DEFAULT_MAX_DATA_BYTES = 4 * 2**30
# A member above BOMB_FLOOR bytes that inflates more than MAX_RATIO-fold is a decompression bomb, not data
# (the challenge's file compresses under 3:1); a real file that compressible can be saved with np.savez.
MAX_RATIO = 100
BOMB_FLOOR = 64 * 2**20


@dataclass
class SegmentationData:
    """Labelled images, their masks and the optional unlabelled test images of one dataset."""

    images: torch.Tensor
    masks: torch.Tensor
    test_images: torch.Tensor | None
    num_classes: int
    class_names: tuple[str, ...]
    source: str
    dataset_id: str
    groups: np.ndarray | None = None  # (N,) image, scene or site ids: no split puts one group on both sides

    def __post_init__(self) -> None:
        # Catches programming errors early: every consumer relies on this layout.
        if self.images.shape != self.masks.shape or self.images.dim() != 3:
            raise ValueError(f"images {tuple(self.images.shape)} and masks {tuple(self.masks.shape)} differ")
        if self.images.dtype != torch.uint8 or self.masks.dtype != torch.uint8:
            raise ValueError("images and masks must be uint8 tensors")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def subset(self, index: torch.Tensor | np.ndarray) -> SegmentationData:
        """The training rows picked by `index` (ids or a boolean mask); test images are kept as they are.

        The dataset_id is recomputed, so it always identifies the rows actually held.
        """
        idx = torch.as_tensor(np.asarray(index) if isinstance(index, np.ndarray) else index)
        if idx.dtype != torch.bool:
            idx = idx.long()
        images, masks = self.images[idx].contiguous(), self.masks[idx].contiguous()
        return SegmentationData(
            images=images,
            masks=masks,
            test_images=self.test_images,
            num_classes=self.num_classes,
            class_names=self.class_names,
            source=self.source,
            dataset_id=content_id(images.numpy(), masks.numpy()),
            groups=None if self.groups is None else self.groups[idx.numpy()],
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The challenge's class names, cut or padded with "class K" to `num_classes` entries."""
    extra = tuple(f"class {i}" for i in range(len(CLASS_NAMES), num_classes))
    return (CLASS_NAMES + extra)[:num_classes]


def content_id(images: np.ndarray, masks: np.ndarray) -> str:
    """A short digest of the rows held: equal content, and only that, gives an equal id."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images))
    digest.update(np.ascontiguousarray(masks))
    return digest.hexdigest()[:12]


def _check_num_classes(num_classes: int) -> None:
    # Masks are stored as uint8, so more than 256 classes cannot be represented.
    if not 2 <= num_classes <= 256:
        raise ConfigError(f"num_classes must be between 2 and 256, got {num_classes}")


# ---------------------------------------------------------------------------------------------------------
# AN2DL npz loader


def load_npz(path: str | Path, num_classes: int = 5) -> SegmentationData:
    """Load and strictly validate an AN2DL npz: `training_set` (N, 2, H, W) and optional `test_set` (M, H, W).

    Images may be uint8, any integer type or floats in 0-255 (rounded); masks must be integral 0..K-1.
    Raises DataError with one line naming the file, the key and what was found.
    """
    _check_num_classes(num_classes)
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name too long for the filesystem
        raise DataError(f"{path}: cannot be opened ({exc.strerror}); pass the path of an .npz file") from None
    if not exists:
        raise DataError(f"{path}: file not found; pass the path of an AN2DL .npz file")
    if is_dir:
        raise DataError(f"{path}: is a directory; pass the path of an AN2DL .npz file")
    with _open_npz(path) as archive:
        if "training_set" not in archive.files:
            found = ", ".join(repr(k) for k in archive.files) or "none"
            raise DataError(f"{path}: key 'training_set' is missing; keys found: {found}")
        _refuse_unknown_keys(archive.files, path)
        train = _read_key(archive, "training_set", path)
        test = _read_key(archive, "test_set", path) if "test_set" in archive.files else None
        groups = _read_key(archive, "groups", path) if "groups" in archive.files else None
    images, masks = _validate_training_set(train, path, num_classes)
    _check_groups(groups, len(images), path)
    test_images = None if test is None else _validate_test_set(test, path, images.shape[1:])
    return SegmentationData(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(masks),
        test_images=None if test_images is None else torch.from_numpy(test_images),
        num_classes=num_classes,
        class_names=class_names_for(num_classes),
        source=str(path),
        dataset_id=content_id(images, masks),
        groups=groups,
    )


def _check_groups(groups: np.ndarray | None, total: int, path: Path) -> None:
    if groups is not None and (groups.shape != (total,) or groups.dtype.kind not in "iuUS"):
        raise DataError(
            f"{path}: key 'groups' must be ({total},) integers or strings (one id per training image), "
            f"got shape {groups.shape} dtype {groups.dtype}"
        )


def _refuse_unknown_keys(keys: list[str], path: Path) -> None:
    # A misspelt 'test_set' would otherwise vanish silently and surface later as "no test_set".
    unknown = [key for key in keys if key not in NPZ_KEYS]
    if unknown:
        raise DataError(
            f"{path}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], NPZ_KEYS)}; an AN2DL file holds "
            "only 'training_set' (N, 2, H, W) and optionally 'test_set' (M, H, W) and 'groups' (N,)"
        )


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    # Without this check numpy falls back to unpickling and blames "pickled data" for any random file.
    if not magic.startswith((b"PK", b"\x93NUMPY")):
        found = "the file is empty" if not magic else "it does not start with a zip header"
        raise DataError(f"{path}: not an .npz archive ({found}); expected np.savez output")
    if magic.startswith(b"PK"):
        _check_members(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        # A damaged zip directory fails in zipfile (BadZipFile, EOFError, struct errors, unsupported
        # features) or in numpy's .npy header parser, each its own way: all mean "not a readable archive".
        raise DataError(
            f"{path}: not a readable .npz archive ({_first_line(exc)}); expected np.savez output"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: holds a single array of shape {loaded.shape}, not an .npz archive; "
            "save it with np.savez(path, training_set=..., test_set=...)"
        )
    return loaded


def max_data_bytes() -> int:
    """The most an npz may inflate to: `$HARNESS_MAX_DATA_BYTES`, else `DEFAULT_MAX_DATA_BYTES`."""
    text = os.environ.get(MAX_DATA_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DATA_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_DATA_BYTES_ENV} must be a whole number of bytes above 0, got {text!r}")
    return value


def _check_members(path: Path) -> None:
    """Refuse, from the zip directory alone, archives that are ambiguous or would inflate too far."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except Exception:
        return  # not a readable zip: np.load below says so in its own words
    seen: set[str] = set()
    for member in members:
        # numpy names a member by its file name less ".npy", so "a.npy" and "a" are the same key.
        key = member.filename.removesuffix(".npy")
        if key in seen:
            raise DataError(
                f"{path}: holds two members named {key!r}; an ambiguous archive is refused, save it again "
                "with np.savez"
            )
        seen.add(key)
    limit = max_data_bytes()
    total = sum(member.file_size for member in members)
    if total > limit:
        raise DataError(
            f"{path}: would inflate to {total:,} bytes, above the limit of {limit:,} "
            f"(raise {MAX_DATA_BYTES_ENV} if the file is genuine)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > BOMB_FLOOR and ratio > MAX_RATIO:
            raise DataError(
                f"{path}: member {member.filename!r} would inflate {ratio:,.0f}-fold to "
                f"{member.file_size:,} bytes, a decompression bomb; refused before inflating "
                "(save genuine data with np.savez, uncompressed)"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_key(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        value = archive[key]
    except ValueError as exc:
        # numpy refuses pickled (object) arrays when allow_pickle=False, and says so in the message.
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{path}: key {key!r} holds Python objects (dtype object), which are refused because "
                "loading them would run pickled code; save it as a numeric array"
            ) from None
        raise DataError(f"{path}: key {key!r} cannot be read ({_first_line(exc)})") from None
    except Exception as exc:
        # A damaged member fails anywhere in zlib, zipfile or numpy's header parser, each its own way.
        raise DataError(
            f"{path}: key {key!r} cannot be read, the file looks corrupt ({_first_line(exc)})"
        ) from None
    # numpy hands back the raw bytes of a zip member that has no .npy header instead of refusing it.
    if not isinstance(value, np.ndarray):
        raise DataError(
            f"{path}: key {key!r} is not a numpy array (a zip member without an .npy header); "
            "save the file with np.savez"
        )
    return value


def _validate_training_set(train: np.ndarray, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}: key 'training_set'"
    if train.ndim != 4 or train.shape[1] != 2:
        raise DataError(f"{where} has shape {train.shape}; expected (N, 2, H, W)")
    if 0 in train.shape:
        raise DataError(f"{where} is empty (shape {train.shape}); expected at least one image")
    _check_numeric(train, where)
    images = _to_uint8_images(train[:, 0], f"{where} image channel [:, 0]")
    masks = _to_uint8_masks(train[:, 1], f"{where} mask channel [:, 1]", num_classes)
    return images, masks


def _validate_test_set(test: np.ndarray, path: Path, image_hw: tuple[int, ...]) -> np.ndarray:
    where = f"{path}: key 'test_set'"
    if test.ndim != 3:
        raise DataError(f"{where} has shape {test.shape}; expected (M, H, W)")
    if 0 in test.shape:
        raise DataError(f"{where} is empty (shape {test.shape}); drop the key or store test images in it")
    if tuple(test.shape[1:]) != tuple(image_hw):
        raise DataError(
            f"{where} has images of {test.shape[1]}x{test.shape[2]} (shape {test.shape}); "
            f"expected {image_hw[0]}x{image_hw[1]} like 'training_set'"
        )
    _check_numeric(test, where)
    return _to_uint8_images(test, where)


def _check_numeric(array: np.ndarray, where: str) -> None:
    if array.dtype.kind not in "uif":
        raise DataError(f"{where} has dtype {array.dtype}; expected uint8, integers or floats")
    # min and max propagate NaN and reach inf, so two reductions spare a full boolean temporary.
    if array.dtype.kind == "f" and not np.isfinite([array.min(), array.max()]).all():
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{where} has {bad} NaN/inf values; expected finite numbers")


def _to_uint8_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        bad = int(np.count_nonzero((images < 0) | (images > 255)))
        raise DataError(f"{where} has values outside 0-255 (min {_fmt(low)}, max {_fmt(high)}; {bad} pixels)")
    if images.dtype.kind != "f":
        return np.ascontiguousarray(images, dtype=np.uint8)
    # Float images (e.g. the challenge's float64 file) may carry resampling fractions: round, don't refuse.
    # Rounding straight into uint8 avoids a float64 temporary that costs a second on the real file.
    rounded = np.empty(images.shape, dtype=np.uint8)
    np.rint(images, out=rounded, casting="unsafe")
    return rounded


def _to_uint8_masks(masks: np.ndarray, where: str, num_classes: int) -> np.ndarray:
    if masks.min() < 0 or masks.max() > num_classes - 1:
        bad = masks[(masks < 0) | (masks > num_classes - 1)]
        values, counts = np.unique(bad, return_counts=True)
        listed = ", ".join(f"{_fmt(v)} ({c} pixels)" for v, c in zip(values[:5], counts[:5], strict=True))
        more = f" and {len(values) - 5} more values" if len(values) > 5 else ""
        raise DataError(
            f"{where} has values outside 0..{num_classes - 1}: {listed}{more}; "
            f"fix the labels or set num_classes"
        )
    labels = np.ascontiguousarray(masks, dtype=np.uint8)
    # In range, the uint8 cast truncates, so any value it changed was not a whole class id.
    if masks.dtype.kind == "f":
        fractional = labels != masks
        if fractional.any():
            example = masks[fractional].flat[0]
            count = int(np.count_nonzero(fractional))
            raise DataError(
                f"{where} has non-integral values (e.g. {_fmt(example)}; {count} pixels); "
                f"expected class ids 0..{num_classes - 1}"
            )
    return labels


def _fmt(value: np.generic) -> str:
    number = value.item()
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return f"{number:g}" if isinstance(number, float) else str(number)
