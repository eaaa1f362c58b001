"""Attention U-Net: attention gates and their W transform on the skips, deep supervision, the output
contract, cost and compilability."""

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
    assert SPEC.deep_supervision and SPEC.compiles  # training mode returns a list, as unetpp
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
    assert torch.allclose(gate(skip, signal), gate.w(skip * alpha))


def test_the_gated_skip_goes_through_the_w_transform():
    gate = AttentionGate(skip_channels=8, gate_channels=16, inter_channels=4).eval()
    conv, norm = gate.w
    assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (8, 8)
    assert isinstance(norm, nn.BatchNorm2d)
    skip, signal = torch.randn(2, 8, 16, 32), torch.randn(2, 16, 8, 16)
    with torch.no_grad():
        expected = norm(conv(skip * gate.coefficients(skip, signal)))
        assert torch.allclose(gate(skip, signal), expected)
        nn.init.zeros_(conv.weight)  # W learns what reaches the decoder: at zero, nothing (but the bias)
        assert torch.allclose(gate(skip, signal), norm.bias[None, :, None, None].expand_as(skip))
    assert isinstance(AttentionGate(8, 16, 4, norm="group").w[1], nn.GroupNorm)


def test_deep_supervision_gives_one_logit_map_per_decoder_level():
    model = make(width=4, depth=3, deep_supervision=True).train()
    images, masks = torch.randn(2, 1, 32, 64), torch.randint(0, NUM_CLASSES, (2, 32, 64))
    outputs = model(images)
    assert [tuple(o.shape) for o in outputs] == [(2, NUM_CLASSES, 32, 64)] * 3
    sum(nn.functional.cross_entropy(o, masks) for o in outputs).backward()
    assert all(head.weight.grad is not None for head in model.side_heads)
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, NUM_CLASSES, 32, 64)  # eval: the final head alone
    plain = make(width=4, depth=3).train()
    assert plain.side_heads is None and len(plain(images)) == 1


def test_zero_psi_gives_half_everywhere():
    gate = AttentionGate(skip_channels=8, gate_channels=16, inter_channels=4)
    nn.init.zeros_(gate.psi[0].weight)
    nn.init.zeros_(gate.psi[0].bias)
    skip, signal = torch.randn(2, 8, 16, 32), torch.randn(2, 16, 8, 16)
    assert torch.equal(gate.coefficients(skip, signal), torch.full((2, 1, 16, 32), 0.5))
    assert torch.allclose(gate(skip, signal), gate.w(skip * 0.5))


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
        (logits,) = torch.compile(model)(images)  # training mode: the one-element deep-supervision list
        logits.square().mean().backward()
    finally:
        torch._dynamo.reset()
    with torch.no_grad():
        assert torch.allclose(logits, model(images)[0], atol=1e-4)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
