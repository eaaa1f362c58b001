"""DeepLabV3+: output stride through dilation, the ASPP branches and the image-pooling branch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.errors import ConfigError
from harness.inference.cost import count_params
from plugins.architectures import deeplab

SPEC = deeplab.harness_architectures()[0]
TINY = {"width": 4, "blocks": [1, 1, 1, 1]}


def _build(**values) -> nn.Module:
    return SPEC.build(SPEC.parse_params(values), in_channels=1, num_classes=5)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("shape", [(2, 1, 64, 128), (1, 1, 32, 64)])
def test_logits_have_the_input_size(shape, output_stride):
    model = _build(**TINY, output_stride=output_stride).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 5, *shape[2:])


@pytest.mark.parametrize(("output_stride", "size"), [(8, (64, 124)), (16, (64, 120))])
def test_other_sizes_raise_naming_the_multiple(output_stride, size):
    assert SPEC.multiple(SPEC.parse_params({"output_stride": output_stride})) == output_stride
    with pytest.raises(ValueError, match=f"divisible by {output_stride}"):
        _build(**TINY, output_stride=output_stride)(torch.randn(1, 1, *size))


def test_params_are_validated():
    for bad in ({"output_stride": 32}, {"atrous_rates": []}, {"blocks": [2, 2, 2]}):
        with pytest.raises(ConfigError):
            SPEC.parse_params(bad)
    assert SPEC.parse_params(cli={"atrous_rates": "1,3", "output_stride": "16"}).atrous_rates == [1, 3]


def test_default_size_and_spec_flags():
    assert 1e6 <= count_params(_build()) <= 10e6
    assert SPEC.compiles and not SPEC.deep_supervision
    assert count_params(_build(width=8)) < count_params(_build(width=16))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_sets_the_backbone_feature_stride(output_stride):
    model = _build(**TINY, output_stride=output_stride).eval()
    seen = {}
    model.backbone.register_forward_hook(lambda _m, _i, out: seen.update(low=out[0], high=out[1]))
    with torch.no_grad():
        model(torch.randn(1, 1, 64, 128))
    assert seen["low"].shape[-2:] == (16, 32)
    assert seen["high"].shape[-2:] == (64 // output_stride, 128 // output_stride)
    convs = [stage[0].conv1[0] for stage in model.backbone.stages[1:]]
    expected = {16: [(2, 1), (2, 1), (1, 2)], 8: [(2, 1), (1, 2), (1, 4)]}[output_stride]
    assert [(conv.stride[0], conv.dilation[0]) for conv in convs] == expected


def test_blocks_per_stage_are_configurable():
    model = _build(width=4, blocks=[1, 2, 3, 1])
    assert [len(stage) for stage in model.backbone.stages] == [1, 2, 3, 1]


def test_aspp_has_a_branch_per_rate_plus_two():
    rates = [1, 2, 3, 5]
    aspp = _build(**TINY, atrous_rates=rates).aspp
    assert len(aspp.branches) == len(rates) + 2
    atrous = [branch[0].dilation[0] for branch in aspp.branches[1:-1]]
    assert atrous == rates and aspp.branches[0][0].kernel_size == (1, 1)
    assert isinstance(aspp.branches[-1], deeplab.ImagePooling)


def test_image_pooling_works_at_batch_one_in_training():
    model = _build(**TINY, norm="batch").train()
    pooled = []
    model.aspp.branches[-1].register_forward_hook(lambda _m, _i, out: pooled.append(out))
    out = model(torch.randn(1, 1, 64, 128))
    assert out.shape == (1, 5, 64, 128)
    context = pooled[0]
    assert context.shape[-2:] == (8, 16)  # spread over the whole OS8 map, the same at every pixel
    assert torch.equal(context, context[..., :1, :1].expand_as(context))


def test_train_and_eval_modes():
    model = _build(**TINY, dropout=0.5)
    x = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_compiles_whole_graph_forward_and_backward():
    model = _build(**TINY, atrous_rates=[2]).eval()
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
