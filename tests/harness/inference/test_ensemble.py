"""Ensembles: one member predicts exactly what the run alone predicts, two members give the mean of their
probabilities (each with its own normalisation), and members that disagree on classes are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.errors import HarnessError
from harness.inference.ensemble import RAW, Ensemble, Member, check_weights, multiple_of
from harness.inference.scoring import Normalisation, predict_masks, score

HANDLING = {"num_classes": 5, "class names": ["a", "b", "c", "d", "e"], "ignore_index": 0}


def member(seed: int, norm: Normalisation, name: str = "r", **handling) -> Member:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 1)).eval()
    return Member(name, model, norm, 4, {**HANDLING, **handling})


def images(n: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, 16, 24), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_an_ensemble_of_one_run_equals_that_run():
    one = member(0, Normalisation(100.0, 40.0))
    x = images()
    masks = torch.randint(0, 5, x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    common = dict(multiple=4, ignore_index=0, device=torch.device("cpu"))
    alone = predict_masks(one.model, x, norm=one.norm, **common)
    ensemble = Ensemble([one]).eval()
    assert torch.equal(predict_masks(ensemble, x, norm=RAW, **common), alone)
    plain, _, _ = score(one.model, x, masks, norm=one.norm, num_classes=5, **common)
    together, _, _ = score(ensemble, x, masks, norm=RAW, num_classes=5, **common)
    assert together.to_dict() == plain.to_dict()


@pytest.mark.parametrize("weights", [None, [1.0, 3.0]])
def test_an_ensemble_of_two_runs_is_the_mean_of_their_probabilities(weights):
    a, b = member(0, Normalisation(100.0, 40.0)), member(1, Normalisation(20.0, 5.0))
    x = images().unsqueeze(1).float()
    with torch.no_grad():
        got = Ensemble([a, b], weights)(x).exp()
        pa = torch.softmax(a.model((x - 100.0) / 40.0), 1)
        pb = torch.softmax(b.model((x - 20.0) / 5.0), 1)
    wa, wb = weights or (1.0, 1.0)
    want = (wa * pa + wb * pb) / (wa + wb)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(pa, pb, atol=1e-2)  # the two really predict differently


def test_runs_that_differ_on_classes_are_refused_naming_both():
    a = member(0, RAW, "run-a")
    with pytest.raises(HarnessError, match=r"runs run-a and run-c differ on num_classes \(5 vs 4\)"):
        Ensemble([a, member(1, RAW, "run-b"), member(2, RAW, "run-c", num_classes=4)])
    with pytest.raises(HarnessError, match="runs run-a and run-b differ on ignore_index"):
        Ensemble([a, member(1, RAW, "run-b", ignore_index=None)])


def test_weights_one_per_run_non_negative():
    assert check_weights(None, 3) == [1.0, 1.0, 1.0]
    assert check_weights([0.0, 2.0], 2) == [0.0, 2.0]
    with pytest.raises(HarnessError, match="gives 1 weights for 2 runs"):
        check_weights([1.0], 2)
    with pytest.raises(HarnessError, match="not all 0"):
        check_weights([0.0, 0.0], 2)
    with pytest.raises(HarnessError, match=">= 0"):
        check_weights([-1.0, 2.0], 2)


def test_the_multiple_is_one_every_member_accepts():
    a, b = member(0, RAW), member(1, RAW)
    assert multiple_of([a, Member("b", b.model, RAW, 6, HANDLING)]) == 12
