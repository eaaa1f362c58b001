"""harness.augment.backend: which backend runs a pipeline; the seeds that keep augmentation reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from harness.augment.backend import (
    Augmentation,
    augmented_view,
    batch_augmenter,
    epoch_view,
    uses_batched_augmentation,
)
from harness.augment.batched import BatchedAugmenter
from harness.augment.seeds import epoch_seed
from harness.augment.vocabulary import PRESETS
from harness.config import build_config, resolve
from harness.plugins import load_plugins
from harness.training.prepare import augmentation_of
from tests_support import TINY_CONFIG


def _resolved(*settings: str):
    config, params = build_config(TINY_CONFIG, settings=list(settings))
    return resolve(config, load_plugins(), params)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return h.hexdigest()[:16]


def _split():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 16, 24), generator=gen, dtype=torch.uint8)
    masks = torch.randint(0, 5, (6, 16, 24), generator=gen, dtype=torch.uint8)
    return images, masks, torch.tensor([False, True, False, False, True, False])


def test_flips_run_batched_on_the_device_and_strong_falls_back():
    assert uses_batched_augmentation(augmentation_of(_resolved()))  # the default preset: flips
    assert uses_batched_augmentation(augmentation_of(_resolved("augment.preset=standard")))
    assert not uses_batched_augmentation(
        augmentation_of(_resolved("augment.preset=strong"))
    )  # grid_distortion
    # Distance maps must follow the warped masks, which the per-epoch host path recomputes.
    assert not uses_batched_augmentation(augmentation_of(_resolved("loss.name=boundary")))


# The digests below were computed by the code before augmentation had a backend module (train.py's
# `seed * 1000 + epoch` and `_augment_seed`): the same config and seed must keep giving the same images.


def test_host_augmentation_replays_the_images_of_earlier_releases():
    images, masks, strong = _split()
    out_images, out_masks, _ = epoch_view(Augmentation(PRESETS["strong"], seed=7), 3, images, masks, strong)
    assert _digest(out_images.numpy(), out_masks.numpy()) == "60252d5c2ae124fe"


def test_batched_augmentation_replays_the_images_of_earlier_releases_per_rank():
    images, masks, strong = _split()
    augmentation = Augmentation(PRESETS["standard"], seed=7)
    single = batch_augmenter(augmentation, 3, torch.device("cpu"))(images, masks, strong)
    assert _digest(single[0].numpy(), single[1].numpy()) == "959b24ed0d840228"
    rank1 = batch_augmenter(augmentation, 3, torch.device("cpu"), rank=1, world_size=2)(images, masks, strong)
    assert _digest(rank1[0].numpy(), rank1[1].numpy()) == "c6be4ea99e37c7d4"


def test_batched_view_leaves_the_split_to_the_step_and_the_host_view_augments_it():
    images, masks, strong = _split()
    batched = Augmentation(PRESETS["standard"], seed=1)
    same = epoch_view(batched, 1, images, masks, strong)
    assert same[0] is images and same[1] is masks  # augmented per batch, inside the step
    assert isinstance(batch_augmenter(batched, 1, torch.device("cpu")), BatchedAugmenter)
    host = Augmentation(PRESETS["strong"], seed=1)
    assert batch_augmenter(host, 1, torch.device("cpu")) is None
    assert not torch.equal(epoch_view(host, 1, images, masks, strong)[0], images)
    assert batch_augmenter(Augmentation(PRESETS["none"], seed=1), 1, torch.device("cpu")) is None


def test_host_view_recomputes_distance_maps_of_the_augmented_masks():
    images, masks, _ = _split()
    seen = []

    def distance_maps(new_masks):
        seen.append(new_masks)
        return new_masks.float()

    augmentation = Augmentation(PRESETS["standard"], seed=1, distance_maps=distance_maps)
    out_images, out_masks, distances = epoch_view(augmentation, 1, images, masks, None, masks.float())
    assert len(seen) == 1 and seen[0] is out_masks and torch.equal(distances, out_masks.float())
    assert not torch.equal(out_masks, masks)


def test_augmented_view_applies_the_epochs_batched_draws_on_the_cpu():
    images, masks, strong = _split()
    augmentation = Augmentation(PRESETS["standard"], seed=7)
    out_images, out_masks = augmented_view(augmentation, 3, images, masks, strong)
    want = BatchedAugmenter(PRESETS["standard"], epoch_seed(7, 3))(images, masks, strong)
    assert torch.equal(out_images, want[0]) and torch.equal(out_masks, want[1])
    assert out_images.device.type == "cpu"
