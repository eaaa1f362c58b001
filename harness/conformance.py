"""The conformance kit: the checks every architecture, block, loss and balancer must pass, built-in or not.

`tests/conformance/` runs them over every registered plugin; `harness check-plugin NAME` runs the same
checks on any installed plugin, so a third-party author gets the verdict the project's CI gives.
Each check raises `CheckFailed` with one line saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_origin

import torch
from pydantic import BaseModel
from torch import nn

from harness.data.distance import signed_distance_maps
from harness.errors import ConfigError
from harness.specs import ArchitectureSpec, BalancerSpec, BlockSpec, LossSpec, PluginSpec

NUM_CLASSES = 5
SIZE = (64, 128)


class CheckFailed(AssertionError):
    """A plugin broke its contract."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def small_params(spec: PluginSpec) -> BaseModel:
    """Default params with `width` (when there is one) set to its smallest allowed value, at least 4."""
    field = spec.params.model_fields.get("width")
    if field is None:
        return spec.parse_params()
    lower = next((m.ge for m in field.metadata if hasattr(m, "ge")), 4)
    return spec.parse_params({"width": max(int(lower), 4)})


def shallow_params(spec: PluginSpec) -> BaseModel:
    """`small_params` with `depth` (when there is one) at most 2: compiling is the kit's slowest check and
    whether a graph compiles does not depend on how many times its levels repeat."""
    params = small_params(spec)
    depth = getattr(params, "depth", None)
    if not isinstance(depth, int) or depth <= 2:
        return params
    field = spec.params.model_fields["depth"]
    lower = next((m.ge for m in field.metadata if hasattr(m, "ge")), 1)
    return spec.parse_params({**params.model_dump(mode="json"), "depth": max(2, int(lower))})


def _build(spec: ArchitectureSpec, params: BaseModel) -> nn.Module:
    model = spec.build(params, in_channels=1, num_classes=NUM_CLASSES)
    _require(isinstance(model, nn.Module), f"build returned {type(model).__name__}, not an nn.Module")
    return model


