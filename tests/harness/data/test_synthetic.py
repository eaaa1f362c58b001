"""harness.data.synthetic: the deterministic Mars-like generator."""

from __future__ import annotations

import pytest
import torch

from harness.data.dataset import CLASS_NAMES, SegmentationData
from harness.data.inspect import describe
from harness.data.synthetic import synthetic
from harness.errors import ConfigError


@pytest.fixture(scope="module")
def synth64() -> SegmentationData:
    return synthetic(n=64, test_n=8, seed=0)


def test_synthetic_shapes_and_types(synth64):
    assert synth64.images.shape == synth64.masks.shape == (64, 64, 128)
    assert synth64.test_images.shape == (8, 64, 128)
    assert synth64.images.dtype == synth64.masks.dtype == synth64.test_images.dtype == torch.uint8
    assert synth64.class_names == CLASS_NAMES and synth64.num_classes == 5
    assert "seed=0" in synth64.source and len(synth64.dataset_id) == 12


def test_synthetic_is_deterministic_per_seed(synth64):
    again = synthetic(n=64, test_n=8, seed=0)
    assert torch.equal(again.images, synth64.images) and torch.equal(again.masks, synth64.masks)
    assert torch.equal(again.test_images, synth64.test_images)
    assert again.dataset_id == synth64.dataset_id
    other = synthetic(n=64, test_n=8, seed=1)
    assert not torch.equal(other.images, synth64.images) and other.dataset_id != synth64.dataset_id


def test_synthetic_has_every_class_and_rare_big_rocks(synth64):
    summary = describe(synth64)
    assert all(summary["images_with_class"][name] > 0 for name in CLASS_NAMES)
    assert 0 < summary["pixel_share"]["big rock"] < 0.02
    assert 0.1 * 64 <= summary["images_with_class"]["big rock"] <= 0.5 * 64


def test_synthetic_classes_look_different(synth64):
    images, masks = synth64.images.numpy().astype(float), synth64.masks.numpy()
    mean = {c: images[masks == c].mean() for c in range(5)}
    # Bedrock is bright, soil mid-grey, sand dark: a learnable brightness order on top of texture.
    assert mean[2] > mean[1] + 20 and mean[1] > mean[3] + 15


def test_synthetic_other_sizes_and_class_counts():
    small = synthetic(n=3, test_n=0, height=16, width=24, seed=5, num_classes=3)
    assert small.images.shape == (3, 16, 24) and small.test_images is None
    assert int(small.masks.max()) <= 2 and small.class_names == CLASS_NAMES[:3]
    with pytest.raises(ConfigError):
        synthetic(n=2, num_classes=6)
    with pytest.raises(ConfigError):
        synthetic(n=0)
