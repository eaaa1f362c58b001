"""`harness bench` runs end to end on a tiny setting (speed is measured by the benchmark, never asserted)."""

from __future__ import annotations

import json

import pytest

from harness.cli.app import main

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

KEYS = ("naive_img_s", "bare_img_s", "harness_img_s", "speedup", "harness_over_bare", "infer_img_s", "mfu")
KEYS += ("params", "gflops", "peak_mem_mb", "bare_img_s_min", "bare_img_s_max")


def test_bench_json_has_every_key_per_architecture(capsys):
    assert main(["bench", "--arch", "unet", *TINY_BENCH, "--parts", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["architectures"]["unet"]
    assert list(row["step_parts_ms"]) == ["bare", "batch", "schedule", "loss", "clip", "all parts"]
    for key in KEYS:
        assert key in row, key
    assert row["naive_img_s"] > 0 and row["harness_img_s"] > 0 and row["infer_img_s"] > 0
    assert row["speedup"] == pytest.approx(row["harness_img_s"] / row["naive_img_s"])
    assert row["bare_img_s"] > 0
    assert row["harness_over_bare"] == pytest.approx(row["harness_img_s"] / row["bare_img_s"])
    assert 0 < row["mfu"] < 1.5  # a fraction of a peak measured in the same process
    assert row["params"] > 0 and row["gflops"] > 0
    assert len(result["settings"]["archs"]) == 1 and result["peak_tflops"]


def test_bench_table_names_the_architecture_and_the_peak(capsys):
    assert main(["bench", "--arch", "unet", *TINY_BENCH, "--warmup-steps", "0", "--parts"]) == 0
    out = capsys.readouterr().out
    assert "unet" in out and "peak matmul" in out and "speedup" in out
    assert "bare img/s" in out and "harness / bare" in out
    assert "part by part" in out and "+ clip" in out and "all parts" in out


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


def test_bench_sweep_prints_runs_per_hour_of_each_jobs_value(capsys, monkeypatch):
    from harness.cli import bench as bench_cli

    seen = {}

    def fake(settings, registry, on_step):
        seen["settings"] = settings
        rows = [
            {"jobs": j, "threads_per_job": 2 // j, "runs_per_hour": 100.0 * j, "runs_per_hour_min": 90.0,
             "runs_per_hour_max": 110.0, "seconds": [36.0, 37.0], "failed": [], "vs_first": float(j)}
            for j in settings.jobs
        ]  # fmt: skip
        return {"runs": ["unet", "unetpp"], "settings": settings.__dict__, "rows": rows}

    monkeypatch.setattr(bench_cli, "run_sweep_bench", fake)
    assert main(["bench", "--sweep", "--arch", "unet,unetpp", "--jobs", "1,2", "--limit", "64"]) == 0
    out = capsys.readouterr().out
    assert "runs/hour" in out and "200" in out and "2.00x" in out
    settings = seen["settings"]
    assert settings.jobs == (1, 2) and settings.archs == ("unet", "unetpp") and settings.limit == 64
    assert settings.epochs == 1  # --epochs defaults to 1 for --sweep (3 for --parity)


@pytest.mark.parametrize(
    "flags, message",
    [(["--jobs", "1,0"], "--jobs"), (["--jobs", "auto"], "--jobs"), (["--parity"], "--parity")],
)
def test_bad_bench_sweep_flags_are_one_line_and_exit_2(flags, message, capsys):
    assert main(["bench", "--sweep", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
