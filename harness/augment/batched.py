"""The batched torch backend: the vocabulary's steps applied to a whole batch on its device.

`harness.augment.albumentations` runs albumentations per image on the CPU; this module draws the same kinds of
parameters per row (same ranges, defaults and probability per step) and applies them to a (B, H, W)
uint8 batch with tensor ops, so augmentation can run inside the training step without a host sync.
The two paths match in distribution, not pixel for pixel: the random streams differ.

Mask safety is the same as the albumentations backend's: geometric steps warp images bilinearly and masks with
nearest neighbour using one matrix per row, exposed mask pixels become 0 and exposed image pixels the
step's constant `fill`. Pixel steps round trip to uint8 the way albumentations does for uint8 images
(clip, then truncate), so every step sees and returns uint8 values.

Steps without a batched equivalent (elastic, grid_distortion) make `batched_support` false; the
caller then keeps the albumentations path for that pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.augment.batched_steps import STEPS, Draw, Step, rows_of
from harness.augment.seeds import strong_seed
from harness.augment.vocabulary import DEFAULT_PARAMS, AugmentPipeline, TransformSpec
from harness.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Public API


def first_unsupported(pipeline: AugmentPipeline) -> str | None:
    """Where the first step without a batched equivalent sits (e.g. "augment.steps[2] (elastic)"), or None."""
    for where, steps in (("augment.steps", pipeline.steps), ("augment.strong_steps", pipeline.strong())):
        for index, step in enumerate(steps):
            if step.name not in STEPS:
                return f"{where}[{index}] ({step.name})"
    return None


def batched_support(pipeline: AugmentPipeline) -> bool:
    """True when every ordinary and strong step can run as a BatchedAugmenter; else keep build_augmenter."""
    return first_unsupported(pipeline) is None


def _build(steps: Sequence[TransformSpec], where: str) -> list[Step]:
    built = []
    for index, spec in enumerate(steps):
        params = {**DEFAULT_PARAMS.get(spec.name, {}), **spec.params}
        if "translate_px" in spec.params:
            params.pop("translate_percent", None)
        try:
            built.append(STEPS[spec.name](params))
        except ValueError as exc:
            raise ConfigError(f"{where}[{index}] ({spec.name}): {exc}") from None
    return built


class BatchedAugmenter:
    """The pipeline as a callable on (B, H, W) uint8 tensors on `device`, seeded like build_augmenter.

    Each step draws its parameters and an apply-or-not flag for every row (probability p) from a
    torch.Generator on `device`, so a fresh augmenter with the same seed replays the same outputs for
    the same calls, and nothing waits on the host. Strong rows draw from a second generator (seeded with
    `strong_seed`, as the albumentations backend's), so editing the strong steps leaves the ordinary
    rows' draws alone. Steps that the two lists share at the same position (same name and params, any p)
    run once for the batch with a per-row p; the rest run once per list, each applied only to its own rows.
    """

    def __init__(self, pipeline: AugmentPipeline, seed: int, device: torch.device | str = "cpu") -> None:
        if seed < 0:
            raise ConfigError(f"augmentation seed must be >= 0, got {seed}")
        missing = first_unsupported(pipeline)
        if missing is not None:
            raise ConfigError(
                f"{missing} has no batched version; use harness.augment.albumentations.build_augmenter"
            )
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        normal, strong = pipeline.steps, pipeline.strong()
        shared = 0
        while shared < min(len(normal), len(strong)) and _same_step(normal[shared], strong[shared]):
            shared += 1
        self._normal_p = [step.p for step in normal]
        self._strong_p = [step.p for step in strong]
        self._normal = _build(normal, "augment.steps")
        self._strong = _build(strong, "augment.strong_steps")
        self._shared = shared
        self._gen = torch.Generator(device=device).manual_seed(seed)
        self._strong_gen = torch.Generator(device=device).manual_seed(strong_seed(seed))

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, strong: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented (B, H, W) uint8 `images` and `masks`; `strong` (B,) bool marks rows for strong steps.

        The inputs are never written; with no steps to run they come back as they are.
        """
        self._check(images, masks, strong)
        n, height, width = images.shape
        for index, step in enumerate(self._normal):
            draw, on = self._draw(step, self._gen, self._normal_p[index], n, height, width)
            if strong is not None:
                if index < self._shared:  # the strong rows take the strong list's numbers and p
                    s_draw, s_on = self._draw(step, self._strong_gen, self._strong_p[index], n, height, width)
                    draw = {key: torch.where(rows_of(strong, v), s_draw[key], v) for key, v in draw.items()}
                    on = torch.where(strong, s_on, on)
                else:
                    on = on & ~strong
            images, masks = step.apply(images, masks, draw, on)
        if strong is not None:
            for index in range(self._shared, len(self._strong)):
                step = self._strong[index]
                draw, on = self._draw(step, self._strong_gen, self._strong_p[index], n, height, width)
                images, masks = step.apply(images, masks, draw, on & strong)
        return images, masks

    @staticmethod
    def _draw(
        step: Step, gen: torch.Generator, p: float, n: int, height: int, width: int
    ) -> tuple[Draw, torch.Tensor]:
        on = torch.rand(n, generator=gen, device=gen.device) < p
        return step.draw(gen, n, height, width), on

    def _check(self, images: torch.Tensor, masks: torch.Tensor, strong: torch.Tensor | None) -> None:
        # Programming errors, not user input: the training loop builds these tensors itself.
        if images.shape != masks.shape or images.ndim != 3:
            raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} must be (B, H, W)")
        if images.dtype != torch.uint8 or masks.dtype != torch.uint8:
            raise ValueError(f"images ({images.dtype}) and masks ({masks.dtype}) must be uint8")
        if images.device != self.device or masks.device != self.device:
            raise ValueError(
                f"images and masks must be on {self.device}, got {images.device}, {masks.device}"
            )
        if strong is not None and (
            strong.dtype != torch.bool or strong.shape != (len(images),) or strong.device != self.device
        ):
            raise ValueError(
                f"strong must be a bool tensor of shape ({len(images)},) on {self.device}, "
                f"got {strong.dtype} {tuple(strong.shape)} on {strong.device}"
            )


def _same_step(a: TransformSpec, b: TransformSpec) -> bool:
    return a.name == b.name and a.params == b.params
