"""Which backend augments a run, and with which seed: the one place that decides.

A pipeline runs batched on the device (`harness.augment.batched`, inside every training step) when every
one of its steps has a batched equivalent and the loss needs no distance maps; otherwise it runs per
image on the host (`harness.augment.albumentations`), once per epoch, before batching. Both draw from
the streams of `harness.augment.seeds`, so the same config and seed give the same augmented images.

The caller describes the run with an `Augmentation` (pipeline, seed, distance-map function): nothing
here knows about configs or the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.augment.albumentations import build_augmenter
from harness.augment.batched import BatchedAugmenter, batched_support
from harness.augment.seeds import epoch_seed
from harness.augment.vocabulary import AugmentPipeline


@dataclass(frozen=True)
class Augmentation:
    """How one run augments its training split."""

    pipeline: AugmentPipeline
    seed: int  # the run's seed; each epoch (and rank) derives its own stream from it
    # masks -> their signed distance maps, for a loss that needs them (None: it needs none). The maps
    # must follow the warped masks, so such a run augments on the host and recomputes them per epoch.
    distance_maps: Callable[[torch.Tensor], torch.Tensor] | None = None


def uses_batched_augmentation(augmentation: Augmentation) -> bool:
    """Whether augmentation runs per batch on the device (every step has a batched torch equivalent).

    Losses that need distance maps keep the per-epoch host path: their maps must follow the warped masks.
    """
    return batched_support(augmentation.pipeline) and augmentation.distance_maps is None


def batch_augmenter(
    augmentation: Augmentation, epoch: int, device: torch.device, rank: int = 0, world_size: int = 1
) -> BatchedAugmenter | None:
    """The on-device augmenter of `epoch`, or None when augmentation runs on the host or does nothing.

    Under torchrun each rank augments its own rows, so each draws from its own stream.
    """
    pipeline = augmentation.pipeline
    if not (pipeline.steps or pipeline.strong()) or not uses_batched_augmentation(augmentation):
        return None
    return BatchedAugmenter(pipeline, epoch_seed(augmentation.seed, epoch, rank, world_size), device)


def epoch_view(
    augmentation: Augmentation,
    epoch: int,
    images: torch.Tensor,
    masks: torch.Tensor,
    strong: torch.Tensor | None = None,
    distances: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What the model sees in `epoch` before per-batch augmentation: the training split and its
    distance maps, augmented here, on the host, only when the pipeline has no batched equivalent.

    Every rank augments the whole split alike (one stream for all) and then takes its shard of the rows.
    """
    if uses_batched_augmentation(augmentation):
        return images, masks, distances
    augment = build_augmenter(augmentation.pipeline, seed=epoch_seed(augmentation.seed, epoch))
    if augment is not None:
        strong_rows = None if strong is None else strong.cpu().numpy()
        aug_images, aug_masks = augment(images.cpu().numpy(), masks.cpu().numpy(), strong_rows)
        images, masks = torch.from_numpy(aug_images), torch.from_numpy(aug_masks)
        if augmentation.distance_maps is not None:
            distances = augmentation.distance_maps(masks)  # the augmented masks are new masks
    return images, masks, distances


def augmented_view(
    augmentation: Augmentation,
    epoch: int,
    images: torch.Tensor,
    masks: torch.Tensor,
    strong: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training split augmented as in `epoch`, on the CPU (for `harness data preview`).

    With batched augmentation the transforms and probabilities are the loop's, applied to the split in
    one call; the loop draws them batch by batch in shuffled order, so individual draws differ.
    """
    images, masks, _ = epoch_view(augmentation, epoch, images, masks, strong)
    augment = batch_augmenter(augmentation, epoch, images.device)
    if augment is not None:
        images, masks = augment(images, masks, strong)
    return images.cpu(), masks.cpu()
