"""harness.augment.albumentations: mask-safe transforms, seeds and the strong-row pipeline, per image."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from harness.augment.albumentations import build_augmenter, make_transform
from harness.augment.vocabulary import (
    PRESETS,
    AugmentPipeline,
    TransformName,
    TransformSpec,
    pipeline_from_config,
)
from harness.data.synthetic import synthetic

NAMES = typing.get_args(TransformName)
IMAGE_ONLY = ("brightness_contrast", "solarize", "noise")


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    data = synthetic(n=6, test_n=0, seed=0)
    images, masks = data.images.numpy().copy(), data.masks.numpy().copy()
    # Labels {0, 1, 4} only: any interpolation between 1 and 4 would invent a 2 or a 3.
    return images, np.where(masks >= 2, 4, masks).astype(np.uint8)


def _one(name: str, p: float = 1.0, **params) -> AugmentPipeline:
    return AugmentPipeline(steps=[TransformSpec(name=name, p=p, params=params)])


@pytest.mark.parametrize("name", NAMES)
def test_every_transform_keeps_shapes_dtypes_labels_and_inputs(batch, name):
    images, masks = batch
    before = images.copy(), masks.copy()
    out_images, out_masks = build_augmenter(_one(name), seed=0)(images, masks)
    assert out_images.shape == out_masks.shape == images.shape
    assert out_images.dtype == out_masks.dtype == np.uint8
    assert set(np.unique(out_masks).tolist()) <= {0, 1, 4}
    assert not np.array_equal(out_images, images)  # p=1: a step that does nothing is broken
    assert np.array_equal(images, before[0]) and np.array_equal(masks, before[1])
    if name in IMAGE_ONLY:
        assert np.array_equal(out_masks, masks)


def test_hflip_with_p1_flips_images_and_masks_exactly(batch):
    images, masks = batch
    out_images, out_masks = build_augmenter(_one("hflip"), seed=3)(images, masks)
    assert np.array_equal(out_images, np.flip(images, axis=2))
    assert np.array_equal(out_masks, np.flip(masks, axis=2))


def test_geometry_fills_exposed_pixels_with_background(batch):
    images, _ = batch
    masks = np.ones_like(images)
    pipeline = _one("affine", translate_percent={"x": (0.25, 0.25)}, scale=1.0, rotate=0.0)
    out_images, out_masks = build_augmenter(pipeline, seed=0)(images, masks)
    exposed = out_masks == 0
    assert exposed[:, :, :30].all() and not exposed[:, :, 40:].any()
    assert (out_images[exposed] == 0).all()


def test_rot90_keeps_non_square_frames_upright_or_half_turned(batch):
    images, masks = batch
    out_images, out_masks = build_augmenter(_one("rot90"), seed=0)(images, masks)
    for i in range(len(images)):
        turned = np.array_equal(out_images[i], np.rot90(images[i], 2))
        assert turned or np.array_equal(out_images[i], images[i])
        assert np.array_equal(out_masks[i], np.rot90(masks[i], 2) if turned else masks[i])


def test_rot90_uses_quarter_turns_on_square_frames():
    images = np.arange(16 * 8 * 8, dtype=np.uint8).reshape(16, 8, 8)
    out_images, _ = build_augmenter(_one("rot90"), seed=0)(images, images.copy())
    turns = [
        [k for k in range(4) if np.array_equal(out, np.rot90(image, k))]
        for out, image in zip(out_images, images, strict=True)
    ]
    assert all(len(k) == 1 for k in turns) and {1, 3} & {k[0] for k in turns}


def test_params_reach_albumentations_and_mask_safety_is_fixed():
    import cv2

    noise = make_transform(TransformSpec(name="noise", params={"std_range": [0.2, 0.3]}))
    assert tuple(noise.std_range) == (0.2, 0.3)
    affine = make_transform(TransformSpec(name="affine", params={"translate_px": [-3, 3], "fill": 9}))
    assert affine.mask_interpolation == cv2.INTER_NEAREST and affine.fill_mask == 0
    assert affine.border_mode == cv2.BORDER_CONSTANT and affine.fill == 9
    for name in ("elastic", "grid_distortion"):
        warp = make_transform(TransformSpec(name=name))
        assert warp.mask_interpolation == cv2.INTER_NEAREST and warp.fill_mask == 0


def test_deterministic_per_seed_advancing_and_seed_dependent(batch):
    images, masks = batch
    strong = np.array([False, True] * 3)
    first, again = build_augmenter(PRESETS["standard"], 7), build_augmenter(PRESETS["standard"], 7)
    epoch1, replay1 = first(images, masks, strong), again(images, masks, strong)
    assert np.array_equal(epoch1[0], replay1[0]) and np.array_equal(epoch1[1], replay1[1])
    epoch2, replay2 = first(images, masks, strong), again(images, masks, strong)
    assert np.array_equal(epoch2[0], replay2[0]) and not np.array_equal(epoch1[0], epoch2[0])
    other = build_augmenter(PRESETS["standard"], 8)(images, masks, strong)
    assert not np.array_equal(epoch1[0], other[0])


def test_strong_rows_get_the_strong_pipeline(batch):
    images, masks = batch
    pipeline = pipeline_from_config("none", [{"name": "hflip", "p": 0.0}], [{"name": "hflip", "p": 1.0}])
    strong = np.array([True, False, False, True, False, True])
    out_images, out_masks = build_augmenter(pipeline, seed=0)(images, masks, strong)
    assert np.array_equal(out_images[strong], np.flip(images[strong], axis=2))
    assert np.array_equal(out_masks[strong], np.flip(masks[strong], axis=2))
    assert np.array_equal(out_images[~strong], images[~strong])
    assert np.array_equal(out_masks[~strong], masks[~strong])


def test_strong_rows_must_be_one_flag_per_row(batch):
    images, masks = batch
    augment = build_augmenter(PRESETS["flips"], seed=0)
    with pytest.raises(ValueError, match="bool"):
        augment(images, masks, np.array([0, 3]))


def test_presets_exist_none_is_none_and_no_preset_turns_the_sky(batch):
    assert set(PRESETS) == {"none", "flips", "standard", "strong"}
    assert build_augmenter(PRESETS["none"], seed=0) is None
    images, masks = batch
    for name, pipeline in PRESETS.items():
        assert all(step.name != "rot90" for step in pipeline.steps + pipeline.strong()), name
        if name != "none":
            out_masks = build_augmenter(pipeline, seed=0)(images, masks, np.ones(6, bool))[1]
            assert set(np.unique(out_masks).tolist()) <= {0, 1, 4}
