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
from harness.sweep.bench import SWEEP_ARCHS, SweepBenchSettings, run_sweep_bench
from harness.sweep.packed import parse_jobs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the training path against a naive loop",
        description="Train each architecture with a naive notebook loop, a bare loop (the model's own "
        "forward/backward/step on one pre-made batch: its cost on this device) and the harness's own path, "
        "side by side in one process, alternating; print img/s, speed-up over naive, harness / bare, "
        "inference img/s, MFU, params, GFLOPs, memory.",
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
    p.add_argument(
        "--parts",
        action="store_true",
        help="also time each part of the harness step (batch, schedule, loss, clipping) against the bare "
        "step, alternating: milliseconds per step and the difference",
    )
    add_set_option(p, "a config override for the harness path, e.g. --set augment.preset=standard")
    p.add_argument(
        "--parity",
        action="store_true",
        help="instead of speed: train both loops --epochs epochs for --seeds seeds and compare val mIoU",
    )
    p.add_argument("--seeds", type=int, default=3, help="--parity: seeds 0..N-1 (3)")
    p.add_argument(
        "--epochs", type=int, help="--parity: epochs of each loop per seed (3); --sweep: of each run (1)"
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="instead: runs/hour of a small grid (--arch, default unet,unetpp,segnet,deeplab; --limit, "
        "default 256) trained one after another and with --jobs N at once, alternating --repeats times",
    )
    p.add_argument(
        "--jobs", default="1,2", help="--sweep: comma-separated --jobs values to compare (default 1,2)"
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.add_argument("--out", metavar="FILE.json", help="also write the JSON result to this file")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    err = error_console()
    registry = load_registry(args, err)

    if args.sweep:
        return run_sweep_command(args, registry, err)

    def work(on_step):
        if not args.parity:
            return run_bench(settings, registry, on_step)
        parity = [
            run_parity(arch, args.seeds, args.epochs or 3, settings, registry, on_step)
            for arch in settings.archs
        ]
        return {"device": device_name(settings), "settings": dataclasses.asdict(settings), "parity": parity}

    result = _with_status(args, err, work)
    if not _write_json(args, result):
        print_parity(result) if args.parity else print_table(result)
    return 0


def _with_status(args, err, work):
    if err.is_terminal and args.format == "table":
        with err.status("benchmarking") as status:
            return work(lambda text: status.update(text))
    return work(lambda text: None)


def _write_json(args, result: dict) -> bool:
    """--out FILE, and the JSON on stdout for --format json (True: then no table)."""
    text = json.dumps(result, indent=2, allow_nan=False, default=str)
    if args.out:
        try:
            with open(args.out, "w") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            raise HarnessError(f"{args.out}: cannot write: {exc.strerror}") from None
    if args.format == "json":
        sys.stdout.write(text + "\n")
    return args.format == "json"


def run_sweep_command(args: argparse.Namespace, registry, err) -> int:
    """`--sweep`: runs/hour of the grid at each --jobs value; a table or JSON."""
    jobs = tuple(dict.fromkeys(parse_jobs(part.strip()) for part in args.jobs.split(",")))
    if "auto" in jobs:
        raise ConfigError("--jobs of --sweep takes numbers, e.g. 1,2,4")
    if args.parity:
        raise ConfigError("--sweep and --parity are two different benchmarks: give one")
    settings = SweepBenchSettings(
        archs=tuple(a.strip() for a in args.arch.split(",") if a.strip()) if args.arch else SWEEP_ARCHS,
        data=args.data,
        limit=args.limit or 256,
        epochs=args.epochs or 1,
        jobs=jobs,
        repeats=args.repeats,
        device=args.device,
        settings=tuple(args.settings),
    )
    result = _with_status(args, err, lambda on_step: run_sweep_bench(settings, registry, on_step))
    result["device"] = device_name(BenchSettings(device=args.device))
    if not _write_json(args, result):
        print_sweep(result)
    return 0


def print_sweep(result: dict) -> None:
    s = result["settings"]
    table = Table(
        title=f"harness bench --sweep on {result['device']}: {len(result['runs'])} runs "
        f"({','.join(s['archs'])}) x {s['epochs']} epoch(s), data {s['data']} limit {s['limit']}",
        title_justify="left",
    )
    for name in ("--jobs", "threads/job", "runs/hour", "vs first", "wall s per pass", "failed"):
        table.add_column(name, justify="right")
    for row in result["rows"]:
        rate = f"{row['runs_per_hour']:.0f} [{row['runs_per_hour_min']:.0f}-{row['runs_per_hour_max']:.0f}]"
        seconds = ", ".join(f"{x:.0f}" for x in row["seconds"])
        table.add_row(
            str(row["jobs"]), str(row["threads_per_job"]), rate, f"{row['vs_first']:.2f}x", seconds,
            str(len(row["failed"])),
        )  # fmt: skip
    console = wide_console()
    console.print(table)
    passes = f"{s['repeats']} alternating passes per --jobs value"
    console.print(f"{passes} (median \\[min-max]), a fresh store each, wall time incl. start-up")
    for failure in dict.fromkeys(f for row in result["rows"] for f in row["failed"]):
        console.print(f"failed: {failure}", markup=False)


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
        parts=args.parts,
        settings=tuple(args.settings),
    )


def _fmt_rate(row: dict, key: str) -> str:
    return f"{row[key]:.0f} [{row[key + '_min']:.0f}-{row[key + '_max']:.0f}]"


def print_table(result: dict) -> None:
    peaks = ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in result["peak_tflops"].items())
    table = Table(title=f"harness bench on {result['device']}: peak matmul {peaks}", title_justify="left")
    columns = ("arch", "naive img/s", "bare img/s", "harness img/s", "speedup", "harness / bare")
    for name in (*columns, "infer img/s", "MFU", "params (M)"):
        table.add_column(name, justify="left" if name == "arch" else "right")
    table.add_column("GFLOPs/img", justify="right")
    table.add_column("peak mem (MB)", justify="right")
    if result["settings"]["compile"]:
        table.add_column("compile (s)", justify="right")
    for row in result["architectures"].values():
        cells = [
            row["arch"],
            _fmt_rate(row, "naive_img_s"),
            _fmt_rate(row, "bare_img_s"),
            _fmt_rate(row, "harness_img_s"),
            f"{row['speedup']:.2f}x",
            f"{row['harness_over_bare']:.2f}",
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
    if s["parts"]:
        print_parts(result)


def print_parts(result: dict) -> None:
    """--parts: ms per step of the bare step, each part added alone, and all of them, per architecture."""
    rows = result["architectures"]
    names = list(next(iter(rows.values()))["step_parts_ms"])
    table = Table(
        title="the harness step, part by part: ms per step (difference to bare)", title_justify="left"
    )
    table.add_column("arch")
    for name in names:
        table.add_column(name if name in ("bare", "all parts") else f"+ {name}", justify="right")
    for arch, row in rows.items():
        parts = row["step_parts_ms"]
        cells = [f"{parts['bare']['ms']:.1f}"]
        cells += [f"{parts[n]['ms']:.1f} ({parts[n]['over_bare_ms']:+.1f})" for n in names[1:]]
        table.add_row(arch, *cells)
    wide_console().print(table)


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