def _logits(spec: ArchitectureSpec, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The training-mode output reduced to one logits tensor (the last deep-supervision head)."""
    out = model(x)
    if spec.deep_supervision and model.training:
        _require(
            isinstance(out, (list, tuple)) and len(out) > 0, "deep_supervision: training output is not a list"
        )
        return out[-1]
    return out


def _sizes(multiple: int) -> list[tuple[int, int]]:
    """Two sizes other than 64x128 that are multiples of `multiple` (small and large)."""

    def up(value: int) -> int:
        return -(-value // multiple) * multiple

    return [(up(32), up(64)), (up(128), up(256))]


def _random_batch(size: tuple[int, int] = SIZE, batch: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 1, *size, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (batch, *size), generator=generator)
    return images, masks


def _training_loss(spec: ArchitectureSpec, model: nn.Module, images, masks) -> torch.Tensor:
    """A scalar to back-propagate, following the capability flags like the training loop does."""
    if spec.instance_based:
        losses = model(images, masks)
        _require(isinstance(losses, dict) and losses, "instance_based: training call did not return a dict")
        for name, value in losses.items():
            _require(
                value.dim() == 0 and torch.isfinite(value), f"instance loss '{name}' is not a finite scalar"
            )
        return sum(losses.values())
    out = model(images)
    outputs = out if spec.deep_supervision else [out]
    expected = (len(images), NUM_CLASSES, *images.shape[-2:])
    for o in outputs:
        _require(
            tuple(o.shape) == expected, f"training logits have shape {tuple(o.shape)}; expected {expected}"
        )
    return sum(nn.functional.cross_entropy(o, masks) for o in outputs)


def check_builds(spec: ArchitectureSpec) -> str:
    model = _build(spec, spec.parse_params())
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if spec.params_count is not None:
        _require(
            count == spec.params_count, f"spec declares {spec.params_count} params; the model has {count}"
        )
    _build(spec, small_params(spec))
    return f"{count / 1e6:.2f} M params with defaults"


def check_forward_backward(spec: ArchitectureSpec) -> None:
    model = _build(spec, small_params(spec)).train()
    images, masks = _random_batch()
    loss = _training_loss(spec, model, images, masks)
    _require(torch.isfinite(loss).item(), "training loss is not finite")
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            _require(param.grad is not None, f"parameter '{name}' got no gradient")
            _require(bool(torch.isfinite(param.grad).all()), f"parameter '{name}' has a non-finite gradient")
    model.eval()
    with torch.no_grad():
        logits = model(images)
    _require(isinstance(logits, torch.Tensor), f"eval output is {type(logits).__name__}, not a tensor")
    expected = (2, NUM_CLASSES, *SIZE)
    _require(
        tuple(logits.shape) == expected, f"eval logits have shape {tuple(logits.shape)}; expected {expected}"
    )
    _require(bool(torch.isfinite(logits).all()), "eval logits are not finite")


def check_sizes(spec: ArchitectureSpec) -> str:
    params = small_params(spec)
    model = _build(spec, params).eval()
    multiple = spec.multiple(params)
    with torch.no_grad():
        for height, width in _sizes(multiple):
            out = model(torch.randn(1, 1, height, width))
            shape = (1, NUM_CLASSES, height, width)
            _require(
                tuple(out.shape) == shape, f"input {height}x{width} gave {tuple(out.shape)}; expected {shape}"
            )
        if multiple > 1:
            odd = (SIZE[0] + multiple // 2, SIZE[1])
            try:
                model(torch.randn(1, 1, *odd))
            except ValueError as exc:
                _require(
                    str(multiple) in str(exc), f"size error does not name the multiple {multiple}: {exc}"
                )
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


def check_modes(spec: ArchitectureSpec) -> None:
    model = _build(spec, small_params(spec))
    images, _ = _random_batch()
    model.eval()
    _require(not any(m.training for m in model.modules()), "eval() left a submodule in training mode")
    before = _batchnorm_stats(model)
    with torch.no_grad():
        first, second = model(images), model(images)
    _require(torch.equal(first, second), "eval mode is not deterministic for the same input")
    after = _batchnorm_stats(model)
    _require(
        all(torch.equal(a, b) for a, b in zip(before, after, strict=True)),
        "eval mode updated BatchNorm stats",
    )
    model.train()
    _require(all(m.training for m in model.modules()), "train() left a submodule in eval mode")
    if before and not spec.instance_based:
        with torch.no_grad():
            model(images)
        moved = any(not torch.equal(a, b) for a, b in zip(before, _batchnorm_stats(model), strict=True))
        _require(moved, "train mode did not update BatchNorm running stats")


def check_deep_supervision(spec: ArchitectureSpec) -> str:
    model = _build(spec, small_params(spec)).train()
    images, masks = _random_batch()
    if spec.instance_based:
        return "instance-based: training returns losses (checked in forward/backward)"
    with torch.no_grad():
        out = model(images)
        if spec.deep_supervision:
            _require(
                isinstance(out, (list, tuple)) and len(out) >= 1, "training output is not a non-empty list"
            )
            for i, o in enumerate(out):
                shape = (2, NUM_CLASSES, *SIZE)
                _require(tuple(o.shape) == shape, f"deep-supervision output {i} has shape {tuple(o.shape)}")
            model.eval()
            _require(
                isinstance(model(images), torch.Tensor), "eval output under deep supervision is not a tensor"
            )
            return f"{len(out)} training outputs"
        _require(
            isinstance(out, torch.Tensor), "training output is a list but the spec has no deep_supervision"
        )
    return "not declared"


def check_compile(spec: ArchitectureSpec) -> str:
    model = _build(spec, shallow_params(spec)).eval()
    images, masks = _random_batch(batch=2)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model)
        with torch.no_grad():
            fast, slow = compiled(images), model(images)
        model.train()
        _training_loss(spec, compiled, images, masks).backward()
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
    _require(torch.allclose(fast, slow, atol=1e-3, rtol=1e-3), "compiled eval output differs from eager")
    return "compiled forward and backward match"


ARCHITECTURE_CHECKS = {
    "builds": check_builds,
    "forward_backward": check_forward_backward,
    "sizes": check_sizes,
    "modes": check_modes,
    "deep_supervision": check_deep_supervision,
    "compile": check_compile,
}


def _loss_inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, NUM_CLASSES, 16, 32, generator=generator, requires_grad=True)
    target = torch.randint(0, NUM_CLASSES, (2, 16, 32), generator=generator)
    return logits, target


def _build_loss(spec: LossSpec, class_weights: torch.Tensor | None = None) -> nn.Module:
    return spec.build(
        spec.parse_params(), num_classes=NUM_CLASSES, ignore_index=0, class_weights=class_weights
    )


def _scalar_loss(spec: LossSpec, loss_fn: nn.Module, logits, target) -> torch.Tensor:
    extra = ()
    if spec.distance_maps(spec.parse_params()):
        extra = (signed_distance_maps(target.to(torch.uint8), NUM_CLASSES, 0),)
    value = loss_fn(logits, target, *extra)
    _require(isinstance(value, torch.Tensor) and value.dim() == 0, "the loss is not a scalar tensor")
    _require(bool(torch.isfinite(value)), f"the loss is not finite: {value}")
    return value


def check_loss_value(spec: LossSpec) -> str:
    logits, target = _loss_inputs()
    value = _scalar_loss(spec, _build_loss(spec), logits, target)
    value.backward()
    _require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient")
    weighted = _build_loss(spec, torch.tensor([0.0, 1.0, 2.0, 1.0, 4.0]))
    _scalar_loss(spec, weighted, logits.detach(), target)
    return f"{value.item():.4f} on random logits"


def check_loss_ignore_index(spec: LossSpec) -> None:
    loss_fn = _build_loss(spec)
    logits, target = _loss_inputs()
    target[:, :, :8] = 0
    changed = logits.detach().clone()
    changed[:, :, :, :8] += torch.randn_like(changed[:, :, :, :8]) * 5
    base = _scalar_loss(spec, loss_fn, logits.detach(), target)
    _require(
        torch.allclose(base, _scalar_loss(spec, loss_fn, changed, target), atol=1e-5),
        "logits at ignored pixels changed the loss",
    )
    all_ignored = torch.zeros_like(target)
    logits.grad = None
    _scalar_loss(spec, loss_fn, logits, all_ignored).backward()
    _require(bool(torch.isfinite(logits.grad).all()), "non-finite gradient when every pixel is ignored")
    absent = target.clone()
    absent[absent == 4] = 1  # a class missing from the batch
    logits.grad = None
    _scalar_loss(spec, loss_fn, logits, absent).backward()
    _require(
        bool(torch.isfinite(logits.grad).all()), "non-finite gradient with a class absent from the batch"
    )


LOSS_CHECKS = {"value": check_loss_value, "ignore_index": check_loss_ignore_index}


def _balancer_inputs():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 32, 64), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, 4, (12, 32, 64), generator=generator, dtype=torch.uint8)
    masks[:3, 10:16, 20:30] = 4  # a rare class in a few images, as big rocks are
    return images, masks


def _balance(spec: BalancerSpec, images, masks, seed: int):
    balance = spec.build(spec.parse_params())
    return balance(images, masks, num_classes=NUM_CLASSES, ignore_index=0, seed=seed)


def check_balancer_contract(spec: BalancerSpec) -> str:
    images, masks = _balancer_inputs()
    originals = images.clone(), masks.clone()
    result = _balance(spec, images, masks, seed=0)
    _require(
        torch.equal(images, originals[0]) and torch.equal(masks, originals[1]), "modified its inputs in place"
    )
    _require(
        result.images.dtype == torch.uint8 and result.masks.dtype == torch.uint8, "outputs are not uint8"
    )
    _require(result.images.shape == result.masks.shape, "images and masks differ in shape")
    _require(tuple(result.images.shape[1:]) == (32, 64), "changed the image size")
    _require(len(result.images) > 0, "returned an empty training split")
    _require(int(result.masks.max()) < NUM_CLASSES, "produced a label outside the classes")
    if result.strong is not None:
        strong = result.strong
        _require(
            strong.dtype == torch.bool and tuple(strong.shape) == (len(result.images),), "bad strong marks"
        )
    if result.class_weights is not None:
        weights = result.class_weights
        _require(tuple(weights.shape) == (NUM_CLASSES,), f"class_weights has shape {tuple(weights.shape)}")
        _require(
            bool(torch.isfinite(weights).all() and (weights >= 0).all()), "class_weights not finite, >= 0"
        )
    return f"{len(images)} -> {len(result.images)} images"


def check_balancer_deterministic(spec: BalancerSpec) -> None:
    images, masks = _balancer_inputs()
    first, second = _balance(spec, images, masks, 3), _balance(spec, images, masks, 3)
    same = torch.equal(first.images, second.images) and torch.equal(first.masks, second.masks)
    _require(same, "two calls with the same seed gave different splits")


BALANCER_CHECKS = {"contract": check_balancer_contract, "deterministic": check_balancer_deterministic}

# Blocks keep H and W, so any size must work: an even one and an odd one (which catches a block that
# pools and up-samples by 2). Channel pairs widen, keep and narrow (a decoder block narrows).
BLOCK_SIZES = [(8, 16), (7, 5)]
BLOCK_CHANNELS = [(4, 8), (16, 16), (12, 4)]
NORMS = ("batch", "group", "instance", "none")


def _build_block(spec: BlockSpec, a: int, b: int, norm: str = "batch") -> nn.Module:
    module = spec.build(spec.parse_params(), a, b, norm=norm)
    _require(isinstance(module, nn.Module), f"build returned {type(module).__name__}, not an nn.Module")
    return module


def _block_inputs(
    role: str, a: int, b: int, size: tuple[int, int], gating_size: tuple[int, int] | None = None
):
    """The positional inputs of a block at `role`: (x,) or, for skip fusion, (skip, gating)."""
    generator = torch.Generator().manual_seed(sum(size) + a + b)
    first = torch.randn(2, a, *size, generator=generator)
    if role != "skip":
        return (first,)
    return first, torch.randn(2, b, *(gating_size or size), generator=generator)


def _expected_block_shape(role: str, a: int, b: int, size: tuple[int, int]) -> tuple[int, ...]:
    return (2, a if role == "skip" else b, *size)


def _block_sizes(role: str) -> Iterator[tuple[tuple[int, int], tuple[int, int] | None]]:
    """(size, gating size) pairs: skip fusion also gets its gating features at half the size."""
    for size in BLOCK_SIZES:
        yield size, None
        if role == "skip":
            yield size, (-(-size[0] // 2), -(-size[1] // 2))


def check_block_shapes(spec: BlockSpec) -> str:
    for role in sorted(spec.roles):
        for a, b in BLOCK_CHANNELS:
            block = _build_block(spec, a, b)
            for training in (True, False):
                block.train(training)
                for size, gating_size in _block_sizes(role):
                    where = f"as {role} ({a} -> {b} channels) on {size[0]}x{size[1]}"
                    if gating_size:
                        where += f" with gating {gating_size[0]}x{gating_size[1]}"
                    with torch.no_grad():
                        out = block(*_block_inputs(role, a, b, size, gating_size))
                    _require(isinstance(out, torch.Tensor), f"{where}: returned {type(out).__name__}")
                    expected = _expected_block_shape(role, a, b, size)
                    _require(
                        tuple(out.shape) == expected,
                        f"{where}: shape {tuple(out.shape)}; expected {expected}",
                    )
                    _require(bool(torch.isfinite(out).all()), f"{where}: output not finite")
    return f"roles {', '.join(sorted(spec.roles))}"


def check_block_gradients(spec: BlockSpec) -> None:
    for role in sorted(spec.roles):
        a, b = BLOCK_CHANNELS[0]
        block = _build_block(spec, a, b).train()
        inputs = [t.requires_grad_() for t in _block_inputs(role, a, b, BLOCK_SIZES[0])]
        out = block(*inputs)
        # Random weights, not a plain sum: a sum's gradient vanishes through a final normalisation.
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * weights).sum().backward()
        for name, param in block.named_parameters():
            if param.requires_grad:
                _require(param.grad is not None, f"as {role}: parameter '{name}' got no gradient")
                _require(
                    bool(torch.isfinite(param.grad).all()), f"as {role}: '{name}' has a non-finite gradient"
                )
        for i, tensor in enumerate(inputs):
            _require(
                tensor.grad is not None and bool(torch.isfinite(tensor.grad).all()),
                f"as {role}: input {i} got no finite gradient",
            )


def check_block_norms(spec: BlockSpec) -> str:
    role = sorted(spec.roles)[0]
    a, b = BLOCK_CHANNELS[0]
    for norm in NORMS:
        try:
            block = _build_block(spec, a, b, norm=norm).train()
            out = block(*_block_inputs(role, a, b, BLOCK_SIZES[1]))
        except CheckFailed:
            raise
        except Exception as exc:  # name the norm: the failure is about honouring it
            raise CheckFailed(f"norm={norm}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        expected = _expected_block_shape(role, a, b, BLOCK_SIZES[1])
        _require(tuple(out.shape) == expected, f"norm={norm}: shape {tuple(out.shape)}; expected {expected}")
    return f"{', '.join(NORMS)} as {role}"


def _bad_values(field) -> list[object]:
    """Values the field must refuse: a mapping (no scalar or list field takes one) and broken bounds."""
    bad: list[object] = [{"not": "valid"}]
    for meta in field.metadata:
        for attr, outside in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(meta, attr, None)
            if isinstance(bound, int | float):
                bad.append(bound + outside)
    return bad


def check_block_params(spec: BlockSpec) -> str:
    spec.parse_params()
    try:
        spec.parse_params({"no_such_parameter": 1})
    except ConfigError:
        pass
    else:
        raise CheckFailed("an unknown parameter was accepted")
    checked = 0
    for name, field in spec.params.model_fields.items():
        _require(bool(field.description), f"parameter '{name}' has no description (harness list shows it)")
        if field.annotation is Any or _mapping_like(field.annotation):
            continue
        for value in _bad_values(field):
            try:
                spec.parse_params({name: value})
            except ConfigError:
                checked += 1
            else:
                raise CheckFailed(f"parameter '{name}' accepted the bad value {value!r}")
    return f"{len(spec.params.model_fields)} params, {checked} bad values rejected"


def _mapping_like(annotation: Any) -> bool:
    return annotation is dict or get_origin(annotation) is dict


BLOCK_CHECKS = {
    "shapes": check_block_shapes,
    "gradients": check_block_gradients,
    "norms": check_block_norms,
    "params": check_block_params,
}

CHECKS_BY_KIND = {
    "architecture": ARCHITECTURE_CHECKS,
    "block": BLOCK_CHECKS,
    "loss": LOSS_CHECKS,
    "balancer": BALANCER_CHECKS,
}


def run_checks(spec: PluginSpec) -> Iterator[tuple[str, bool, str]]:
    """(check name, passed, note or failure line) for every check of the spec's kind."""
    for name, check in CHECKS_BY_KIND.get(spec.kind, {}).items():
        try:
            note = check(spec)
        except CheckFailed as exc:
            yield name, False, str(exc)
        except Exception as exc:  # a crash inside the plugin is a failed check, not a crashed kit
            yield name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            yield name, True, note or ""
