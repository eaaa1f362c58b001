"""The block checks: shapes in every role (even and odd sizes, widening and narrowing), gradients to every
parameter and input, every norm honoured, parameters that refuse unknown names and bad values, and a
stage block's spatial context (its output at a pixel's neighbours moves when that pixel does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_origin

import torch
from torch import nn

from harness.conformance.kit import CheckFailed, require
from harness.errors import ConfigError
from harness.specs import BlockSpec

# Blocks keep H and W, so any size must work: an even one and an odd one (which catches a block that
# pools and up-samples by 2). Channel pairs widen, keep and narrow (a decoder block narrows).
BLOCK_SIZES = [(8, 16), (7, 5)]
BLOCK_CHANNELS = [(4, 8), (16, 16), (12, 4)]
NORMS = ("batch", "group", "instance", "none")


def _build_block(spec: BlockSpec, registry: Any, a: int, b: int, norm: str = "batch") -> nn.Module:
    module = spec.build(spec.parse_params(registry=registry), a, b, norm=norm)
    require(isinstance(module, nn.Module), f"build returned {type(module).__name__}, not an nn.Module")
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


def check_block_shapes(spec: BlockSpec, registry: Any = None) -> str:
    for role in sorted(spec.roles):
        for a, b in BLOCK_CHANNELS:
            block = _build_block(spec, registry, a, b)
            for training in (True, False):
                block.train(training)
                for size, gating_size in _block_sizes(role):
                    where = f"as {role} ({a} -> {b} channels) on {size[0]}x{size[1]}"
                    if gating_size:
                        where += f" with gating {gating_size[0]}x{gating_size[1]}"
                    with torch.no_grad():
                        out = block(*_block_inputs(role, a, b, size, gating_size))
                    require(isinstance(out, torch.Tensor), f"{where}: returned {type(out).__name__}")
                    expected = _expected_block_shape(role, a, b, size)
                    require(
                        tuple(out.shape) == expected,
                        f"{where}: shape {tuple(out.shape)}; expected {expected}",
                    )
                    require(bool(torch.isfinite(out).all()), f"{where}: output not finite")
    return f"roles {', '.join(sorted(spec.roles))}"


def check_block_gradients(spec: BlockSpec, registry: Any = None) -> None:
    for role in sorted(spec.roles):
        a, b = BLOCK_CHANNELS[0]
        block = _build_block(spec, registry, a, b).train()
        inputs = [t.requires_grad_() for t in _block_inputs(role, a, b, BLOCK_SIZES[0])]
        out = block(*inputs)
        # Random weights, not a plain sum: a sum's gradient vanishes through a final normalisation.
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * weights).sum().backward()
        for name, param in block.named_parameters():
            if param.requires_grad:
                require(param.grad is not None, f"as {role}: parameter '{name}' got no gradient")
                require(
                    bool(torch.isfinite(param.grad).all()), f"as {role}: '{name}' has a non-finite gradient"
                )
        for i, tensor in enumerate(inputs):
            require(
                tensor.grad is not None and bool(torch.isfinite(tensor.grad).all()),
                f"as {role}: input {i} got no finite gradient",
            )


def check_block_norms(spec: BlockSpec, registry: Any = None) -> str:
    role = sorted(spec.roles)[0]
    a, b = BLOCK_CHANNELS[0]
    for norm in NORMS:
        try:
            block = _build_block(spec, registry, a, b, norm=norm).train()
            out = block(*_block_inputs(role, a, b, BLOCK_SIZES[1]))
        except CheckFailed:
            raise
        except Exception as exc:  # name the norm: the failure is about honouring it
            raise CheckFailed(f"norm={norm}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        expected = _expected_block_shape(role, a, b, BLOCK_SIZES[1])
        require(tuple(out.shape) == expected, f"norm={norm}: shape {tuple(out.shape)}; expected {expected}")
    return f"{', '.join(NORMS)} as {role}"


STAGE_ROLES = ("encoder", "bottleneck", "decoder")
# The perturbed pixel sits off the centre (row 2, column 5 of a 7x9 map) so that a block mirroring or
# centring its input cannot pass by accident; its 8 neighbours are all inside the map.
STAGE_PROBE_SIZE, STAGE_PROBE_PIXEL = (7, 9), (2, 5)


def check_block_stage(spec: BlockSpec, registry: Any = None) -> str:
    """A stage block (`placement="stage"`) mixes a pixel with its neighbours: changing one input pixel
    must change the output at some of its 8 neighbours. Run in eval mode, with BatchNorm, so that batch
    statistics (which couple every position in training) cannot fake it; the block is used as built."""
    roles = [role for role in STAGE_ROLES if role in spec.roles]
    if not roles:
        return "skip fusion only: not a stage"
    if spec.placement == "attachment":
        return "attachment: follows a stage in a '+' chain, not checked alone"
    a, b = BLOCK_CHANNELS[1]
    # Weights from a fixed seed: drawn from the global RNG, they made the check depend on whatever ran
    # before it (an attention block's neighbours moved under the threshold for some draws).
    with torch.random.fork_rng():
        torch.manual_seed(0)
        block = _build_block(spec, registry, a, b).eval()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, a, *STAGE_PROBE_SIZE, generator=generator)
    row, col = STAGE_PROBE_PIXEL
    moved = x.clone()
    # A random change across channels: the same shift on every channel is invisible to a LayerNorm.
    moved[0, :, row, col] += 3.0 * torch.randn(a, generator=generator)
    with torch.no_grad():
        change = (block(moved) - block(x)).abs().amax(dim=(0, 1))  # (H, W)
    around = change[row - 1 : row + 2, col - 1 : col + 2].clone()
    around[1, 1] = 0.0  # the pixel itself does not count: a 1x1 conv moves it too
    scale = max(float(change.max()), 1e-12)
    require(
        float(around.max()) > 1e-4 * scale,
        f"declared a stage, but changing one input pixel left its neighbours' outputs unchanged (as a "
        f"1x1-only block would) as {roles[0]}: add spatial context, or declare placement='attachment' "
        f"if it must follow a stage (used as conv+{spec.name})",
    )
    return f"neighbours move by up to {float(around.max()):.2g}"


def _bad_values(field) -> list[object]:
    """Values the field must refuse: a mapping (no scalar or list field takes one) and broken bounds."""
    bad: list[object] = [{"not": "valid"}]
    for meta in field.metadata:
        for attr, outside in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(meta, attr, None)
            if isinstance(bound, int | float):
                bad.append(bound + outside)
    return bad


def check_block_params(spec: BlockSpec, registry: Any = None) -> str:
    spec.parse_params(registry=registry)
    try:
        spec.parse_params({"no_such_parameter": 1}, registry=registry)
    except ConfigError:
        pass
    else:
        raise CheckFailed("an unknown parameter was accepted")
    checked = 0
    for name, field in spec.params.model_fields.items():
        require(bool(field.description), f"parameter '{name}' has no description (harness list shows it)")
        if field.annotation is Any or _mapping_like(field.annotation):
            continue
        for value in _bad_values(field):
            try:
                spec.parse_params({name: value}, registry=registry)
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
    "stage": check_block_stage,
}
