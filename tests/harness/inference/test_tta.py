"""Test-time augmentation: each transform inverts exactly, a model equivariant by construction gives the
same output with and without TTA, and the transforms run are those the frame's shape allows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.inference.tta import FLIPS, TURNS, describe, mean_log_probs, transforms_for, with_tta


class Equivariant(nn.Module):
    """A 3x3 conv whose kernel is symmetric under every flip and 90° turn (a D4-invariant stencil) then a
    1x1 conv: flipping or turning the input flips or turns the output, exactly."""

    def __init__(self, classes: int = 5):
        super().__init__()
        torch.manual_seed(0)
        centre, edge, corner = torch.randn(3, 8, 1)
        kernel = torch.stack(
            [
                torch.stack([corner, edge, corner], -1),
                torch.stack([edge, centre, edge], -1),
                torch.stack([corner, edge, corner], -1),
            ],
            -2,
        ).squeeze(-3)  # (8, 3, 3)
        self.stencil = nn.Conv2d(1, 8, 3, padding=1, bias=True)
        self.stencil.weight.data = kernel.unsqueeze(1).to(self.stencil.weight.dtype)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.stencil(x)))


@pytest.mark.parametrize("transform", FLIPS + TURNS, ids=lambda t: t.name)
def test_every_transform_is_inverted_exactly(transform):
    x = torch.randn(2, 5, 16, 16)
    assert torch.equal(transform.invert(transform.apply(x)), x)
    if transform.name != "identity":
        assert not torch.equal(transform.apply(x), x)  # it does change the image


@pytest.mark.parametrize(("mode", "size"), [("flips", (24, 40)), ("d4", (24, 24)), ("d4", (24, 40))])
def test_an_equivariant_model_gives_the_same_output_with_and_without_tta(mode, size):
    model = Equivariant().eval()
    x = torch.randn(3, 1, *size)
    with torch.no_grad():
        plain = torch.log_softmax(model(x), dim=1)
        augmented = with_tta(model, mode)(x)
    assert torch.allclose(augmented, plain, atol=1e-5)
    assert torch.equal(augmented.argmax(1), plain.argmax(1))


def test_a_model_that_is_not_equivariant_changes_and_each_output_is_mapped_back():
    model = nn.Conv2d(1, 5, 3, padding=1).eval()  # a random kernel: not symmetric
    x = torch.randn(2, 1, 16, 24)
    with torch.no_grad():
        augmented = with_tta(model, "flips")(x)
        by_hand = mean_log_probs([t.invert(model(t.apply(x))) for t in FLIPS])
        plain = torch.log_softmax(model(x), dim=1)
    assert torch.allclose(augmented, by_hand, atol=1e-6)
    assert not torch.allclose(augmented, plain, atol=1e-3)


def test_the_transforms_follow_the_frame_shape():
    names = lambda mode, h, w: [t.name for t in transforms_for(mode, h, w)]  # noqa: E731
    assert names("none", 64, 128) == ["identity"]
    assert names("flips", 64, 128) == ["identity", "hflip", "vflip", "rot180"]
    assert names("d4", 64, 128) == names("flips", 64, 128)  # 90° turns only on square frames
    assert len(names("d4", 64, 64)) == 8 and "rot90" in names("d4", 64, 64)
    assert describe("d4", 64, 128) == (
        "tta d4 on 64x128: identity, hflip, vflip, rot180 (90° turns need a square frame)"
    )
    model = nn.Identity()
    assert with_tta(model, "none") is model
    with pytest.raises(ValueError, match="unknown TTA mode 'd8'"):
        with_tta(model, "d8")


def test_mean_log_probs_averages_probabilities_with_weights():
    a, b = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    want = (torch.softmax(a, 1) + 3 * torch.softmax(b, 1)) / 4
    assert torch.allclose(mean_log_probs([a, b], [1.0, 3.0]).exp(), want, atol=1e-6)
