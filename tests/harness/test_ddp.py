"""One run over two processes (`torchrun -m harness run`, gloo on the CPU): recorded once, and its validation
metrics exactly those one process computes from the saved checkpoint."""

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
from harness.inference.device import pick_amp_dtype
from harness.inference.metrics import metrics_from_confusion
from harness.inference.scoring import score
from harness.store.runs import RunStore
from harness.training.distributed import World
from harness.training.loop import PER_IMAGE_NAME, load_data, steps_per_epoch

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
