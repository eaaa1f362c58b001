"""R2U-Net: the size contract, the conv-shared recurrence with a norm per step (train and eval agree), and
the residual around each unit's RCLs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.cost import count_params
from plugins.architectures import r2unet
from plugins.architectures.layers import conv_norm_act

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


def _conv_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))


def test_recurrence_shares_the_conv_but_gives_each_step_its_norm():
    torch.manual_seed(0)
    once, thrice = _build(width=4, depth=2, t=1).eval(), _build(width=4, depth=2, t=3).eval()
    assert _conv_params(once) == _conv_params(thrice)  # the unrolling adds no conv weights
    assert [len(rcl.norms) for rcl in (once.encoders[0].body[0], thrice.encoders[0].body[0])] == [2, 4]
    assert all(isinstance(n, nn.BatchNorm2d) for n in thrice.encoders[0].body[0].norms)
    thrice.load_state_dict(once.state_dict(), strict=False)  # same convs, only the unrolling differs
    x = torch.randn(1, 1, 32, 64)
    with torch.no_grad():
        assert not torch.allclose(once(x), thrice(x))


class SharedNormRCL(nn.Module):
    """The reference code's RCL, one conv + BatchNorm + ReLU for every step: what the fix replaced."""

    def __init__(self, channels: int, steps: int):
        super().__init__()
        self.conv, self.steps = conv_norm_act(channels, channels, "batch"), steps

    def forward(self, x):
        state = self.conv(x)
        for _ in range(self.steps):
            state = self.conv(x + state)
        return state


def _train_eval_gap(module: nn.Module, seed: int) -> float:
    """Relative gap of train- and eval-mode outputs once the running statistics have settled."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: settled after a few batches, whatever the init
    generator = torch.Generator().manual_seed(seed)

    def batch():
        return torch.randn(32, 8, 8, 8, generator=generator) + 2

    module.train()
    with torch.no_grad():
        for _ in range(20):
            module(batch())
        x = batch()
        trained = module(x)
        evaluated = module.eval()(x)
    return float((trained - evaluated).norm() / trained.norm())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_recurrent_unit_agrees_in_train_and_eval_mode_like_a_plain_conv_bn(seed):
    torch.manual_seed(seed)
    rcl, shared, plain = (
        r2unet.RecurrentConv(8, "batch", steps=2),
        SharedNormRCL(8, 2),
        conv_norm_act(8, 8, "batch"),
    )
    with torch.no_grad():  # one conv for all three: only the norms differ
        shared.conv[0].weight.copy_(rcl.conv.weight)
        plain[0].weight.copy_(rcl.conv.weight)
    reference = _train_eval_gap(plain, seed)
    assert _train_eval_gap(rcl, seed) <= 1.25 * reference + 0.005
    # One BatchNorm shared by the steps averages three input distributions: a gap several times larger.
    assert _train_eval_gap(shared, seed) > 2 * reference


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
