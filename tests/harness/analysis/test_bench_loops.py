"""harness.analysis.bench_loops: the naive loop is the notebook way, the harness loop is the training loop's
own epoch function, and `sync` waits for CUDA only."""

from __future__ import annotations

import pytest
import torch

from harness.analysis import bench_loops
from harness.analysis.bench import BenchSettings, bench_config
from harness.analysis.bench_loops import BareLoop, HarnessLoop, NaiveLoop, sync
from harness.plugins import load_plugins
from harness.training import loop as training_loop
from harness.training.distributed import SINGLE
from harness.training.prepare import prepare_on_device

TINY = ("arch.params.width=4", "arch.params.depth=2", "data.params.n=24", "data.params.test_n=0")


def test_naive_loop_is_the_notebook_way():
    """fp32 NCHW model, the default (per-tensor) AdamW, a DataLoader of per-sample float items."""
    registry = load_plugins()
    resolved = bench_config(
        "unet", BenchSettings(settings=("arch.params.width=4", "arch.params.depth=2")), registry
    )
    model = resolved.arch.build(resolved.arch_params, in_channels=1, num_classes=5)
    images = torch.randint(0, 255, (8, 64, 128), dtype=torch.uint8)
    masks = torch.randint(0, 5, (8, 64, 128), dtype=torch.uint8)
    loop = NaiveLoop(
        resolved, model, torch.nn.CrossEntropyLoss(ignore_index=0), images, masks, torch.device("cpu"), 4
    )
    x, y = next(iter(loop.loader))
    assert x.dtype == torch.float32 and x.shape == (4, 1, 64, 128) and float(x.max()) <= 1.0
    assert y.dtype == torch.int64
    assert not loop.optimizer.defaults.get("fused")
    assert loop.epoch() > 0
    assert loop.confusion.sum() == 8 * 64 * 128  # the training confusion was counted on the host


def test_sync_waits_for_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    sync(torch.device("cpu"))
    sync(torch.device("meta"))
    assert calls == []  # a no-op off CUDA: nothing to wait for, and no CUDA needed
    cuda = torch.device("cuda", 0)
    sync(cuda)
    assert calls == [cuda]


def test_harness_loop_runs_the_training_loops_own_epoch_on_the_rows_it_is_given(monkeypatch):
    assert bench_loops.train_one_epoch is training_loop.train_one_epoch  # not a copy of it
    resolved = bench_config("unet", BenchSettings(batch_size=4, settings=TINY), load_plugins())
    prep = prepare_on_device(resolved, SINGLE)
    harness = HarnessLoop(resolved, prep)
    assert harness.net is prep.model  # no torch.compile unless asked
    calls = []

    def spy(resolved_, prep_, net, optimizer, schedule, epoch, budget, progress):
        calls.append((prep_, net, optimizer, epoch))
        return training_loop.train_one_epoch(
            resolved_, prep_, net, optimizer, schedule, epoch, budget, progress
        )

    monkeypatch.setattr(bench_loops, "train_one_epoch", spy)
    before = {k: v.detach().clone() for k, v in prep.model.state_dict().items()}
    harness.use_rows(8)
    assert len(harness.prep.train_images) == 8 and len(harness.full.train_images) == len(prep.train_images)
    first, second = harness.epoch(), harness.epoch()
    assert first > 0 and second > 0
    assert [epoch for *_, epoch in calls] == [1, 2]
    for given, net, optimizer, _ in calls:  # the 8 rows, the prepared model, the loop's own optimizer
        assert given is harness.prep and net is prep.model and optimizer is harness.optimizer
    changed = [k for k, v in prep.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the epochs trained the prepared model
    assert harness.infer_img_s(batch_size=4, repeats=1, count=8) > 0


def test_harness_loop_img_s_is_the_images_seen_over_the_seconds(monkeypatch):
    resolved = bench_config("unet", BenchSettings(batch_size=4, settings=TINY), load_plugins())
    harness = HarnessLoop(resolved, prepare_on_device(resolved, SINGLE))
    monkeypatch.setattr(bench_loops, "train_one_epoch", lambda *args: (0.5, 40, 2.0))
    assert harness.epoch() == pytest.approx(20.0) and harness.epochs == 1


@pytest.mark.parametrize("arch", ["unet", "unetpp"])  # unetpp: deep supervision, a list of outputs
def test_bare_loop_is_forward_backward_step_on_one_pre_made_batch(arch, monkeypatch):
    settings = (*TINY, "arch.params.deep_supervision=true") if arch == "unetpp" else TINY
    resolved = bench_config(arch, BenchSettings(batch_size=4, settings=settings), load_plugins())
    prep = prepare_on_device(resolved, SINGLE)
    bare = BareLoop(resolved, prep, prep.model, steps=2)
    # the harness's memory format and its fused AdamW; the batch made once, before the clock
    assert bare.x.is_contiguous(memory_format=torch.channels_last) and bare.x.dtype == torch.float32
    assert bare.x.shape == (4, 1, 64, 128) and bare.target.dtype == torch.int64
    assert bare.optimizer.defaults["fused"] and bare.amp_dtype is prep.amp_dtype
    augmented = []
    monkeypatch.setattr(bench_loops, "train_one_epoch", lambda *a: augmented.append(a))
    before = {k: v.detach().clone() for k, v in prep.model.state_dict().items()}
    assert bare.epoch() > 0 and not augmented  # nothing of the harness's epoch
    assert any(not torch.equal(v, before[k]) for k, v in prep.model.state_dict().items())
    assert torch.isfinite(bare.loss())
