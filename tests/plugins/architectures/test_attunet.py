"""Attention U-Net: attention gates on the skips, the output contract, cost and compilability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.cost import count_params, forward_gflops
from plugins.architectures.attunet import AttentionGate, harness_architectures

NUM_CLASSES = 5
SPEC = harness_architectures()[0]


def make(**values) -> nn.Module:
    torch.manual_seed(0)
    return SPEC.build(SPEC.parse_params(values), in_channels=1, num_classes=NUM_CLASSES)


def test_spec_declares_the_contract():
    params = SPEC.parse_params({"depth": 3})
    assert SPEC.name == "attunet"
    assert not SPEC.deep_supervision and SPEC.compiles
    assert SPEC.multiple(params) == 8


def test_every_skip_is_gated_with_coefficients_in_unit_interval():
    model = make(width=4, depth=3).eval()
    seen = []
    hooks = [
        gate.psi.register_forward_hook(lambda _m, _i, out: seen.append(out))
        for gate in model.modules()
        if isinstance(gate, AttentionGate)
    ]
    with torch.no_grad():
        model(torch.randn(2, 1, 32, 64) * 10)
    for hook in hooks:
        hook.remove()
    # One gate per level, deepest first, each at its gating signal's resolution.
    assert [tuple(a.shape) for a in seen] == [(2, 1, 4, 8), (2, 1, 8, 16), (2, 1, 16, 32)]
    for alpha in seen:
        assert alpha.min() >= 0 and alpha.max() <= 1
        assert alpha.std() > 0  # the scores depend on the input


def test_coefficients_are_resampled_to_the_skip():
    gate = AttentionGate(skip_channels=8, gate_channels=16, inter_channels=4)
    skip, signal = torch.randn(2, 8, 16, 32) * 10, torch.randn(2, 16, 8, 16) * 10
    alpha = gate.coefficients(skip, signal)
    assert alpha.shape == (2, 1, 16, 32)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert torch.allclose(gate(skip, signal), skip * alpha)


def test_zero_psi_gives_half_everywhere():
    gate = AttentionGate(skip_channels=8, gate_channels=16, inter_channels=4)
    nn.init.zeros_(gate.psi[0].weight)
    nn.init.zeros_(gate.psi[0].bias)
    skip, signal = torch.randn(2, 8, 16, 32), torch.randn(2, 16, 8, 16)
    assert torch.equal(gate.coefficients(skip, signal), torch.full((2, 1, 16, 32), 0.5))
    assert torch.allclose(gate(skip, signal), skip * 0.5)


@pytest.mark.parametrize(("ratio", "expected"), [(0.5, [16, 8, 4]), (1.0, [32, 16, 8])])
def test_gate_channels_follow_the_ratio(ratio, expected):
    model = make(width=8, depth=3, attention_channels_ratio=ratio)
    assert [gate.w_x.out_channels for gate in model.gates] == expected
    assert [gate.w_g.in_channels for gate in model.gates] == [64, 32, 16]


def test_default_cost_is_in_range():
    model = make()
    assert 1e6 <= count_params(model) <= 10e6
    assert 0 < forward_gflops(model) < 10


def test_compiles_forward_and_backward():
    # The smallest model, without BatchNorm or dropout: BatchNorm's training kernels roughly double a
    # cold compile on CPU (the conformance kit compiles the default norm), and no dropout lets the
    # compiled training output be compared with eager's without a second (eval) compilation.
    model = make(width=4, depth=1, norm="none", dropout=0.0).train()
    images = torch.randn(2, 1, 16, 32)
    torch._dynamo.reset()
    try:
        logits = torch.compile(model)(images)
        logits.square().mean().backward()
    finally:
        torch._dynamo.reset()
    with torch.no_grad():
        assert torch.allclose(logits, model(images), atol=1e-4)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
