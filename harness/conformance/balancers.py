"""The balancer checks: the returned split keeps the contract (uint8, same size, labels in range, inputs
untouched, sane strong marks and class weights) and the same seed gives the same split."""

from __future__ import annotations

from typing import Any

import torch

from harness.conformance.kit import NUM_CLASSES, require
from harness.specs import BalancerSpec


def balancer_inputs():
    """Twelve seeded 32x64 images with masks, the rare class 4 in the first three (as big rocks are)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 32, 64), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, 4, (12, 32, 64), generator=generator, dtype=torch.uint8)
    masks[:3, 10:16, 20:30] = 4  # a rare class in a few images, as big rocks are
    return images, masks


def _balance(spec: BalancerSpec, registry: Any, images, masks, seed: int):
    balance = spec.build(spec.parse_params(registry=registry))
    return balance(images, masks, num_classes=NUM_CLASSES, ignore_index=0, seed=seed)


def check_balancer_contract(spec: BalancerSpec, registry: Any = None) -> str:
    images, masks = balancer_inputs()
    originals = images.clone(), masks.clone()
    result = _balance(spec, registry, images, masks, seed=0)
    require(
        torch.equal(images, originals[0]) and torch.equal(masks, originals[1]), "modified its inputs in place"
    )
    require(result.images.dtype == torch.uint8 and result.masks.dtype == torch.uint8, "outputs are not uint8")
    require(result.images.shape == result.masks.shape, "images and masks differ in shape")
    require(tuple(result.images.shape[1:]) == (32, 64), "changed the image size")
    require(len(result.images) > 0, "returned an empty training split")
    require(int(result.masks.max()) < NUM_CLASSES, "produced a label outside the classes")
    if result.strong is not None:
        strong = result.strong
        require(
            strong.dtype == torch.bool and tuple(strong.shape) == (len(result.images),), "bad strong marks"
        )
    if result.class_weights is not None:
        weights = result.class_weights
        require(tuple(weights.shape) == (NUM_CLASSES,), f"class_weights has shape {tuple(weights.shape)}")
        require(
            bool(torch.isfinite(weights).all() and (weights >= 0).all()), "class_weights not finite, >= 0"
        )
    return f"{len(images)} -> {len(result.images)} images"


def check_balancer_deterministic(spec: BalancerSpec, registry: Any = None) -> None:
    images, masks = balancer_inputs()
    first, second = _balance(spec, registry, images, masks, 3), _balance(spec, registry, images, masks, 3)
    same = torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    require(same, "two calls with the same seed gave different splits")


BALANCER_CHECKS = {"contract": check_balancer_contract, "deterministic": check_balancer_deterministic}
