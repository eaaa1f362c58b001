"""The loss checks: a finite scalar with finite gradients (with and without class weights), and the ignored
class really ignored (its logits change nothing; all-ignored and absent-class batches stay finite)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.conformance.kit import NUM_CLASSES, require
from harness.data.distance import signed_distance_maps
from harness.specs import LossSpec


def _loss_inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, NUM_CLASSES, 16, 32, generator=generator, requires_grad=True)
    target = torch.randint(0, NUM_CLASSES, (2, 16, 32), generator=generator)
    return logits, target


def _build_loss(spec: LossSpec, registry: Any, class_weights: torch.Tensor | None = None) -> nn.Module:
    params = spec.parse_params(registry=registry)
    return spec.build(params, num_classes=NUM_CLASSES, ignore_index=0, class_weights=class_weights)


def _scalar_loss(spec: LossSpec, registry: Any, loss_fn: nn.Module, logits, target) -> torch.Tensor:
    extra = ()
    if spec.distance_maps(spec.parse_params(registry=registry)):
        extra = (signed_distance_maps(target.to(torch.uint8), NUM_CLASSES, 0),)
    value = loss_fn(logits, target, *extra)
    require(isinstance(value, torch.Tensor) and value.dim() == 0, "the loss is not a scalar tensor")
    require(bool(torch.isfinite(value)), f"the loss is not finite: {value}")
    return value


def check_loss_value(spec: LossSpec, registry: Any = None) -> str:
    logits, target = _loss_inputs()
    value = _scalar_loss(spec, registry, _build_loss(spec, registry), logits, target)
    value.backward()
    require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient")
    weighted = _build_loss(spec, registry, torch.tensor([0.0, 1.0, 2.0, 1.0, 4.0]))
    _scalar_loss(spec, registry, weighted, logits.detach(), target)
    return f"{value.item():.4f} on random logits"


def check_loss_ignore_index(spec: LossSpec, registry: Any = None) -> None:
    loss_fn = _build_loss(spec, registry)
    logits, target = _loss_inputs()
    target[:, :, :8] = 0
    changed = logits.detach().clone()
    changed[:, :, :, :8] += torch.randn_like(changed[:, :, :, :8]) * 5
    base = _scalar_loss(spec, registry, loss_fn, logits.detach(), target)
    require(
        torch.allclose(base, _scalar_loss(spec, registry, loss_fn, changed, target), atol=1e-5),
        "logits at ignored pixels changed the loss",
    )
    all_ignored = torch.zeros_like(target)
    logits.grad = None
    _scalar_loss(spec, registry, loss_fn, logits, all_ignored).backward()
    require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient when every pixel is ignored")
    absent = target.clone()
    absent[absent == 4] = 1  # a class missing from the batch
    logits.grad = None
    _scalar_loss(spec, registry, loss_fn, logits, absent).backward()
    require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient with a class absent from the batch")


LOSS_CHECKS = {"value": check_loss_value, "ignore_index": check_loss_ignore_index}
