"""U-Net++: nested dense skips, the deep-supervision output contract, cost and compilability."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.cost import count_params, forward_gflops
from harness.plugins import load_plugins
from plugins.architectures.layers import DoubleConv
from plugins.architectures.unetpp import harness_architectures

NUM_CLASSES = 5
SPEC = harness_architectures()[0]
REGISTRY = load_plugins(autoload=False)  # the blocks the params name are checked against it


def make(**values) -> nn.Module:
    torch.manual_seed(0)
    return SPEC.build(SPEC.parse_params(values, registry=REGISTRY), in_channels=1, num_classes=NUM_CLASSES)


def test_spec_declares_the_contract():
    params = SPEC.parse_params({"depth": 3}, registry=REGISTRY)
    assert SPEC.name == "unetpp"
    assert SPEC.deep_supervision and SPEC.compiles
    assert SPEC.multiple(params) == 8


@pytest.mark.parametrize(("deep_supervision", "heads"), [(True, 3), (False, 1)])
def test_training_returns_a_list_and_eval_a_tensor(deep_supervision, heads):
    model = make(width=4, depth=3, deep_supervision=deep_supervision).train()
    images = torch.randn(2, 1, 32, 64)
    outputs = model(images)
    assert isinstance(outputs, list) and len(outputs) == heads
    assert all(o.shape == (2, NUM_CLASSES, 32, 64) for o in outputs)
    model.eval()
    assert isinstance(model(images), torch.Tensor)


def _heads_by_hand(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    top = model._grid(images)[0]  # X^{0,0..depth}
    return [head(node) for head, node in zip(model.heads, top[1:], strict=True)]


@pytest.mark.parametrize("inference", ["last", "mean"])
def test_eval_output_follows_the_inference_mode(inference):
    model = make(width=4, depth=3, deep_supervision=True, inference=inference).eval()
    images = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        heads = _heads_by_hand(model, images)
        out = model(images)
    expected = torch.stack(heads).mean(dim=0) if inference == "mean" else heads[-1]
    assert torch.allclose(out, expected, atol=1e-6)
    # The heads differ, so "mean" and "last" are distinguishable.
    assert not torch.allclose(heads[0], heads[-1], atol=1e-3)


def test_training_heads_are_ordered_coarse_to_final():
    model = make(width=4, depth=3, deep_supervision=True).train()
    for module in model.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0  # training-mode dropout would make two calls differ
    images = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        outputs = model(images)
        heads = _heads_by_hand(model, images)
    for output, head in zip(outputs, heads, strict=True):
        assert torch.allclose(output, head, atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 4, 5])
def test_nested_grid_has_one_block_per_node(depth):
    model = make(width=4, depth=depth)
    blocks = sum(isinstance(m, DoubleConv) for m in model.modules())
    assert blocks == (depth + 1) * (depth + 2) // 2


def test_nodes_see_every_earlier_node_of_their_level():
    # X^{i,j} concatenates j same-level nodes and one up-sampled node: (j + 1) * width_i channels.
    model = make(width=4, depth=3)
    for level, nodes in enumerate(model.nodes):
        for column, node in enumerate(nodes, start=1):
            assert node[0][0].in_channels == (column + 1) * 4 * 2**level


def test_default_cost_is_in_range():
    model = make()
    assert 1e6 <= count_params(model) <= 10e6
    assert 0 < forward_gflops(model) < 10


def test_backward_gives_finite_gradients_everywhere():
    model = make(width=4, depth=3, deep_supervision=True).train()
    images, masks = torch.randn(2, 1, 32, 64), torch.randint(0, NUM_CLASSES, (2, 32, 64))
    sum(nn.functional.cross_entropy(o, masks) for o in model(images)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_compiles_forward_and_backward():
    # The smallest model, without BatchNorm or dropout: BatchNorm's training kernels roughly double a
    # cold compile on CPU (the conformance kit compiles the default norm), and no dropout lets the
    # compiled training output be compared with eager's without a second (eval) compilation.
    model = make(width=4, depth=1, norm="none", dropout=0.0, deep_supervision=True).train()
    images = torch.randn(2, 1, 16, 32)
    torch._dynamo.reset()
    try:
        outputs = torch.compile(model)(images)
        sum(o.square().mean() for o in outputs).backward()
    finally:
        torch._dynamo.reset()
    with torch.no_grad():
        for fast, slow in zip(outputs, model(images), strict=True):
            assert torch.allclose(fast, slow, atol=1e-4)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
