"""SegNet: the size contract, and a decoder that up-samples with the encoder's pooling indices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.cost import count_params
from plugins.architectures import segnet

SPEC = segnet.harness_architectures()[0]


def _build(**values) -> nn.Module:
    return SPEC.build(SPEC.parse_params(values), in_channels=1, num_classes=5)


@pytest.mark.parametrize(("depth", "size"), [(4, (64, 120)), (2, (64, 126))])
def test_other_sizes_raise_naming_the_multiple(depth, size):
    assert SPEC.multiple(SPEC.parse_params({"depth": depth})) == 2**depth
    with pytest.raises(ValueError, match=f"divisible by {2**depth}"):
        _build(width=4, depth=depth)(torch.randn(1, 1, *size))


def test_default_size_and_spec_flags():
    assert 1e6 <= count_params(_build()) <= 10e6
    assert SPEC.compiles and not SPEC.deep_supervision
    assert count_params(_build(width=8)) < count_params(_build(width=16))


def _record_pooling(model: nn.Module):
    pooled, unpooled = [], []
    model.pool.register_forward_hook(lambda _m, _i, out: pooled.append(out))
    for unpool in model.unpools:
        unpool.register_forward_hook(lambda _m, inputs, out: unpooled.append((*inputs, out)))
    return pooled, unpooled


def test_decoder_unpools_with_the_encoders_indices(monkeypatch):
    model = _build(width=4, depth=3).eval()
    assert sum(isinstance(m, nn.MaxUnpool2d) for m in model.modules()) == 3
    pooled, unpooled = _record_pooling(model)

    def no_concat(*args, **kwargs):
        raise AssertionError("SegNet has no skip concatenation")

    monkeypatch.setattr(torch, "cat", no_concat)
    with torch.no_grad():
        model(torch.randn(2, 1, 32, 64))
    assert len(pooled) == len(unpooled) == 3
    for (_, indices), (values, used, out) in zip(reversed(pooled), unpooled, strict=True):
        assert torch.equal(used, indices)  # the deepest pool's indices feed the first unpool
        # Every value lands at its argmax position and the rest of the map stays zero.
        expected = torch.zeros_like(out).flatten(2).scatter(2, indices.flatten(2), values.flatten(2))
        assert torch.equal(out, expected.view_as(out))
        assert (out != 0).sum() <= values.numel()


def test_train_and_eval_modes():
    model = _build(width=4, dropout=0.5)
    x = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))  # dropout active
        model.eval()
        assert torch.equal(model(x), model(x))


def test_compiles_whole_graph_forward_and_backward():
    model = _build(width=4, depth=1, convs=1).eval()
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
