"""`harness sweep`: plan a grid (or a sweep file's [[runs]]) x seeds, train what is missing, summarise."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from harness.cli.options import (
    EXIT_FAILED,
    add_common,
    add_config_options,
    add_log_options,
    add_ray_options,
    check_ray_options,
    error_console,
    flag_settings,
    load_registry,
    plugin_params,
    print_json,
    wide_console,
)
from harness.config import read_toml
from harness.errors import HarnessError
from harness.store import resolve_store_path
from harness.sweep.local import SweepResult, local_executor, run_sweep
from harness.sweep.packed import auto_jobs, packed_executor, parse_jobs
from harness.sweep.plan import describe_plan, done_keys, plan, split_list
from harness.sweep.progress import SweepLines, SweepProgress


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every combination of architectures, losses, balancers and seeds",
        description="Train the grid --arch x --loss x --balancer x --seeds (or the [[runs]] list of a "
        "--config file), each run like `harness run`, into one store. Resumable: configurations already "
        "finished in the store (same config hash and seed) are skipped, so rerunning a killed sweep "
        "trains only what is missing. A failing run does not stop the sweep.",
        epilog="Sweep file: a RunConfig TOML (the base of every run) with an optional [[runs]] list; each "
        "[[runs]] table overlays the base, e.g.\n\n  [train]\n  epochs = 20\n  [[runs]]\n  arch = "
        '{ name = "unet" }\n  [[runs]]\n  arch = { name = "unetpp", params = { deep_supervision = true } }\n',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    add_config_options(p, lists=True)
    add_log_options(p)
    p.add_argument("--seeds", type=int, help="run each configuration with N seeds (seed, seed+1, ...)")
    p.add_argument(
        "--max-minutes-per-run",
        dest="max_minutes",
        type=float,
        help="time budget of each run (train.max_minutes)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan (what runs, what is skipped) and stop"
    )
    add_ray_options(p, "run")
    p.add_argument(
        "--jobs",
        type=parse_jobs,
        default=1,
        help="train N runs at once here, each in a process with its share of the CPU cores (on one GPU, "
        "N processes share it); auto: 4 per GPU, else one per 4 cores (default 1: one after another)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, one line per run")
    p.add_argument("--format", choices=("text", "json"), default="text", help="how to print the summary")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    base = read_toml(args.config) if args.config else {}  # a RunConfig, optionally with [[runs]]
    runs = plan(
        base,
        registry,
        archs=split_list(args.arch, "--arch"),
        losses=split_list(args.loss, "--loss"),
        balancers=split_list(args.balancer, "--balancer"),
        seeds=args.seeds,
        settings=flag_settings(args),
        plugin_params=plugin_params(args),
    )
    store_path = resolve_store_path(args.store)
    check_ray_options(args)
    if args.dry_run:
        return print_plan(describe_plan(runs, done_keys(store_path), registry), args.format)
    executor = pick_executor(args, len(runs))
    json_out = args.format == "json"
    view = SweepLines(stderr=json_out) if args.no_progress or json_out else SweepProgress()
    with view:  # Ctrl-C and SIGTERM end in cli.app.main, which says how to go on
        result = run_sweep(runs, store_path, registry, executor=executor, progress=view)
    print_summary(result, store_path, args.format)
    return EXIT_FAILED if result.failures else 0


def pick_executor(args: argparse.Namespace, runs: int):
    """The executor the flags ask for: Ray, N local worker processes, or one run after another here."""
    if args.executor == "ray":
        if args.jobs != 1:
            raise HarnessError("--jobs packs runs on this machine; with --executor ray use --cpus-per-run")
        from harness.sweep.ray_executor import ray_executor

        return ray_executor(args.address, args.cpus_per_run, args.gpus_per_run)
    jobs = auto_jobs(args.device or "auto", runs) if args.jobs == "auto" else args.jobs
    return packed_executor(jobs) if jobs > 1 else local_executor


def print_plan(rows: list[dict[str, Any]], fmt: str) -> int:
    """`--dry-run`: the plan as a table (or JSON), one row per planned run with its action."""
    if fmt == "json":
        print_json(rows)
        return 0
    table = Table(title=f"sweep plan: {sum(r['action'] == 'run' for r in rows)} to run, {len(rows)} in all")
    columns = ("#", "arch", "arch params", "loss", "balancer", "seed", "config", "epochs", "max minutes")
    for column in (*columns, "action"):
        table.add_column(column)
    for number, row in enumerate(rows, start=1):
        minutes = "–" if row["max_minutes"] is None else f"{row['max_minutes']:g}"
        seed = str(row["seed"]) if row.get("fold") is None else f"{row['seed']} fold {row['fold']}"
        cells = [row["arch"], row["arch_params"] or "–", row["loss"], row["balancer"], seed]
        cells.append(row["config"])
        table.add_row(str(number), *cells, str(row["epochs"]), minutes, row["action"])
    wide_console().print(table)
    return 0


def print_summary(result: SweepResult, store_path: Path, fmt: str) -> None:
    """The sweep's counts and failures (or every outcome as JSON), and where to see the ranking."""
    outcomes = [
        {
            "arch": o.planned.config.arch.name,
            "loss": o.planned.config.loss.name,
            "balancer": o.planned.config.balancer.name,
            "seed": o.planned.config.seed,
            "fold": o.planned.config.data.fold,
            "config": o.planned.resolved.hash[:8],
            "status": o.status,
            "run_id": o.run_id,
            "miou": o.miou,
            "seconds": round(o.seconds, 1),
            "error": o.error,
        }
        for o in result.outcomes
    ]
    if fmt == "json":
        print_json(outcomes)
        return
    counts = ", ".join(
        f"{result.count(status)} {status}"
        for status in ("finished", "skipped", "failed", "interrupted", "diverged")
        if result.count(status)
    )
    print(f"sweep done: {counts or 'nothing to do'} (store {store_path})")
    for failure in result.failures:
        print(f"  {failure.status}: {failure.planned.label}: {failure.error or 'no error message'}")
    print(f"see the ranking: harness leaderboard --store {store_path}")
