"""ce: cross-entropy over non-ignored pixels, with OHEM."""

from __future__ import annotations

import torch

from harness.plugins import load_plugins

SPEC = load_plugins(autoload=False).get("loss", "ce")


def single(**params):
    return SPEC.build(SPEC.parse_params(params), num_classes=5, ignore_index=0, class_weights=None)


def test_ce_ohem_keeps_the_hardest_pixels():
    logits = torch.zeros(1, 5, 1, 4)
    logits[0, 1, 0, :] = torch.tensor([4.0, 2.0, 0.0, -2.0])  # easy -> hard for target 1
    target = torch.ones(1, 1, 4, dtype=torch.long)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none").flatten()
    hardest_half = per_pixel.sort(descending=True).values[:2].mean()
    assert torch.allclose(single(ohem=0.5)(logits, target), hardest_half)
    assert torch.allclose(single()(logits, target), per_pixel.mean())
