"""The built-in blocks: each does what its paper says, beyond the shapes the conformance kit checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.plugins import load_plugins
from plugins.architectures.layers import DoubleConv
from plugins.blocks.common import head_count, sinusoidal_positions

REGISTRY = load_plugins()
BUILTIN_BLOCKS = {
    "conv": {"encoder", "bottleneck", "decoder"},
    "residual": {"encoder", "bottleneck", "decoder"},
    "se": {"encoder", "bottleneck", "decoder"},
    "dilated": {"encoder", "bottleneck", "decoder"},
    "inception": {"encoder", "bottleneck", "decoder"},
    "gc": {"encoder", "bottleneck", "decoder"},
    "aspp": {"bottleneck"},
    "rdam": {"encoder", "bottleneck", "decoder"},
    "mhsa": {"bottleneck"},
    "transformer": {"bottleneck"},
    "cba": {"skip"},
    "mlp": {"encoder", "bottleneck", "decoder"},
}


def make(name: str, a: int, b: int, norm: str = "batch", **values) -> nn.Module:
    torch.manual_seed(0)
    spec = REGISTRY.get("block", name)
    return spec.build(spec.parse_params(values), a, b, norm=norm)


def test_every_block_of_the_issue_is_registered_with_its_roles():
    roles = {entry.spec.name: set(entry.spec.roles) for entry in REGISTRY.all("block") if entry.builtin}
    assert roles == BUILTIN_BLOCKS


def test_gc_alone_is_the_only_attachment_and_every_summary_cites_its_source():
    builtin = [entry.spec for entry in REGISTRY.all("block") if entry.builtin]
    assert {spec.name for spec in builtin if spec.placement == "attachment"} == {"gc"}
    for spec in builtin:  # a paper's year, or the report the block comes from
        assert any(str(year) in spec.summary for year in range(2014, 2022)) or "report" in spec.summary


def test_conv_is_unets_double_conv():
    block = make("conv", 3, 8)
    assert isinstance(block, DoubleConv)
    assert sum(p.numel() for p in block.parameters()) == sum(
        p.numel() for p in DoubleConv(3, 8, "batch").parameters()
    )


def test_residual_identity_path():
    block = make("residual", 8, 8, zero_init=True).eval()
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, 8, 6, 10)
    # With the body's last scale at zero, only the identity shortcut is left.
    assert torch.allclose(block(x), torch.relu(x))
    widening = make("residual", 4, 8)
    assert isinstance(widening.shortcut[0], nn.Conv2d) and widening.shortcut[0].kernel_size == (1, 1)


def test_se_scales_the_conv_output_by_channel_gates_in_0_1():
    block = make("se", 4, 16, reduction=2).eval()
    x = torch.randn(2, 4, 8, 12)
    with torch.no_grad():
        features = block.conv(x)
        gates = block.se.gates(features)
        out = block(x)
    assert gates.shape == (2, 16, 1, 1)
    assert bool(((gates > 0) & (gates < 1)).all())
    assert torch.allclose(out, features * gates)
    assert block.se.mlp[0].out_channels == 8  # 16 channels / reduction 2


def _receptive_radius(block: nn.Module, channels: int, size: int = 31) -> int:
    """How far from the centre an input pixel can change the centre output (along a row)."""
    x = torch.randn(1, channels, size, size, requires_grad=True)
    centre = size // 2
    block.eval()(x)[0, :, centre, centre].sum().backward()
    reached = x.grad[0].abs().sum(dim=0)[centre] > 0
    return max(abs(i - centre) for i in range(size) if reached[i])


@pytest.mark.parametrize(("mode", "radius"), [("serial", 1 + 2 + 4), ("parallel", 4)])
def test_dilated_rates_set_the_receptive_field(mode, radius):
    block = make("dilated", 4, 8, rates=[1, 2, 4], mode=mode)
    dilations = sorted(
        m.dilation[0] for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    )
    assert dilations == [1, 2, 4]
    assert _receptive_radius(block, 4) == radius


def test_inception_branches_split_the_output_and_use_1_3_5_and_pool():
    block = make("inception", 4, 10)
    kernels = [
        sorted({m.kernel_size[0] for m in branch.modules() if isinstance(m, nn.Conv2d)})
        for branch in block.branches
    ]
    assert kernels == [[1], [1, 3], [1, 5], [1]]
    assert isinstance(block.branches[3][0], nn.MaxPool2d)
    x = torch.randn(2, 4, 9, 7)
    assert [branch(x).shape[1] for branch in block.branches] == [3, 3, 2, 2]


def test_gc_adds_one_context_vector_to_every_position():
    block = make("gc", 4, 8).eval()
    nn.init.normal_(block.transform[-1].weight)  # the paper starts it at zero: the term would vanish
    x = torch.randn(2, 4, 6, 10)
    with torch.no_grad():
        term = block(x) - block.project(x)
    assert term.abs().max() > 1e-3
    assert torch.allclose(term, term[:, :, :1, :1].expand_as(term), atol=1e-5)
    fresh = make("gc", 8, 8).eval()
    assert torch.equal(fresh(x.repeat(1, 2, 1, 1)), x.repeat(1, 2, 1, 1))  # zero-initialised: the identity


def test_aspp_has_a_branch_per_rate_and_optional_image_pooling():
    block = make("aspp", 8, 16, rates=[1, 3, 5])
    atrous = [m.dilation[0] for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert atrous == [1, 3, 5]
    assert len(block.branches) == 1 + 3 + 1
    assert len(make("aspp", 8, 16, rates=[2], pooling=False).branches) == 2
    x = torch.randn(2, 8, 5, 7)
    assert block(x).shape == (2, 16, 5, 7)


def test_rdam_is_dense_then_attended_then_residual():
    block = make("rdam", 8, 8, growth=4, layers=3)
    assert [layer[0].in_channels for layer in block.dense.layers] == [8, 12, 16]
    assert block.fuse[0].in_channels == 8 + 3 * 4
    nn.init.zeros_(block.fuse[1].weight)  # the fused features vanish: only the residual is left
    nn.init.zeros_(block.fuse[1].bias)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(block.train()(x), x)


def test_rdam_gates_are_cbams_average_and_max_channel_gate_and_a_normalised_spatial_gate():
    block = make("rdam", 8, 8).eval()
    assert isinstance(block.spatial.conv[1], nn.BatchNorm2d) and block.spatial.conv[0].bias is None
    assert isinstance(make("rdam", 8, 8, norm="group").spatial.conv[1], nn.GroupNorm)
    flat = torch.ones(1, 8, 4, 4)
    peaked = flat.clone()
    peaked[..., 0, 0] += 15.0  # the same average as `flat` plus 1 everywhere, a much higher maximum
    peaked -= 15.0 / 16
    with torch.no_grad():
        assert torch.allclose(peaked.mean(dim=(2, 3)), flat.mean(dim=(2, 3)))
        assert not torch.allclose(block.channel.gates(peaked), block.channel.gates(flat))


def _far_pixel_reaches(block: nn.Module, channels: int, size=(8, 12)) -> bool:
    """Whether changing the bottom-right input pixel changes the top-left output."""
    block.eval()
    x = torch.randn(1, channels, *size)
    changed = x.clone()
    changed[..., -1, -1] += 5.0
    with torch.no_grad():
        return not torch.allclose(block(x)[..., 0, 0], block(changed)[..., 0, 0])


def test_attention_and_mlp_blocks_mix_all_positions_where_a_conv_does_not():
    assert _far_pixel_reaches(make("mhsa", 8, 16), 8)
    assert _far_pixel_reaches(make("transformer", 8, 16), 8)
    assert _far_pixel_reaches(make("mlp", 8, 16), 8)
    assert not _far_pixel_reaches(make("conv", 8, 16), 8)


@pytest.mark.parametrize("name", ["mhsa", "transformer", "mlp"])
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 16), (20, 12)])
def test_size_dependent_blocks_work_at_any_size(name, size):
    block = make(name, 8, 16).eval()
    with torch.no_grad():
        out = block(torch.randn(2, 8, *size))
    assert out.shape == (2, 16, *size) and bool(torch.isfinite(out).all())


def test_position_codes_tell_positions_apart_and_the_heads_divide_the_width():
    codes = sinusoidal_positions(5, 7, 10, like=torch.zeros(1))
    assert codes.shape == (35, 10)
    assert len({tuple(row.tolist()) for row in codes.round(decimals=5)}) == 35
    assert (head_count(16, 4), head_count(12, 8), head_count(7, 4)) == (4, 6, 1)
    assert make("transformer", 8, 12, heads=8).layers[0].heads == 6
    assert make("mhsa", 8, 48, heads=8).attend.heads == 6  # width 48 / reduction 4 = 12


@pytest.mark.parametrize("name", ["mhsa", "transformer"])
def test_attention_blocks_are_not_blind_to_position(name):
    # Without positions self-attention is permutation-equivariant: a flipped input would give the
    # flipped output. Sine codes (transformer) and relative logits (mhsa) break that symmetry.
    block = make(name, 8, 8).eval()
    x = torch.randn(1, 8, 4, 6)
    with torch.no_grad():
        assert not torch.allclose(block(x.flip(-1)), block(x).flip(-1), atol=1e-4)


def test_mhsa_is_botnets_bottleneck_not_a_transformer_layer():
    block = make("mhsa", 8, 32)
    kinds = {type(m) for m in block.modules()}
    assert nn.LayerNorm not in kinds and nn.GELU not in kinds and nn.Linear not in kinds  # no MLP
    assert nn.BatchNorm2d in kinds
    assert block.reduce[0].kernel_size == (1, 1) and block.reduce[0].out_channels == 32 // 4
    assert block.expand[0].kernel_size == (1, 1) and block.expand[0].out_channels == 32
    nn.init.zeros_(block.expand[1].weight)  # the body's last norm at zero: only the shortcut is left
    x = torch.randn(2, 8, 4, 6)
    with torch.no_grad():
        assert torch.allclose(block.eval()(x), torch.relu(block.shortcut(x)))


def test_mhsa_relative_logits_shift_the_attention_with_the_input():
    attention = make("mhsa", 8, 16, max_distance=4).eval().attend
    height, width, shift = 7, 9, (2, 3)
    x = torch.zeros(1, 4, height, width)
    x[:, :, 1:4, 1:5] = torch.randn(4, 3, 4)  # a pattern away from the bottom-right edges
    shifted = x.roll(shift, dims=(2, 3))  # the zeros that wrap round stay zeros: a pure shift
    with torch.no_grad():
        before = attention.attention(x)[0][0, 0].log()  # image 0, head 0: (queries, keys)
        after = attention.attention(shifted)[0][0, 0].log()
    grid = torch.arange(height * width).view(height, width)
    inner = grid[: height - shift[0], : width - shift[1]].flatten()
    moved = grid[shift[0] :, shift[1] :].flatten()
    # Every query's log-weights over the keys move with it (up to the softmax's normaliser per query).
    first = before[inner][:, inner] - before[inner][:, inner[:1]]
    second = after[moved][:, moved] - after[moved][:, moved[:1]]
    assert torch.allclose(first, second, atol=1e-4)
    assert first.abs().max() > 1e-2  # and the pattern is not flat


def test_mlp_mixes_the_real_tokens_of_a_map_within_the_grid():
    block = make("mlp", 8, 8, grid=8).eval()
    x = torch.randn(2, 8, 4, 6)
    with torch.no_grad():
        before = block.mix_tokens(x)
        # The grid's slots beyond the 4x6 real tokens get other weights: nothing may change.
        unused = torch.ones(8, 8, dtype=torch.bool)
        unused[:4, :6] = False
        block.token_mlp[0].weight[:, unused.flatten()] = 10.0
        block.token_mlp[2].weight[unused.flatten()] = 10.0
        assert torch.allclose(block.mix_tokens(x), before)
        # Each real token has its own weights (a pooled-and-duplicated grid would tie neighbours).
        block.token_mlp[0].weight[:, 0] += 1.0
        assert not torch.allclose(block.mix_tokens(x)[..., 0, 0], before[..., 0, 0])
        assert torch.allclose(block.mix_tokens(x)[..., 1, 1] * 0, before[..., 1, 1] * 0)


def test_mlp_pools_only_an_axis_longer_than_its_grid():
    block = make("mlp", 8, 8, grid=4).eval()
    with torch.no_grad():
        assert block.mix_tokens(torch.randn(1, 8, 3, 12)).shape == (1, 8, 3, 12)


def test_cba_fuses_both_branches_with_weights_from_both():
    block = make("cba", 8, 16).eval()
    skip, gating = torch.randn(2, 8, 8, 12), torch.randn(2, 16, 4, 6)
    with torch.no_grad():
        out = block(skip, gating)
        weights, g = block.weights(skip, gating)
        assert out.shape == skip.shape and g.shape == skip.shape
        assert bool(((weights > 0) & (weights < 1)).all())
        assert torch.allclose(out, weights * skip + (1 - weights) * g)
        assert not torch.allclose(block(skip, gating + 1), out)
        assert not torch.allclose(block(skip + 1, gating), out)
        # The weights themselves depend on both branches.
        assert not torch.allclose(block.weights(skip, gating * 2)[0], weights)
        assert not torch.allclose(block.weights(skip * 2, gating)[0], weights)


@pytest.mark.parametrize("name", sorted(BUILTIN_BLOCKS))
def test_blocks_use_the_architectures_norm(name):
    block = make(name, 8, 16, norm="group")
    kinds = {type(m) for m in block.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
