"""harness.analysis.step_parts: each variant of the step switches on exactly its part of the harness step."""

from __future__ import annotations

import copy

import torch

from harness.analysis import step_parts
from harness.analysis.bench import BenchSettings, bench_config
from harness.analysis.step_parts import PARTS, StepParts, time_parts
from harness.plugins import load_plugins
from harness.training.distributed import SINGLE
from harness.training.prepare import prepare_on_device

TINY = ("arch.params.width=4", "arch.params.depth=2", "data.params.n=24", "data.params.test_n=0")


def _parts():
    resolved = bench_config("unet", BenchSettings(batch_size=4, settings=TINY), load_plugins())
    prep = prepare_on_device(resolved, SINGLE)
    return StepParts(resolved, prep, copy.deepcopy(prep.model)), prep


def test_each_part_is_switched_on_by_its_name_only(monkeypatch):
    parts, prep = _parts()
    seen = {"batch": 0, "schedule": 0, "loss": 0, "clip": 0}
    fresh = parts.fresh_batch
    monkeypatch.setattr(parts, "fresh_batch", lambda: seen.__setitem__("batch", seen["batch"] + 1) or fresh())
    step_batch = parts.schedule.step_batch
    monkeypatch.setattr(
        parts.schedule,
        "step_batch",
        lambda: seen.__setitem__("schedule", seen["schedule"] + 1) or step_batch(),
    )
    loss_fn = prep.loss_fn
    prep.loss_fn = lambda *a: seen.__setitem__("loss", seen["loss"] + 1) or loss_fn(*a)
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        step_parts.nn.utils,
        "clip_grad_norm_",
        lambda *a, **k: seen.__setitem__("clip", seen["clip"] + 1) or clip(*a, **k),
    )
    parts.step(frozenset())
    assert seen == {"batch": 0, "schedule": 0, "loss": 0, "clip": 0}  # the bare step
    for name in PARTS:
        before = dict(seen)
        parts.step(frozenset({name}))
        assert {k: seen[k] - before[k] for k in seen} == {k: int(k == name) for k in seen}, name
    parts.step(frozenset(PARTS))
    assert seen == {"batch": 2, "schedule": 2, "loss": 2, "clip": 2}


def test_a_fresh_batch_is_gathered_augmented_and_normalised_like_the_loops():
    parts, prep = _parts()
    x1, t1 = parts.fresh_batch()
    x2, _ = parts.fresh_batch()
    assert x1.shape == parts.bare.x.shape and x1.dtype == torch.float32 and t1.dtype == torch.int64
    assert x1.is_contiguous(memory_format=torch.channels_last)  # the harness's memory format
    assert not torch.equal(x1, x2)  # the next rows of the shuffled order


def test_time_parts_reports_every_variant_against_the_bare_step():
    parts, prep = _parts()
    resolved = parts.resolved
    result = time_parts(resolved, prep, copy.deepcopy(prep.model), steps=1, repeats=1, on_step=lambda _: None)
    assert list(result) == ["bare", *PARTS, "all parts"]
    assert all(row["ms"] > 0 for row in result.values())
    assert result["bare"]["over_bare_ms"] == 0
    assert result["clip"]["over_bare_ms"] == result["clip"]["ms"] - result["bare"]["ms"]
