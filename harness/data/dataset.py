"""Datasets: the AN2DL npz loader, a synthetic Mars-like generator, the train/val split and augmentation.

Every image set is held as (N, H, W) uint8 tensors: one grayscale channel, masks of class ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError, DataError
from harness.parsing import did_you_mean

CLASS_NAMES = ("background", "soil", "bedrock", "sand", "big rock")
NPZ_KEYS = ("training_set", "test_set")


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
            dataset_id=_content_id(images.numpy(), masks.numpy()),
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """The challenge's class names, cut or padded with "class K" to `num_classes` entries."""
    extra = tuple(f"class {i}" for i in range(len(CLASS_NAMES), num_classes))
    return (CLASS_NAMES + extra)[:num_classes]


def _content_id(images: np.ndarray, masks: np.ndarray) -> str:
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
    images, masks = _validate_training_set(train, path, num_classes)
    test_images = None if test is None else _validate_test_set(test, path, images.shape[1:])
    return SegmentationData(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(masks),
        test_images=None if test_images is None else torch.from_numpy(test_images),
        num_classes=num_classes,
        class_names=class_names_for(num_classes),
        source=str(path),
        dataset_id=_content_id(images, masks),
    )


def _refuse_unknown_keys(keys: list[str], path: Path) -> None:
    # A misspelt 'test_set' would otherwise vanish silently and surface later as "no test_set".
    unknown = [key for key in keys if key not in NPZ_KEYS]
    if unknown:
        raise DataError(
            f"{path}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], NPZ_KEYS)}; an AN2DL file holds "
            "only 'training_set' (N, 2, H, W) and optionally 'test_set' (M, H, W)"
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


# ---------------------------------------------------------------------------------------------------------
# Synthetic Mars-like terrain

# Pixels generated per batch: bounds the float32 temporaries to tens of MB whatever the image size.
_SYNTH_PIXELS_PER_BATCH = 4_000_000


def synthetic(
    n: int = 512, test_n: int = 64, height: int = 64, width: int = 128, seed: int = 0, num_classes: int = 5
) -> SegmentationData:
    """Deterministic Mars-like terrain: sky/hardware background, soil/bedrock/sand regions, sparse big rocks.

    Each class has its own brightness and texture so a small network can learn it; `test_n` more images
    from the same process go to `test_images` (None when 0). Supports 2..5 classes: fewer drop the last.
    """
    if n < 1 or test_n < 0 or height < 8 or width < 8 or seed < 0:
        raise ConfigError(
            f"synthetic data needs n >= 1, test_n >= 0, height and width >= 8 and seed >= 0; "
            f"got n={n}, test_n={test_n}, height={height}, width={width}, seed={seed}"
        )
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ConfigError(
            f"synthetic data has 2 to {len(CLASS_NAMES)} classes, got num_classes={num_classes}"
        )
    rng = np.random.default_rng(seed)
    total = n + test_n
    images = np.empty((total, height, width), np.uint8)
    masks = np.empty((total, height, width), np.uint8)
    batch = max(1, _SYNTH_PIXELS_PER_BATCH // (height * width))
    for start in range(0, total, batch):
        stop = min(total, start + batch)
        images[start:stop], masks[start:stop] = _synth_batch(rng, stop - start, height, width, num_classes)
    train_images, train_masks = images[:n], masks[:n]
    return SegmentationData(
        images=torch.from_numpy(train_images),
        masks=torch.from_numpy(train_masks),
        test_images=torch.from_numpy(images[n:].copy()) if test_n else None,
        num_classes=num_classes,
        class_names=CLASS_NAMES[:num_classes],
        source=f"synthetic(n={n}, test_n={test_n}, height={height}, width={width}, seed={seed}, "
        f"num_classes={num_classes})",
        dataset_id=_content_id(train_images, train_masks),
    )


def _synth_batch(rng: np.random.Generator, n: int, h: int, w: int, classes: int) -> tuple[np.ndarray, ...]:
    grain = rng.standard_normal((n, h, w), dtype=np.float32)
    image, label = _synth_terrain(rng, grain, min(3, classes - 1))
    if classes >= 5:
        _draw_rocks(rng, image, label, grain)
    _draw_sky(rng, image, label, grain)
    _draw_hardware(rng, image, label, grain)
    # Exposure varies between frames; this keeps brightness alone from giving the class away.
    gain = rng.uniform(0.88, 1.12, (n, 1, 1)).astype(np.float32)
    offset = rng.normal(0.0, 5.0, (n, 1, 1)).astype(np.float32)
    image = image * gain + offset
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8), label


def _synth_terrain(rng: np.random.Generator, grain: np.ndarray, kinds: int) -> tuple[np.ndarray, np.ndarray]:
    n, h, w = grain.shape
    # The argmax of a few smooth random fields cuts the ground into blob-like regions; a per-image bias
    # lets some frames be dominated by one terrain type, as rover frames often are.
    fields = _smooth_noise(rng, (n, kinds), h, w, max(1, h // 24), max(1, w // 24))
    fields += rng.normal(0.0, 0.5, (n, kinds, 1, 1)).astype(np.float32)
    label = (1 + fields.argmax(axis=1)).astype(np.uint8)

    soil = 118 + 15 * grain
    blotches = _smooth_noise(rng, (n,), h, w, max(1, h // 8), max(1, w // 8))
    cracks = np.abs(_smooth_noise(rng, (n,), h, w, max(1, h // 12), max(1, w // 12))) < 0.07
    bedrock = 160 + 26 * blotches + 7 * grain - 55 * cracks
    sand = 86 + 9 * _ripples(rng, n, h, w) + 3 * grain
    image = np.where(label == 1, soil, np.where(label == 2, bedrock, sand))
    return image.astype(np.float32), label


def _ripples(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    angle = rng.uniform(-0.6, 0.6, (n, 1, 1)).astype(np.float32)
    wavenumber = (2 * np.pi / rng.uniform(5.0, 9.0, (n, 1, 1))).astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    rows, cols = _pixel_grid(h, w)
    return np.sin((cols * np.cos(angle) + rows * np.sin(angle)) * wavenumber + phase)


def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    return rows, np.arange(w, dtype=np.float32)[None, None, :]


def _draw_rocks(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, grain: np.ndarray) -> None:
    n, h, w = image.shape
    slots = 3
    count = np.where(rng.random(n) < 0.3, rng.integers(1, slots + 1, n), 0)
    centre_y = rng.uniform(0.25, 0.97, (n, slots)) * h
    centre_x = rng.uniform(0.0, 1.0, (n, slots)) * w
    # Perspective: rocks near the bottom of the frame are closer, hence larger.
    radius = rng.uniform(2.5, 6.0, (n, slots)) * (0.5 + 0.7 * centre_y / h) * (h / 64) ** 0.5
    height = radius * rng.uniform(0.55, 1.0, (n, slots))
    light = rng.uniform(0.0, 2 * np.pi, (n, 1, 1))
    light_x, light_y = np.cos(light).astype(np.float32), np.sin(light).astype(np.float32)
    rows, cols = _pixel_grid(h, w)
    for k in range(slots):
        dx = (cols - _per_image(centre_x[:, k])) / _per_image(radius[:, k])
        dy = (rows - _per_image(centre_y[:, k])) / _per_image(height[:, k])
        dist2 = dx * dx + dy * dy
        active = (count > k)[:, None, None]
        # Cosine between the pixel's offset and the light: the lit side is bright, the far side in shadow.
        shade = np.clip((dx * light_x + dy * light_y) / np.sqrt(np.maximum(dist2, 1e-6)), -1, 1)
        cast = active & (dist2 >= 1) & (dist2 < 2.5) & (shade < -0.3)
        inside = active & (dist2 < 1)
        image[cast] *= 0.55
        image[inside] = (155 + 70 * shade + 6 * grain)[inside]
        label[inside] = 4


def _per_image(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32)[:, None, None]


def _draw_sky(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, grain: np.ndarray) -> None:
    n, h, w = image.shape
    has_sky = rng.random(n) < 0.4
    base = rng.uniform(0.1, 0.35, n) * h
    horizon = base[:, None] + 0.04 * h * _smooth_noise(rng, (n,), 1, w, 1, 6)[:, 0, :]
    rows = np.arange(h)[None, :, None]
    sky = has_sky[:, None, None] & (rows < horizon[:, None, :])
    # Mars sky is bright, nearly flat and brightens towards the horizon.
    glow = rng.uniform(175.0, 205.0, (n, 1, 1)) + 25 * rows / h + 1.5 * grain
    image[sky] = glow[sky]
    label[sky] = 0


def _draw_hardware(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, grain: np.ndarray) -> None:
    n, h, w = image.shape
    has_part = rng.random(n) < 0.25
    left = rng.random(n) < 0.5
    top, slope = rng.uniform(0.55, 0.85, (n, 1, 1)), rng.uniform(0.2, 0.9, (n, 1, 1))
    y, x = np.linspace(0, 1, h)[None, :, None], np.linspace(0, 1, w)[None, None, :]
    across = np.where(left[:, None, None], x, 1 - x)
    part = has_part[:, None, None] & (y > top + slope * across)
    period = rng.integers(6, 12, (n, 1, 1))
    # Dark metal with bright machined edges: a striped pattern no terrain class has.
    stripes = (np.arange(h)[None, :, None] % period) < 2
    metal = 40 + 75 * stripes + 4 * grain
    image[part] = metal[part]
    label[part] = 0


def _smooth_noise(
    rng: np.random.Generator, lead: tuple[int, ...], h: int, w: int, cy: int, cx: int
) -> np.ndarray:
    """Low-frequency noise: a (cy+1)x(cx+1) random grid per field, upsampled with smoothstep weights."""
    grid = rng.standard_normal((*lead, cy + 1, cx + 1), dtype=np.float32)
    y0, fy = _interp_weights(h, cy)
    x0, fx = _interp_weights(w, cx)
    # Element-wise interpolation (no BLAS) keeps the output bit-identical across machines and threads.
    along_y = grid[..., y0, :] * (1 - fy)[:, None] + grid[..., y0 + 1, :] * fy[:, None]
    return along_y[..., x0] * (1 - fx) + along_y[..., x0 + 1] * fx


def _interp_weights(size: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    position = np.linspace(0.0, cells, size, dtype=np.float32)
    left = np.minimum(np.floor(position).astype(np.intp), cells - 1)
    frac = position - left
    return left, (frac * frac * (3 - 2 * frac)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Split, augmentation, summary


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


def describe(data: SegmentationData) -> dict:
    """Counts: images, test images, H, W, per-class pixel share and images holding each class."""
    masks = data.masks.numpy()
    pixels = max(1, masks.size)
    presence = class_presence(masks, data.num_classes)
    return {
        "source": data.source,
        "dataset_id": data.dataset_id,
        "images": len(data),
        "test_images": 0 if data.test_images is None else int(data.test_images.shape[0]),
        "height": int(masks.shape[1]),
        "width": int(masks.shape[2]),
        "num_classes": data.num_classes,
        "pixel_share": {
            name: int(np.count_nonzero(masks == c)) / pixels for c, name in enumerate(data.class_names)
        },
        "images_with_class": {name: int(presence[:, c].sum()) for c, name in enumerate(data.class_names)},
    }


def _as_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
