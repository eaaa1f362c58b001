"""The batched augmentation steps: each vocabulary transform as tensor ops on a (B, H, W) uint8 batch.

`draw` takes every random number a row may need from a torch.Generator (the same count whatever the
data, so the stream never depends on it), `apply` uses them on the rows flagged `on`. Parameter ranges
are read the way albumentations reads them; `harness.augment.batched` composes the steps into a pipeline.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Draw = dict[str, torch.Tensor]
_MAX = 255.0


# ---------------------------------------------------------------------------------------------------------
# Parameter ranges, normalised the way albumentations reads them


def _pair(value: Any) -> tuple[float, float]:
    """A constant or a (low, high) range as (low, high): Affine reads a scalar as that constant."""
    return (float(value[0]), float(value[1])) if isinstance(value, tuple | list) else (float(value),) * 2


def _symmetric(value: Any) -> tuple[float, float]:
    """RandomBrightnessContrast reads a scalar v as the range (-v, v)."""
    return _pair(value) if isinstance(value, tuple | list) else (-float(value), float(value))


def _per_axis(value: Any, default: float) -> dict[str, tuple[float, float]]:
    # Affine fills an axis missing from a dict with `default` (1.0 for scale and, as it does, shear).
    if isinstance(value, dict):
        return {axis: _pair(value.get(axis, default)) for axis in "xy"}
    return {axis: _pair(value) for axis in "xy"}


def _uniform(gen: torch.Generator, n: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=gen, device=gen.device)


def rows_of(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) flags shaped to broadcast over `like`'s non-batch dimensions."""
    return flags.view(-1, *([1] * (like.ndim - 1)))


def _to_u8(values: torch.Tensor) -> torch.Tensor:
    # albumentations' pixel steps on uint8 images clip and then truncate (numpy's astype).
    return values.clamp_(0, _MAX).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------------
# The steps: `draw` takes every random number a row may need, `apply` uses them on the rows flagged `on`


