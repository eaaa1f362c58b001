"""The architecture checks: builds, forward/backward, sizes (and the size error), train/eval modes, deep
supervision and torch.compile, each on a small random batch of 64x128 grayscale images."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from harness.conformance.kit import NUM_CLASSES, SIZE, CheckFailed, require, shallow_params, small_params
from harness.specs import ArchitectureSpec


def _build(spec: ArchitectureSpec, params: BaseModel) -> nn.Module:
    model = spec.build(params, in_channels=1, num_classes=NUM_CLASSES)
    require(isinstance(model, nn.Module), f"build returned {type(model).__name__}, not an nn.Module")
    return model


def _sizes(multiple: int) -> list[tuple[int, int]]:
    """Two sizes other than 64x128 that are multiples of `multiple` (small and large)."""

    def up(value: int) -> int:
        return -(-value // multiple) * multiple

    return [(up(32), up(64)), (up(128), up(256))]


def random_batch(size: tuple[int, int] = SIZE, batch: int = 2, seed: int = 0):
    """A seeded (images, masks) batch of `size` grayscale images, as the checks feed an architecture."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, *size, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (batch, *size), generator=generator)
    return images, masks


def training_loss(spec: ArchitectureSpec, model: nn.Module, images, masks) -> torch.Tensor:
    """A scalar to back-propagate, following the capability flags like the training loop does."""
    if spec.instance_based:
        losses = model(images, masks)
        require(isinstance(losses, dict) and losses, "instance_based: training call did not return a dict")
        for name, value in losses.items():
            require(
                value.dim() == 0 and torch.isfinite(value), f"instance loss '{name}' is not a finite scalar"
            )
        return sum(losses.values())
    out = model(images)
    outputs = out if spec.deep_supervision else [out]
    expected = (len(images), NUM_CLASSES, *images.shape[-2:])
    for o in outputs:
        require(
            tuple(o.shape) == expected, f"training logits have shape {tuple(o.shape)}; expected {expected}"
        )
    return sum(nn.functional.cross_entropy(o, masks) for o in outputs)


def check_builds(spec: ArchitectureSpec, registry: Any = None) -> str:
    model = _build(spec, spec.parse_params(registry=registry))
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if spec.params_count is not None:
        require(
            count == spec.params_count, f"spec declares {spec.params_count} params; the model has {count}"
        )
    _build(spec, small_params(spec, registry))
    return f"{count / 1e6:.2f} M params with defaults"


def check_forward_backward(spec: ArchitectureSpec, registry: Any = None) -> None:
    model = _build(spec, small_params(spec, registry)).train()
    images, masks = random_batch()
    loss = training_loss(spec, model, images, masks)
    require(torch.isfinite(loss).item(), "training loss is not finite")
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            require(param.grad is not None, f"parameter '{name}' got no gradient")
            require(bool(torch.isfinite(param.grad).all()), f"parameter '{name}' has a non-finite gradient")
    model.eval()
    with torch.no_grad():
        logits = model(images)
    require(isinstance(logits, torch.Tensor), f"eval output is {type(logits).__name__}, not a tensor")
    expected = (2, NUM_CLASSES, *SIZE)
    require(
        tuple(logits.shape) == expected, f"eval logits have shape {tuple(logits.shape)}; expected {expected}"
    )
    require(bool(torch.isfinite(logits).all()), "eval logits are not finite")


def check_sizes(spec: ArchitectureSpec, registry: Any = None) -> str:
    params = small_params(spec, registry)
    model = _build(spec, params).eval()
    multiple = spec.multiple(params)
    with torch.no_grad():
        for height, width in _sizes(multiple):
            out = model(torch.randn(1, 1, height, width))
            shape = (1, NUM_CLASSES, height, width)
            require(
                tuple(out.shape) == shape, f"input {height}x{width} gave {tuple(out.shape)}; expected {shape}"
            )
        if multiple > 1:
            odd = (SIZE[0] + multiple // 2, SIZE[1])
            try:
                model(torch.randn(1, 1, *odd))
            except ValueError as exc:
                require(str(multiple) in str(exc), f"size error does not name the multiple {multiple}: {exc}")
            else:
                raise CheckFailed(
                    f"input {odd[0]}x{odd[1]} (not a multiple of {multiple}) raised no ValueError"
                )
    return f"multiple {multiple}"


def _batchnorm_stats(model: nn.Module) -> list[torch.Tensor]:
    return [
        m.running_mean.clone()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


def check_modes(spec: ArchitectureSpec, registry: Any = None) -> None:
    model = _build(spec, small_params(spec, registry))
    images, _ = random_batch()
    model.eval()
    require(not any(m.training for m in model.modules()), "eval() left a submodule in training mode")
    before = _batchnorm_stats(model)
    with torch.no_grad():
        first, second = model(images), model(images)
    require(torch.equal(first, second), "eval mode is not deterministic for the same input")
    after = _batchnorm_stats(model)
    require(
        all(torch.equal(a, b) for a, b in zip(before, after, strict=True)),
        "eval mode updated BatchNorm stats",
    )
    model.train()
    require(all(m.training for m in model.modules()), "train() left a submodule in eval mode")
    if before and not spec.instance_based:
        with torch.no_grad():
            model(images)
        moved = any(not torch.equal(a, b) for a, b in zip(before, _batchnorm_stats(model), strict=True))
        require(moved, "train mode did not update BatchNorm running stats")


def check_deep_supervision(spec: ArchitectureSpec, registry: Any = None) -> str:
    model = _build(spec, small_params(spec, registry)).train()
    images, masks = random_batch()
    if spec.instance_based:
        return "instance-based: training returns losses (checked in forward/backward)"
    with torch.no_grad():
        out = model(images)
        if spec.deep_supervision:
            require(
                isinstance(out, (list, tuple)) and len(out) >= 1, "training output is not a non-empty list"
            )
            for i, o in enumerate(out):
                shape = (2, NUM_CLASSES, *SIZE)
                require(tuple(o.shape) == shape, f"deep-supervision output {i} has shape {tuple(o.shape)}")
            model.eval()
            require(
                isinstance(model(images), torch.Tensor), "eval output under deep supervision is not a tensor"
            )
            return f"{len(out)} training outputs"
        require(
            isinstance(out, torch.Tensor), "training output is a list but the spec has no deep_supervision"
        )
    return "not declared"


def check_compile(spec: ArchitectureSpec, registry: Any = None) -> str:
    model = _build(spec, shallow_params(spec, registry)).eval()
    images, masks = random_batch(batch=2)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model)
        with torch.no_grad():
            fast, slow = compiled(images), model(images)
        model.train()
        training_loss(spec, compiled, images, masks).backward()
    except Exception as exc:
        if spec.compiles:
            raise CheckFailed(
                f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None
        return "declared not compilable, and it is not"
    finally:
        torch._dynamo.reset()
    if not spec.compiles:
        raise CheckFailed("declares compiles=False but torch.compile works: set compiles=True")
    require(torch.allclose(fast, slow, atol=1e-3, rtol=1e-3), "compiled eval output differs from eager")
    return "compiled forward and backward match"


ARCHITECTURE_CHECKS = {
    "builds": check_builds,
    "forward_backward": check_forward_backward,
    "sizes": check_sizes,
    "modes": check_modes,
    "deep_supervision": check_deep_supervision,
    "compile": check_compile,
}
