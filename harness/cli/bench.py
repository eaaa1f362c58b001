"""`harness bench`: its flags, the settings they make, and the tables it prints (the measurement:
harness.analysis.bench)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rich.table import Table

from harness.analysis.bench import DEFAULT_ARCHS, BenchSettings, device_name, run_bench, run_parity
from harness.cli.options import add_plugin_option, add_set_option, error_console, load_registry, wide_console
from harness.errors import ConfigError, HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the training path against a naive loop",
        description="Train each architecture with a naive notebook loop and with the harness's own path, "
        "side by side in one process; print img/s, speed-up, inference img/s, MFU, params, GFLOPs, memory.",
    )
    add_plugin_option(p)  # no --store: the benchmark records nothing
    p.add_argument("--arch", help=f"comma-separated architectures (default {','.join(DEFAULT_ARCHS)})")
    p.add_argument("--data", default="synthetic", help="dataset name or AN2DL .npz path (default synthetic)")
    p.add_argument("--limit", type=int, help="use only the first N images of the data")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size of both loops (32)")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per repeat (12)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before timing (3)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each loop, alternating (3)")
    p.add_argument(
        "--infer-batch",
        type=int,
        help="inference batch size (default: the validation batch, 32 CPU / 512 CUDA)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the harness model (time reported)")
    add_set_option(p, "a config override for the harness path, e.g. --set augment.preset=standard")
    p.add_argument(
        "--parity",
        action="store_true",
        help="instead of speed: train both loops --epochs epochs for --seeds seeds and compare val mIoU",
    )
    p.add_argument("--seeds", type=int, default=3, help="--parity: seeds 0..N-1 (3)")
    p.add_argument("--epochs", type=int, default=3, help="--parity: epochs of each loop per seed (3)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.add_argument("--out", metavar="FILE.json", help="also write the JSON result to this file")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    err = error_console()
    registry = load_registry(args, err)

    def work(on_step):
        if not args.parity:
            return run_bench(settings, registry, on_step)
        parity = [
            run_parity(arch, args.seeds, args.epochs, settings, registry, on_step) for arch in settings.archs
        ]
        return {"device": device_name(settings), "settings": dataclasses.asdict(settings), "parity": parity}

    if err.is_terminal and args.format == "table":
        with err.status("benchmarking") as status:
            result = work(lambda text: status.update(text))
    else:
        result = work(lambda text: None)
    text = json.dumps(result, indent=2, allow_nan=False, default=str)
    if args.out:
        try:
            with open(args.out, "w") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            raise HarnessError(f"{args.out}: cannot write: {exc.strerror}") from None
    if args.format == "json":
        sys.stdout.write(text + "\n")
    elif args.parity:
        print_parity(result)
    else:
        print_table(result)
    return 0


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    for name in ("batch_size", "steps", "repeats", "infer_batch", "seeds", "epochs", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup_steps < 0:
        raise ConfigError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    archs = tuple(a.strip() for a in args.arch.split(",") if a.strip()) if args.arch else DEFAULT_ARCHS
    if not archs:
        raise ConfigError("--arch names no architecture")
    return BenchSettings(
        archs=archs,
        data=args.data,
        limit=args.limit,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        repeats=args.repeats,
        infer_batch=args.infer_batch,
        device=args.device,
        compile=args.compile,
        settings=tuple(args.settings),
    )


def _fmt_rate(row: dict, key: str) -> str:
    return f"{row[key]:.0f} [{row[key + '_min']:.0f}-{row[key + '_max']:.0f}]"


def print_table(result: dict) -> None:
    peaks = ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in result["peak_tflops"].items())
    table = Table(title=f"harness bench on {result['device']}: peak matmul {peaks}", title_justify="left")
    for name in ("arch", "naive img/s", "harness img/s", "speedup", "infer img/s", "MFU", "params (M)"):
        table.add_column(name, justify="left" if name == "arch" else "right")
    table.add_column("GFLOPs/img", justify="right")
    table.add_column("peak mem (MB)", justify="right")
    if result["settings"]["compile"]:
        table.add_column("compile (s)", justify="right")
    for row in result["architectures"].values():
        cells = [
            row["arch"],
            _fmt_rate(row, "naive_img_s"),
            _fmt_rate(row, "harness_img_s"),
            f"{row['speedup']:.2f}x",
            f"{row['infer_img_s']:.0f}",
            "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%",
            f"{row['params'] / 1e6:.2f}",
            "-" if row["gflops"] is None else f"{row['gflops']:.2f}",
            "-" if row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.0f}",
        ]
        if result["settings"]["compile"]:
            cells.append(f"{row['compile_s']:.1f}")
        table.add_row(*cells)
    console = wide_console()
    console.print(table)
    s = result["settings"]
    console.print(
        f"batch {s['batch_size']}, {s['steps']} timed steps x {s['repeats']} repeats per loop (median "
        f"\\[min-max]), data {s['data']}; MFU = harness img/s x 3 x GFLOPs/img / peak matmul FLOP/s"
    )


def print_parity(result: dict) -> None:
    table = Table(
        title=f"accuracy parity on {result['device']}: val mIoU after the same epochs", title_justify="left"
    )
    for name in ("arch", "epochs", "seed", "naive mIoU", "harness mIoU"):
        table.add_column(name, justify="left" if name == "arch" else "right")
    for block in result["parity"]:
        for row in block["seeds"]:
            table.add_row(
                block["arch"],
                str(block["epochs"]),
                str(row["seed"]),
                f"{row['naive_miou']:.4f}",
                f"{row['harness_miou']:.4f}",
            )
        verdict = "within one std" if block["within_one_std"] else "NOT within one std"
        table.add_row(
            block["arch"],
            str(block["epochs"]),
            "mean ± std",
            f"{block['naive_mean']:.4f} ± {block['naive_std']:.4f}",
            f"{block['harness_mean']:.4f} ± {block['harness_std']:.4f} ({verdict})",
            end_section=True,
        )
    wide_console().print(table)