class Step:
    """One batched transform; `draw` always takes the same numbers, so the stream never depends on data."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def draw(self, gen: torch.Generator, n: int, height: int, width: int) -> Draw:
        return {}

    def apply(
        self, images: torch.Tensor, masks: torch.Tensor, draw: Draw, on: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class _HFlip(Step):
    def apply(self, images, masks, draw, on):
        flip = rows_of(on, images)
        return torch.where(flip, images.flip(-1), images), torch.where(flip, masks.flip(-1), masks)


class _Rot90(Step):
    """Uniform quarter turns; a non-square frame turns 0 or 180 degrees only, as albumentations does."""

    def draw(self, gen, n, height, width):
        turns = torch.randint(0, 4, (n,), generator=gen, device=gen.device)
        if height != width:
            turns = (turns + turns % 2) % 4  # 0,1,2,3 -> 0,2,2,0, as ShapeKeepingRotate90 does
        return {"turns": turns}

    def apply(self, images, masks, draw, on):
        turns = torch.where(on, draw["turns"], 0)
        for k in (1, 2, 3) if images.shape[-1] == images.shape[-2] else (2,):
            chosen = rows_of(turns == k, images)
            images = torch.where(chosen, images.rot90(k, (-2, -1)), images)
            masks = torch.where(chosen, masks.rot90(k, (-2, -1)), masks)
        return images, masks


class _Affine(Step):
    """albumentations.Affine: one 2x3 matrix per row, about the frame centre, without fit_output."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.scale = _per_axis(params.get("scale", 1.0), 1.0)
        self.shear = _per_axis(params.get("shear", 0.0), 1.0)
        self.rotate = _pair(params.get("rotate", 0.0))
        self.keep_ratio = bool(params.get("keep_ratio", False))
        self.balanced = bool(params.get("balanced_scale", False))
        self.fill = float(params.get("fill", 0))
        if "translate_px" in params:
            self.translate, self.in_pixels = _per_axis(params["translate_px"], 0), True
        else:
            self.translate, self.in_pixels = _per_axis(params.get("translate_percent", 0.0), 0.0), False
        if self.keep_ratio and self.scale["x"] != self.scale["y"]:
            raise ValueError("with keep_ratio, the x and y scale ranges must be identical")

    def _draw_scale(self, gen: torch.Generator, n: int, bounds: tuple[float, float]) -> torch.Tensor:
        if not self.balanced:
            return _uniform(gen, n, bounds)
        # balanced_scale: as likely to shrink as to grow, each side uniform over its own interval.
        low, high = bounds
        shrink, grow = _uniform(gen, n, (min(low, 1.0), 1.0)), _uniform(gen, n, (1.0, max(high, 1.0)))
        if low < 1 < high:
            return torch.where(torch.rand(n, generator=gen, device=gen.device) < 0.5, shrink, grow)
        return shrink if low < 1 else grow if high > 1 else torch.ones_like(shrink)

    def draw(self, gen, n, height, width):
        if self.in_pixels:
            shift = {
                axis: torch.randint(int(lo), int(hi) + 1, (n,), generator=gen, device=gen.device).float()
                for axis, (lo, hi) in self.translate.items()
            }
        else:  # albumentations truncates the fraction of the frame to whole pixels
            size = {"x": width, "y": height}
            shift = {axis: (_uniform(gen, n, r) * size[axis]).trunc() for axis, r in self.translate.items()}
        scale_x = self._draw_scale(gen, n, self.scale["x"])
        scale_y = scale_x if self.keep_ratio else self._draw_scale(gen, n, self.scale["y"])
        return {
            "tx": shift["x"],
            "ty": shift["y"],
            "shear_x": -_uniform(gen, n, self.shear["x"]),  # albumentations negates the drawn shear
            "shear_y": -_uniform(gen, n, self.shear["y"]),
            "scale_x": scale_x,
            "scale_y": scale_y,
            "rotate": _uniform(gen, n, self.rotate),
        }

    @staticmethod
    def theta(draw: Draw, height: int, width: int) -> torch.Tensor:
        """(B, 2, 3) matrices for F.affine_grid (align_corners=False): output -> input, normalised coords.

        albumentations maps source to destination pixels with L = shear @ rotate @ scale about the centre
        ((W-1)/2, (H-1)/2), then shifts by t. Pixel-centre offsets from that centre are D = diag(W/2, H/2)
        times grid_sample's normalised coordinates, so a destination point q samples D^-1 L^-1 (D q - t).
        """
        angle = torch.deg2rad(draw["rotate"])
        cos, sin = torch.cos(angle), torch.sin(angle)
        tan_x, tan_y = torch.tan(torch.deg2rad(draw["shear_x"])), torch.tan(torch.deg2rad(draw["shear_y"]))
        sx, sy = draw["scale_x"], draw["scale_y"]
        # shear [[1, tan_x], [tan_y, 1]] @ rotate [[cos, sin], [-sin, cos]] @ diag(sx, sy)
        a, b = (cos - tan_x * sin) * sx, (sin + tan_x * cos) * sy
        c, d = (tan_y * cos - sin) * sx, (tan_y * sin + cos) * sy
        det = a * d - b * c
        # cv2 inverts a singular matrix to zeros rather than failing; no host check either way.
        inv_det = torch.where(det != 0, 1 / det, torch.zeros_like(det))
        ia, ib, ic, id_ = d * inv_det, -b * inv_det, -c * inv_det, a * inv_det
        half_w, half_h = width / 2, height / 2
        # D^-1 L^-1 D and -D^-1 L^-1 t, written out entry by entry.
        row_x = torch.stack([ia, ib * half_h / half_w, -(ia * draw["tx"] + ib * draw["ty"]) / half_w], -1)
        row_y = torch.stack([ic * half_w / half_h, id_, -(ic * draw["tx"] + id_ * draw["ty"]) / half_h], -1)
        return torch.stack([row_x, row_y], 1)

    def apply(self, images, masks, draw, on):
        n, height, width = images.shape
        # Rows left alone get the identity: it samples pixel centres exactly (to ~1e-5 px), so they come
        # back unchanged after rounding, which is cheaper than warping everything and selecting after.
        identity = torch.eye(2, 3, device=images.device).expand(n, 2, 3)
        theta = torch.where(on[:, None, None], self.theta(draw, height, width), identity)
        grid = _affine_grid(theta, height, width)
        source = images.unsqueeze(1).float()
        if self.fill:  # sampling (image - fill) with zero padding, then adding fill back, pads with fill
            source = source - self.fill
        warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # A convex blend of uint8 values and the fill: only float error can leave [0, 255]; +0.5 rounds.
        warped_images = warped.squeeze(1).add_(self.fill + 0.5).clamp_(0, _MAX).to(torch.uint8)
        # Nearest sampling of whole numbers returns whole numbers (0 where the frame was exposed).
        warped_masks = F.grid_sample(
            masks.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        return warped_images, warped_masks.squeeze(1).to(torch.uint8)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, 1, H, W), align_corners=False) as two outer sums: its batched matmul is
    several times slower on a CPU, and the grid is separable in x and y anyway."""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    grid = theta.new_empty((len(theta), height, width, 2))
    for axis in (0, 1):
        row = theta[:, axis]
        along_x = row[:, 0, None] * xs  # (B, W)
        along_y = row[:, 1, None] * ys + row[:, 2, None]  # (B, H)
        torch.add(along_y[:, :, None], along_x[:, None, :], out=grid[..., axis])
    return grid


class _BrightnessContrast(Step):
    """RandomBrightnessContrast on uint8: clip(alpha * x + beta) with alpha = 1 + c, beta = b * 255."""

    def draw(self, gen, n, height, width):
        return {
            "contrast": _uniform(gen, n, _symmetric(self.params["contrast_limit"])),
            "brightness": _uniform(gen, n, _symmetric(self.params["brightness_limit"])),
        }

    def apply(self, images, masks, draw, on):
        values = images.float()
        alpha = 1.0 + draw["contrast"]
        if self.params.get("brightness_by_max", True):
            beta = draw["brightness"] * _MAX
        else:
            beta = draw["brightness"] * values.mean(dim=(-2, -1))
        if self.params.get("ensure_safe_range", False):
            alpha, beta = _safe_brightness_contrast(alpha, beta)
        out = _to_u8(values * rows_of(alpha, values) + rows_of(beta, values))
        return torch.where(rows_of(on, images), out, images), masks


def _safe_brightness_contrast(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """albumentations' get_safe_brightness_contrast_params, per row."""
    positive = alpha > 0
    safe_beta = torch.where(positive, beta.clamp(0, _MAX), beta.clamp(max=_MAX))
    safe_alpha = torch.where(
        positive, torch.minimum(alpha, (_MAX - safe_beta) / _MAX), torch.maximum(alpha, -safe_beta / _MAX)
    )
    return safe_alpha, safe_beta


