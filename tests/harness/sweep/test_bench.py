"""harness.sweep.bench: the same grid trained at each --jobs value, alternating, into fresh stores."""

from __future__ import annotations

import pytest

from harness.plugins import load_plugins
from harness.sweep import bench

TINY = ("arch.params.width=4", "arch.params.depth=2", "data.params.n=24", "data.params.test_n=0")
TINY += ("train.batch_size=8",)


def test_sweep_bench_alternates_the_jobs_values_over_fresh_stores(monkeypatch):
    calls = []

    def fake_pass(runs, jobs, registry):
        calls.append((len(runs), jobs))
        return {"seconds": 36.0 / jobs, "finished": len(runs), "failed": []}

    monkeypatch.setattr(bench, "one_pass", fake_pass)
    settings = bench.SweepBenchSettings(archs=("unet", "attunet"), jobs=(1, 2), repeats=2, settings=TINY)
    result = bench.run_sweep_bench(settings, load_plugins())
    assert calls == [(2, 1), (2, 2), (2, 1), (2, 2)]  # alternating, so noise hits both alike
    first, packed = result["rows"]
    assert first["runs_per_hour"] == pytest.approx(200.0) and packed["runs_per_hour"] == pytest.approx(400.0)
    assert packed["vs_first"] == pytest.approx(2.0) and first["seconds"] == [36.0, 36.0]


def test_one_pass_trains_the_whole_grid_into_a_throwaway_store():
    settings = bench.SweepBenchSettings(archs=("unet",), limit=16, settings=TINY)
    runs = bench.sweep_plan(settings, load_plugins())
    assert [r.config.train.epochs for r in runs] == [1] and runs[0].config.data.limit == 16
    result = bench.one_pass(runs, 1, load_plugins())
    assert result["finished"] == 1 and not result["failed"] and result["seconds"] > 0
