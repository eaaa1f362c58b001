"""harness.augment.albumentations: the augmentation presets as the training loop builds them."""

from __future__ import annotations

import numpy as np
import pytest

from harness.augment.albumentations import build_augmenter
from harness.augment.vocabulary import PRESETS, pipeline_from_config
from harness.data.synthetic import synthetic
from harness.errors import ConfigError

AUGMENT_PRESETS = tuple(PRESETS)


def augmenter(preset, seed):
    return build_augmenter(pipeline_from_config(preset), seed)


@pytest.fixture(scope="module")
def epoch() -> tuple[np.ndarray, np.ndarray]:
    synth64 = synthetic(n=64, test_n=8, seed=0)
    return synth64.images.numpy()[:24].copy(), synth64.masks.numpy()[:24].copy()


def test_none_preset_and_unknown_preset():
    assert augmenter("none", seed=0) is None
    with pytest.raises(ConfigError) as caught:
        augmenter("rotate90", seed=0)
    assert all(name in str(caught.value) for name in AUGMENT_PRESETS)


@pytest.mark.parametrize("preset", ["flips", "standard"])
def test_augmenter_keeps_shapes_labels_and_input(epoch, preset):
    images, masks = epoch
    # Labels {0, 1, 4} only: any interpolation between 1 and 4 would invent a 2 or a 3.
    masks = np.where(masks >= 2, 4, masks).astype(np.uint8)
    before = images.copy(), masks.copy()
    out_images, out_masks = augmenter(preset, seed=0)(images, masks)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.dtype == out_masks.dtype == np.uint8
    assert set(np.unique(out_masks).tolist()) <= {0, 1, 4}
    assert np.array_equal(images, before[0]) and np.array_equal(masks, before[1])


@pytest.mark.parametrize("preset", ["flips", "standard"])
def test_augmenter_is_deterministic_per_seed_and_advances(epoch, preset):
    images, masks = epoch
    first, again = augmenter(preset, seed=7), augmenter(preset, seed=7)
    epoch1, replay1 = first(images, masks), again(images, masks)
    assert np.array_equal(epoch1[0], replay1[0]) and np.array_equal(epoch1[1], replay1[1])
    epoch2, replay2 = first(images, masks), again(images, masks)
    assert np.array_equal(epoch2[0], replay2[0])
    assert not np.array_equal(epoch1[0], epoch2[0])
    assert not np.array_equal(epoch1[0], augmenter(preset, seed=8)(images, masks)[0])


def test_flips_flip_some_images_horizontally_and_their_masks_with_them(epoch):
    images, masks = epoch
    out_images, out_masks = augmenter("flips", seed=0)(images, masks)
    flipped = 0
    for i in range(len(images)):
        if np.array_equal(out_images[i], images[i, :, ::-1]):
            flipped += 1
            assert np.array_equal(out_masks[i], masks[i, :, ::-1])
        else:
            assert np.array_equal(out_images[i], images[i]) and np.array_equal(out_masks[i], masks[i])
    assert 0 < flipped < len(images)


def test_standard_changes_images_and_pads_masks_with_background(epoch):
    images, masks = epoch
    masks = np.where(masks == 0, 1, masks).astype(np.uint8)
    out_images, out_masks = augmenter("standard", seed=1)(images, masks)
    assert not np.array_equal(out_images, images)
    assert (out_masks == 0).any()
