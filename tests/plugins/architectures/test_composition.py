"""Blocks composed into unet and unetpp by name, checked before anything is built; the seed presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.cli.app import main
from harness.errors import ConfigError
from harness.plugins import load_plugins
from plugins.architectures.unet import UNet
from plugins.architectures.unetpp import UNetPlusPlus
from plugins.blocks.cba import CrossBranchAttention
from plugins.blocks.gc import GlobalContext
from plugins.blocks.rdam import ResidualDenseAttention
from plugins.blocks.residual import ResidualDoubleConv
from plugins.blocks.se import SEBlock
from tests_support import TINY_ARGS

REGISTRY = load_plugins()
SMALL = {"width": 4, "depth": 2}


def spec(name: str):
    return REGISTRY.get("architecture", name)


def build(name: str, values=None, cli=None) -> nn.Module:
    torch.manual_seed(0)
    arch = spec(name)
    return arch.build(arch.parse_params(values, cli, registry=REGISTRY), in_channels=1, num_classes=5)


@pytest.mark.parametrize(("name", "skeleton"), [("unet", UNet), ("unetpp", UNetPlusPlus)])
def test_default_blocks_build_the_same_model_as_before(name, skeleton):
    params = spec(name).parse_params(registry=REGISTRY)
    assert (params.encoder_block, params.bottleneck, params.decoder_block, params.skip_fusion) == (
        "conv",
        "conv",
        "conv",
        "none",
    )
    composed = build(name)
    torch.manual_seed(0)
    plain = skeleton(params, 1, 5)  # the skeleton's own double convs, no block registry involved
    assert list(composed.state_dict()) == list(plain.state_dict())
    assert sum(p.numel() for p in composed.parameters()) == spec(name).params_count


def test_unet_block_flags_change_the_built_modules():
    model = build(
        "unet",
        SMALL
        | {"encoder_block": "se", "bottleneck": "rdam+gc", "decoder_block": "residual", "skip_fusion": "cba"},
    )
    assert all(isinstance(m, SEBlock) for m in model.encoders)
    chain = model.bottleneck[0]
    assert isinstance(chain, nn.Sequential)
    assert isinstance(chain[0], ResidualDenseAttention) and isinstance(chain[1], GlobalContext)
    assert isinstance(chain[1].project, nn.Identity)  # the chain's later parts keep the width
    assert all(isinstance(m, ResidualDoubleConv) for m in model.decoders)
    assert [(g.project[0].in_channels, g.project[0].out_channels) for g in model.gates] == [(16, 8), (8, 4)]
    assert all(isinstance(g, CrossBranchAttention) for g in model.gates)


def test_unetpp_block_flags_reach_encoder_bottleneck_nodes_and_skips():
    model = build(
        "unetpp",
        SMALL
        | {"encoder_block": "dilated", "bottleneck": "aspp", "decoder_block": "se", "skip_fusion": "cba"},
    )
    assert type(model.encoders[-1]).__name__ == "ASPP"
    assert all(type(m).__name__ == "ParallelDilated" for m in model.encoders[:-1])
    assert all(isinstance(node, SEBlock) for level in model.nodes for node in level)
    # X^{i,j} fuses the j dense skips of level i with X^{i+1,j-1}.
    channels = [
        [(f.project[0].out_channels, f.project[0].in_channels) for f in level] for level in model.fusions
    ]
    assert channels == [[(4, 8), (8, 8)], [(8, 16)]]


def test_skip_fusion_changes_the_output_only_through_the_skips():
    images = torch.randn(2, 1, 32, 64)
    model = build("unet", SMALL | {"skip_fusion": "cba"}).eval()
    with torch.no_grad():
        fused = model(images)
        for gate in model.gates:  # a skip that ignores the fusion: the plain U-Net's concatenation
            gate.forward = lambda skip, gating: skip
        plain = model(images)
    assert fused.shape == plain.shape and not torch.allclose(fused, plain)


def test_nested_params_from_the_command_line_reach_the_blocks():
    cli = {
        "encoder_block": "se",
        "encoder_params.reduction": "1",
        "bottleneck": "rdam+gc",
        "bottleneck_params.rdam.growth": "8",
        "bottleneck_params.gc.reduction": "2",
        "decoder_block": "dilated",
        "decoder_params.rates": "1,3",
        "decoder_params.mode": "serial",
    }
    params = spec("unet").parse_params(SMALL, cli, registry=REGISTRY)
    assert params.encoder_params == {"reduction": 1}
    assert params.bottleneck_params == {
        "rdam": {"growth": 8, "layers": 3, "reduction": 8},
        "gc": {"reduction": 2},
    }
    assert params.decoder_params == {"rates": [1, 3], "mode": "serial"}
    model = spec("unet").build(params, in_channels=1, num_classes=5)
    assert model.encoders[1].se.mlp[0].out_channels == 8  # 8 channels / reduction 1
    assert model.bottleneck[0][0].dense.layers[1][0].in_channels == 16 + 8
    dilations = [layer[0].dilation[0] for layer in model.decoders[0]]
    assert dilations == [1, 3]
    # What the store keeps reads back to the same params.
    assert spec("unet").parse_params(params.model_dump(mode="json"), registry=REGISTRY) == params


def test_toml_style_nested_params_and_norm_reach_the_blocks():
    params = spec("unet").parse_params(
        SMALL | {"norm": "group", "encoder_block": "se", "encoder_params": {"reduction": 2}},
        registry=REGISTRY,
    )
    model = spec("unet").build(params, in_channels=1, num_classes=5)
    assert any(isinstance(m, nn.GroupNorm) for m in model.encoders[0].modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        (
            {"bottleneck": "asp"},
            r"unknown block 'asp' for bottleneck; did you mean 'aspp'\? \(blocks for bottleneck:",
        ),
        ({"encoder_block": "se+rdm"}, "unknown block 'rdm' for encoder_block; did you mean 'rdam'?"),
        ({"skip_fusion": "cbaa"}, "did you mean 'cba'?"),
        ({"encoder_block": "cba"}, "block 'cba' cannot be the encoder_block: it declares roles skip"),
        (
            {"encoder_block": "aspp"},
            r"cannot be the encoder_block: it declares roles bottleneck \(blocks for encoder:",
        ),
        ({"skip_fusion": "se"}, "block 'se' cannot be the skip_fusion"),
        ({"skip_fusion": "cba+cba"}, "name each block once"),
        ({"skip_fusion": "cba+se"}, "a skip fusion is one block"),
        ({"bottleneck": "rdam+"}, "name each block once"),
        (
            {"encoder_block": "se", "encoder_params.reductoin": "2"},
            "encoder_params: unknown block parameter 'reductoin' for 'se'; did you mean 'reduction'?",
        ),
        (
            {"encoder_block": "se", "encoder_params.reduction": "0"},
            "encoder_params: bad block parameter for 'se'",
        ),
        ({"decoder_params.reduction": "2"}, "unknown block parameter 'reduction' for 'conv'"),
        (
            {"bottleneck": "rdam+gc", "bottleneck_params.growth": "8"},
            r"names 'growth', which is not among rdam\+gc",
        ),
        ({"skip_params.reduction": "2"}, "skip_params given but skip_fusion is 'none'"),
        ({"bottleneck": "gc"}, r"block 'gc' is an attachment .* the bottleneck alone: use conv\+gc"),
        ({"encoder_block": "gc+se"}, r"'gc' is an attachment .* encoder_block first in a chain: use se\+gc"),
        (
            {"encoder_parms.reduction": "2"},
            "unknown architecture parameter 'encoder_parms.reduction' for 'unet'",
        ),
    ],
)
def test_bad_choices_fail_at_parse_time_with_one_line(cli, message):
    with pytest.raises(ConfigError, match=message) as caught:
        spec("unet").parse_params(SMALL, cli, registry=REGISTRY)
    assert "\n" not in str(caught.value)


def test_an_attachment_alone_in_a_stage_fails_the_run_before_anything_is_built(capsys, store_path):
    code = main(["run", *TINY_ARGS, "--arch-param", "encoder_block=gc", "--store", str(store_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "use conv+gc" in err[0]
    assert not store_path.parent.exists()


def test_a_bad_block_fails_the_run_before_anything_is_built(capsys, store_path):
    code = main(["run", *TINY_ARGS, "--arch-param", "bottleneck=asp", "--store", str(store_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "did you mean 'aspp'?" in err[0]
    assert not store_path.parent.exists()


@pytest.mark.parametrize(
    ("name", "choices"),
    [("seed-full", ("dilated", "rdam+gc", "se", "cba")), ("seed-lite", ("se", "se+gc", "se", "none"))],
)
def test_presets_are_named_configurations(name, choices):
    params = spec(name).parse_params(registry=REGISTRY)
    assert (params.encoder_block, params.bottleneck, params.decoder_block, params.skip_fusion) == choices
    model = build(name)
    assert sum(p.numel() for p in model.parameters()) == spec(name).params_count
    # Everything stays overridable: the preset is defaults, not a new model.
    overridden = spec(name).parse_params({"width": 8, "decoder_block": "conv"}, registry=REGISTRY)
    assert overridden.decoder_block == "conv"
    assert spec(name).multiple(params) == 16


@pytest.mark.parametrize("name", ["seed-full", "seed-lite"])
def test_presets_train_forward_and_backward(name):
    model = build(name, SMALL).train()
    images, masks = torch.randn(2, 1, 32, 64), torch.randint(0, 5, (2, 32, 64))
    out = model(images)
    logits = out[-1] if isinstance(out, list) else out
    assert logits.shape == (2, 5, 32, 64)
    nn.functional.cross_entropy(logits, masks).backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    assert isinstance(model.eval()(images), torch.Tensor)


def test_seed_full_uses_its_blocks():
    model = build("seed-full", SMALL)
    assert isinstance(model, UNetPlusPlus)
    assert [type(m).__name__ for m in model.encoders[:-1]] == ["ParallelDilated"] * 2
    assert [type(m).__name__ for m in model.encoders[-1]] == ["ResidualDenseAttention", "GlobalContext"]
    assert all(isinstance(node, SEBlock) for level in model.nodes for node in level)
    assert all(isinstance(f, CrossBranchAttention) for level in model.fusions for f in level)


def test_harness_run_one_tiny_epoch_of_seed_lite(capsys, store_path):
    code = main(["run", "--arch", "seed-lite", *TINY_ARGS, "--format", "json", "--store", str(store_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert '"status": "finished"' in captured.out
