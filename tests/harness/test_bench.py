"""`harness bench` runs end to end on a tiny setting (speed is measured by the benchmark, never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.analysis.bench import BenchSettings, NaiveLoop, peak_matmul_flops, run_parity
from harness.cli.app import main
from harness.plugins import load_plugins

TINY_BENCH = [
    "--set", "arch.params.width=4",
    "--set", "arch.params.depth=2",
    "--set", "data.params.n=40",
    "--set", "data.params.test_n=0",
    "--batch-size", "4",
    "--steps", "2",
    "--warmup-steps", "1",
    "--repeats", "2",
    "--infer-batch", "8",
]  # fmt: skip

KEYS = ("naive_img_s", "harness_img_s", "speedup", "infer_img_s", "mfu", "params", "gflops", "peak_mem_mb")


def test_bench_json_has_every_key_per_architecture(capsys):
    assert main(["bench", "--arch", "unet", *TINY_BENCH, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["architectures"]["unet"]
    for key in KEYS:
        assert key in row, key
    assert row["naive_img_s"] > 0 and row["harness_img_s"] > 0 and row["infer_img_s"] > 0
    assert row["speedup"] == pytest.approx(row["harness_img_s"] / row["naive_img_s"])
    assert 0 < row["mfu"] < 1.5  # a fraction of a peak measured in the same process
    assert row["params"] > 0 and row["gflops"] > 0
    assert len(result["settings"]["archs"]) == 1 and result["peak_tflops"]


def test_bench_table_names_the_architecture_and_the_peak(capsys):
    assert main(["bench", "--arch", "unet", *TINY_BENCH, "--warmup-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "unet" in out and "peak matmul" in out and "speedup" in out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arch", "unett"], "unett"),
        (["--arch", "unet", "--steps", "0"], "--steps"),
        (["--arch", "unet", "--batch-size", "-1"], "--batch-size"),
        (["--arch", ","], "--arch"),
        (["--arch", "unet", "--set", "train.lr=-1"], "train.lr"),
    ],
)
def test_bad_bench_flags_are_one_line_and_exit_2(flags, message, capsys):
    assert main(["bench", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_parity_trains_both_loops_from_the_same_weights():
    registry = load_plugins()
    settings = BenchSettings(
        archs=("unet",),
        batch_size=4,
        settings=("arch.params.width=4", "arch.params.depth=2", "data.params.n=24", "data.params.test_n=0"),
    )
    result = run_parity("unet", seeds=2, epochs=1, settings=settings, registry=registry)
    assert [row["seed"] for row in result["seeds"]] == [0, 1]
    for row in result["seeds"]:
        assert 0 <= row["naive_miou"] <= 1 and 0 <= row["harness_miou"] <= 1
    assert result["difference"] == pytest.approx(result["harness_mean"] - result["naive_mean"])
    assert isinstance(result["within_one_std"], bool)


def test_naive_loop_is_the_notebook_way():
    """fp32 NCHW model, the default (per-tensor) AdamW, a DataLoader of per-sample float items."""
    registry = load_plugins()
    from harness.analysis.bench import _resolved

    resolved = _resolved(
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


def test_peak_matmul_is_positive():
    assert peak_matmul_flops(torch.device("cpu"), torch.float32, seconds=0.01) > 0
