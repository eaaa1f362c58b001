"""The deterministic synthetic Mars-like dataset: `synthetic(...)`, the embedded default of every command.

The same arguments always produce the same images and masks (all randomness comes from one seeded
generator), so a fresh machine and a test get identical data without any file.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.data.dataset import CLASS_NAMES, SegmentationData, content_id
from harness.errors import ConfigError

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
        dataset_id=content_id(train_images, train_masks),
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
