"""R2U-Net: the size contract, weight-shared recurrence and the residual around each unit's RCLs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.cost import count_params
from plugins.architectures import r2unet

SPEC = r2unet.harness_architectures()[0]


def _build(**values) -> nn.Module:
    return SPEC.build(SPEC.parse_params(values), in_channels=1, num_classes=5)


@pytest.mark.parametrize(("depth", "size"), [(4, (64, 120)), (2, (66, 128))])
def test_other_sizes_raise_naming_the_multiple(depth, size):
    assert SPEC.multiple(SPEC.parse_params({"depth": depth})) == 2**depth
    with pytest.raises(ValueError, match=f"divisible by {2**depth}"):
        _build(width=4, depth=depth)(torch.randn(1, 1, *size))


def test_default_size_and_spec_flags():
    assert 1e6 <= count_params(_build()) <= 10e6
    assert SPEC.compiles and not SPEC.deep_supervision
    assert count_params(_build(width=8)) < count_params(_build(width=16))


def test_recurrence_shares_weights_but_changes_the_output():
    torch.manual_seed(0)
    once, thrice = _build(width=4, depth=2, t=1).eval(), _build(width=4, depth=2, t=3).eval()
    assert count_params(once) == count_params(thrice)
    thrice.load_state_dict(once.state_dict())  # same weights, only the unrolling differs
    x = torch.randn(1, 1, 32, 64)
    with torch.no_grad():
        assert not torch.allclose(once(x), thrice(x))


@pytest.mark.parametrize("t", [1, 3])
def test_each_rcl_applies_its_conv_t_plus_one_times(t):
    model = _build(width=4, depth=1, t=t).eval()
    rcl = model.encoders[0].body[0]
    calls = []
    rcl.conv.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0]))
    with torch.no_grad():
        model(torch.randn(1, 1, 32, 64))
    assert len(calls) == t + 1


def test_block_adds_its_input_to_the_rcl_output():
    block = _build(width=4, depth=1).encoders[0].eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        entry = block.entry(x)
        assert torch.allclose(block(x), entry + block.body(entry))
        block.body = nn.Sequential()  # an identity body: the residual alone doubles the entry
        assert torch.allclose(block(x), 2 * entry)


def test_train_and_eval_modes():
    model = _build(width=4, dropout=0.5)
    x = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_compiles_whole_graph_forward_and_backward():
    model = _build(width=4, depth=1, t=1).eval()
    x = torch.randn(2, 1, 32, 64)
    torch._dynamo.reset()
    try:
        # fullgraph: a graph break (data-dependent control flow) fails here instead of silently slowing.
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            assert torch.allclose(compiled(x), model(x), atol=1e-5)
        compiled.train()
        compiled(x).square().mean().backward()
    finally:
        torch._dynamo.reset()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