class _Solarize(Step):
    def draw(self, gen, n, height, width):
        return {"threshold": _uniform(gen, n, _pair(self.params.get("threshold_range", (0.5, 0.5))))}

    def apply(self, images, masks, draw, on):
        inverted = images >= rows_of(draw["threshold"] * _MAX, images)
        flip = inverted & rows_of(on, images)
        return torch.where(flip, 255 - images, images), masks


class _Noise(Step):
    """GaussNoise on uint8: N(mean, std) * 255 per pixel, drawn at noise_scale_factor and resized up."""

    def draw(self, gen, n, height, width):
        factor = float(self.params.get("noise_scale_factor", 1.0))
        small = (max(1, int(height * factor)), max(1, int(width * factor)))
        return {
            "std": _uniform(gen, n, _pair(self.params["std_range"])),
            "mean": _uniform(gen, n, _pair(self.params.get("mean_range", (0.0, 0.0)))),
            "unit": torch.randn((n, *small), generator=gen, device=gen.device),
        }

    def apply(self, images, masks, draw, on):
        unit = draw["unit"]
        noise = (rows_of(draw["mean"], unit) + rows_of(draw["std"], unit) * unit) * _MAX
        if noise.shape[-2:] != images.shape[-2:]:
            noise = F.interpolate(noise.unsqueeze(1), size=images.shape[-2:], mode="bilinear").squeeze(1)
        # albucore truncates a float noise map toward zero before adding it to a uint8 image.
        out = _to_u8(images.float() + noise.trunc())
        return torch.where(rows_of(on, images), out, images), masks


STEPS: dict[str, type[Step]] = {
    "hflip": _HFlip,
    "rot90": _Rot90,
    "affine": _Affine,
    "brightness_contrast": _BrightnessContrast,
    "solarize": _Solarize,
    "noise": _Noise,
}
