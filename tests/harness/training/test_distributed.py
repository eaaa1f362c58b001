"""harness.training.distributed: one run over two processes (`torchrun -m harness run`, gloo on the CPU),
recorded once, its validation metrics exactly those one process computes from the saved checkpoint; and the
World helpers (shards, epoch orders, the single-process no-ops, the launch environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import api
from harness.errors import ConfigError
from harness.inference.device import pick_amp_dtype
from harness.inference.metrics import metrics_from_confusion
from harness.inference.scoring import score
from harness.store import RunStore
from harness.training.checkpoints import PER_IMAGE_NAME
from harness.training.distributed import (
    SINGLE,
    NullStore,
    SilentRegistry,
    World,
    is_rank_zero,
    launched_size,
)
from harness.training.loop import steps_per_epoch
from harness.training.prepare import load_data

# lr 1e-2 so that three epochs already predict several classes: a rank validating with other weights or
# BatchNorm statistics than rank 0's checkpoint then changes the confusion matrices. The 6 validation
# images split 3 + 3 over the ranks; an eval batch of 3 makes one process batch them the same way, so
# the comparison below does not depend on batch-size-dependent CPU kernels.
DDP_ARGS = [
    "--arch-param", "width=8",
    "--arch-param", "depth=2",
    "--data-param", "n=32",
    "--data-param", "test_n=3",
    "--set", "train.batch_size=8",
    "--set", "train.eval_batch_size=3",
    "--set", "train.lr=0.01",
    "--epochs", "3",
    "--device", "cpu",
    "--no-progress",
]  # fmt: skip


def torchrun(store: Path, *extra: str, nproc: int = 2) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone"]
    argv += ["-m", "harness", "run", *DDP_ARGS, *extra, "--store", str(store)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def test_torchrun_trains_one_run_recorded_once_with_exact_metrics(store_path):
    done = torchrun(store_path, "--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # rank 0 alone prints: stdout is exactly one JSON document

    with RunStore(store_path, create=False) as store:
        runs = store.list_runs()
        assert len(runs) == 1
        record = runs[0]
        history = store.history(record["run_id"])
    assert record["run_id"] == result["run_id"] and record["status"] == "finished"
    assert record["device"] == "cpu x2 (ddp)"
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(h["train_loss"] > 0 and h["img_s"] > 0 for h in history)

    # The checkpoint scored by one process reproduces, image by image, what the two ranks recorded.
    run_dir = Path(record["checkpoint"]).parent
    saved = np.load(run_dir / PER_IMAGE_NAME)
    loaded = api.load_run(record["run_id"], store=store_path)
    cfg = loaded.resolved.config
    data = load_data(loaded.resolved)
    rows = torch.as_tensor(saved["indices"])
    assert len(rows) == 6
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks ran (OMP_NUM_THREADS=1)
    try:
        _, _, per_image = score(
            loaded.model,
            data.images[rows],
            data.masks[rows],
            norm=loaded.norm,
            multiple=loaded.resolved.multiple,
            num_classes=cfg.data.num_classes,
            ignore_index=cfg.data.ignore_index,
            device=torch.device("cpu"),
            batch_size=cfg.train.eval_batch_size,
            amp_dtype=pick_amp_dtype(torch.device("cpu"), cfg.train.amp),
            per_image=True,
        )
    finally:
        torch.set_num_threads(threads)
    differ = (per_image.numpy() != saved["confusion"]).reshape(len(rows), -1).any(1)
    assert not differ.any(), f"validation images {np.flatnonzero(differ).tolist()} differ from one process"
    confusion = per_image.sum(0)
    assert (confusion.diagonal()[1:] > 0).sum() >= 2, "the model should predict several classes"
    fresh = metrics_from_confusion(confusion, cfg.data.ignore_index)
    assert record["metrics"]["miou_an2dl"] == fresh.miou_an2dl
    best = history[record["best_epoch"] - 1]
    assert best["val_miou"] == fresh.miou_an2dl  # the epoch's logged metric is the gathered one


def test_a_batch_that_does_not_split_among_ranks_is_one_line(store_path):
    done = torchrun(store_path, "--set", "train.batch_size=7")
    assert done.returncode != 0
    assert "train.batch_size 7 is the global batch" in done.stderr
    assert not store_path.exists()


@pytest.mark.parametrize("count", [23, 24])
def test_ranks_share_the_rows_without_overlap(count):
    worlds = [World(size=3, rank=r) for r in range(3)]
    orders = [w.epoch_order(count, seed=5, epoch=2) for w in worlds]
    assert len({len(o) for o in orders}) == 1  # same number of steps on every rank
    rows = torch.cat(orders)
    assert len(rows.unique()) == len(rows) == count // 3 * 3
    assert not torch.equal(orders[0], worlds[0].epoch_order(count, seed=5, epoch=3))  # reshuffled per epoch
    shards = [torch.arange(count)[w.shard(count)] for w in worlds]
    assert torch.equal(torch.cat(shards), torch.arange(count))  # validation: contiguous, in order
    assert steps_per_epoch(count, 6, worlds[0]) == (count // 3) // 2


def test_a_single_process_world_is_every_helper_a_no_op():
    assert SINGLE.size == 1 and SINGLE.is_main
    tensor = torch.tensor([1.0, 2.0])
    assert SINGLE.sum_(tensor) is tensor and torch.equal(tensor, torch.tensor([1.0, 2.0]))
    assert SINGLE.any(True) and not SINGLE.any(False)
    assert SINGLE.broadcast_object({"id": 1}) == {"id": 1}
    model = torch.nn.Linear(2, 2)
    SINGLE.broadcast_buffers(model)
    assert SINGLE.wrap(model, find_unused_parameters=False) is model
    assert SINGLE.shard(7) == slice(0, 7) and SINGLE.shard_sizes(7) == [7]
    assert SINGLE.gather_rows(tensor, 2) is tensor
    order = SINGLE.epoch_order(10, seed=5, epoch=1)
    assert sorted(order.tolist()) == list(range(10))  # every row once, shuffled by seed and epoch
    assert torch.equal(order, SINGLE.epoch_order(10, seed=5, epoch=1))
    assert not torch.equal(order, SINGLE.epoch_order(10, seed=5, epoch=2))
    assert steps_per_epoch(23, 8) == 2 and steps_per_epoch(5, 8) == 1  # a short split still takes a step


def test_shards_give_the_first_ranks_one_more_row():
    assert World(size=3, rank=0).shard_sizes(7) == [3, 2, 2]
    assert [World(size=3, rank=r).shard(7) for r in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert World(size=3, rank=2).shard(2) == slice(2, 2)  # fewer rows than ranks: an empty shard


def test_the_launch_environment_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert launched_size() == 1 and is_rank_zero()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not a number"):
        launched_size()
    monkeypatch.setenv("RANK", "1")
    assert not is_rank_zero()


def test_other_ranks_write_nothing_and_call_no_hooks(tmp_path):
    with NullStore(tmp_path / "store.sqlite") as store:
        store.start_run(run_id="r")
        store.log_epoch("r", 1, {})
        store.finish_run("r", status="finished")
        assert store.run_dir("r") == tmp_path / "r"
    assert list(tmp_path.iterdir()) == []
    assert SilentRegistry().hook.harness_run_start(run=None) is None
