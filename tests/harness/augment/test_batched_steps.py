"""harness.augment.batched_steps: each batched step against its definition and against albumentations.

Each step runs alone in a one-step BatchedAugmenter (p=1), so what is checked is the step itself; the
pipeline (seeding, per-row p, strong rows) is tests/harness/augment/test_batched.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.augment.albumentations import build_augmenter
from harness.augment.batched import BatchedAugmenter
from harness.augment.batched_steps import STEPS, rows_of
from harness.augment.vocabulary import DEFAULT_PARAMS, AugmentPipeline, TransformSpec
from harness.data.synthetic import synthetic

SUPPORTED = ("hflip", "rot90", "affine", "brightness_contrast", "solarize", "noise")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = synthetic(n=8, test_n=0, seed=0)
    # Labels {0, 1, 4} only: any blend of 1 and 4 would invent a 2 or a 3.
    return data.images.clone(), torch.where(data.masks >= 2, 4, data.masks).to(torch.uint8)


def _one(name: str, p: float = 1.0, **params) -> AugmentPipeline:
    return AugmentPipeline(steps=[TransformSpec(name=name, p=p, params=params)])


def test_the_steps_are_exactly_the_batched_vocabulary():
    assert sorted(STEPS) == sorted(SUPPORTED)


@pytest.mark.parametrize("name", SUPPORTED)
def test_a_steps_draw_depends_on_the_seed_and_frame_only(name):
    # The same generator state and frame give the same numbers; the data is never consulted, so one
    # row's content cannot shift another row's draws.
    step = STEPS[name](dict(DEFAULT_PARAMS.get(name, {})))
    draws = [step.draw(torch.Generator().manual_seed(5), 4, 64, 128) for _ in range(2)]
    assert draws[0].keys() == draws[1].keys()
    assert all(torch.equal(draws[0][key], draws[1][key]) for key in draws[0])


def test_rows_of_broadcasts_row_flags_over_a_batch():
    flags = torch.tensor([True, False])
    assert rows_of(flags, torch.zeros(2, 3, 4)).shape == (2, 1, 1)


def test_hflip_with_p1_is_torch_flip(batch):
    images, masks = batch
    out_images, out_masks = BatchedAugmenter(_one("hflip"), seed=3)(images, masks)
    assert torch.equal(out_images, images.flip(-1)) and torch.equal(out_masks, masks.flip(-1))


def test_rot90_turns_non_square_frames_0_or_180_and_square_ones_any_quarter():
    images = torch.arange(512 * 4 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).view(512, 4, 8)
    out, out_masks = BatchedAugmenter(_one("rot90"), seed=0)(images, images.clone())
    half_turned = (out == images.flip(-2, -1)).flatten(1).all(1)
    upright = (out == images).flatten(1).all(1)
    assert torch.equal(out, out_masks) and bool((half_turned | upright).all())
    assert 200 < int(half_turned.sum()) < 312  # half of them: a quarter-turn draw becomes a half turn
    square = images[:64, :4, :4].contiguous()
    out = BatchedAugmenter(_one("rot90"), seed=0)(square, square.clone())[0]
    turns = [(out == square.rot90(k, (-2, -1))).flatten(1).all(1) for k in range(4)]
    assert all(int(t.sum()) > 4 for t in turns) and bool(torch.stack(turns).any(0).all())


def test_affine_with_identity_params_is_exact(batch):
    images, masks = batch
    pipeline = _one("affine", scale=1.0, translate_percent=0.0, rotate=0.0, shear=0.0, fill=90)
    out_images, out_masks = BatchedAugmenter(pipeline, seed=0)(images, masks)
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)


@pytest.mark.parametrize("fill", [0, 77])
def test_affine_fills_exposed_pixels_with_background_and_the_image_fill(batch, fill):
    images, _ = batch
    masks = torch.ones_like(images)
    pipeline = _one("affine", translate_percent={"x": 0.25}, scale=1.0, rotate=0.0, fill=fill)
    out_images, out_masks = BatchedAugmenter(pipeline, seed=0)(images, masks)
    shift = images.shape[-1] // 4  # a whole-pixel shift samples pixel centres: no blending at all
    assert bool((out_masks[..., :shift] == 0).all()) and bool((out_masks[..., shift:] == 1).all())
    assert bool((out_images[..., :shift] == fill).all())
    assert torch.equal(out_images[..., shift:], images[..., :-shift])


def test_affine_warps_image_and_mask_with_the_same_matrix(batch):
    _, masks = batch
    images = (masks.int() * 50 + 20).to(torch.uint8)  # the class is readable back from the image
    pipeline = _one("affine", scale=(0.7, 1.3), translate_percent=(-0.2, 0.2), rotate=(-30, 30), shear=10.0)
    out_images, out_masks = BatchedAugmenter(pipeline, seed=1)(images, masks)
    read_back = ((out_images.float() - 20) / 50).round().clamp(min=0)
    # Only pixels on a class boundary may disagree, where bilinear blends two levels.
    assert (read_back == out_masks).float().mean() > 0.97
    assert (out_masks != masks).float().mean() > 0.2


def test_geometry_and_pixel_values_match_albumentations_for_fixed_params(batch):
    images, masks = batch
    cases = [
        _one("affine", scale={"x": 0.9, "y": 1.2}, rotate=-12.0, translate_percent={"x": 0.1, "y": -0.07}),
        _one("affine", scale=1.1, rotate=25.0, translate_px=3, shear={"x": 8.0}, fill=200),
        _one("brightness_contrast", brightness_limit=(0.1, 0.1), contrast_limit=(-0.3, -0.3)),
        _one(
            "brightness_contrast",
            brightness_limit=(-0.2, -0.2),
            contrast_limit=(0.2, 0.2),
            brightness_by_max=False,
        ),
        _one("solarize", threshold_range=(0.4, 0.4)),
    ]
    for pipeline in cases:
        want_images, want_masks = build_augmenter(pipeline, seed=0)(images.numpy(), masks.numpy())
        got_images, got_masks = BatchedAugmenter(pipeline, seed=0)(images, masks)
        difference = np.abs(want_images.astype(int) - got_images.numpy().astype(int))
        assert difference.max() <= 1, pipeline  # cv2 blends in fixed point
        assert (want_masks == got_masks.numpy()).mean() > 0.999, pipeline


def test_noise_matches_gauss_noise_statistics():
    images = torch.full((32, 32, 64), 128, dtype=torch.uint8)
    for params in ({"std_range": (0.04, 0.04)}, {"std_range": (0.04, 0.04), "noise_scale_factor": 0.5}):
        want = build_augmenter(_one("noise", **params), seed=0)(images.numpy(), images.numpy())[0]
        got = BatchedAugmenter(_one("noise", **params), seed=0)(images, images)[0]
        want, got = want.astype(float) - 128, got.numpy().astype(float) - 128
        assert abs(got.mean()) < 0.2 and abs(got.std() - want.std()) < 0.3, params
