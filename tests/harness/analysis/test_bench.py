"""The benchmark's measurement: both loops start from the same weights, the peak is positive (the loops
themselves: test_bench_loops.py)."""

from __future__ import annotations

import pytest
import torch

from harness.analysis import bench
from harness.analysis.bench import BenchSettings, peak_matmul_flops, run_parity
from harness.plugins import load_plugins


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def test_parity_trains_both_loops_from_the_same_weights(monkeypatch):
    registry = load_plugins()
    settings = BenchSettings(
        archs=("unet",),
        batch_size=4,
        settings=("arch.params.width=4", "arch.params.depth=2", "data.params.n=24", "data.params.test_n=0"),
    )
    # Each loop's model and its weights at the loop's first epoch, just before its first step.
    naive_starts, harness_starts = [], []

    class Naive(bench.NaiveLoop):
        def epoch(self) -> float:
            if not getattr(self, "started", False):
                self.started = True
                naive_starts.append((self.model, _state(self.model)))
            return super().epoch()

    class Harness(bench.HarnessLoop):
        def epoch(self) -> float:
            if self.epochs == 0:
                harness_starts.append((self.prep.model, _state(self.prep.model)))
            return super().epoch()

    monkeypatch.setattr(bench, "NaiveLoop", Naive)
    monkeypatch.setattr(bench, "HarnessLoop", Harness)
    result = run_parity("unet", seeds=2, epochs=1, settings=settings, registry=registry)
    assert len(naive_starts) == len(harness_starts) == 2  # one pair of loops per seed
    for (naive_model, naive_start), (harness_model, harness_start) in zip(
        naive_starts, harness_starts, strict=True
    ):
        assert naive_start.keys() == harness_start.keys()
        different = [key for key in naive_start if not torch.equal(naive_start[key], harness_start[key])]
        assert not different, f"the loops start from different weights: {different[:3]}"
        # two models with the same start, not one model trained by both loops
        assert naive_model is not harness_model
        shared = {p.data_ptr() for p in naive_model.parameters()} & {
            p.data_ptr() for p in harness_model.parameters()
        }
        assert not shared
    # the comparison above can tell weights apart: another seed starts elsewhere
    (_, seed0), (_, seed1) = naive_starts
    assert any(not torch.equal(seed0[key], seed1[key]) for key in seed0)
    assert [row["seed"] for row in result["seeds"]] == [0, 1]
    for row in result["seeds"]:
        assert 0 <= row["naive_miou"] <= 1 and 0 <= row["harness_miou"] <= 1
    assert result["difference"] == pytest.approx(result["harness_mean"] - result["naive_mean"])
    assert isinstance(result["within_one_std"], bool)


def test_peak_matmul_is_positive():
    assert peak_matmul_flops(torch.device("cpu"), torch.float32, seconds=0.01) > 0
