"""`harness leaderboard`: rank recorded runs (by configuration, architecture or run) in any format."""

from __future__ import annotations

import argparse
import sys

from harness import api
from harness.analysis.significance import annotate
from harness.cli.options import add_common, error_console, load_registry, wide_console
from harness.config import DEFAULT_CHOICES
from harness.errors import HarnessError
from harness.parsing import parse_since
from harness.store import RunStore, resolve_store_path
from leaderboard.labels import Labeller
from leaderboard.table import (
    FORMATS,
    best_per_arch,
    datasets,
    filter_data,
    group_rows,
    leaderboard_rows,
    render,
)

STATUSES = ("finished", "failed", "interrupted", "diverged", "pruned", "running", "all")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank recorded runs",
        description="Rank configurations by validation mIoU: the runs of one configuration on one dataset "
        "across seeds and folds are one row (mean ± std, n; oof: the out-of-fold mIoU of a configuration "
        "trained on every fold; Δ best: the paired bootstrap difference to the top row), named by a label "
        "of the settings that differ from each "
        "plugin's defaults. Runs on different data are never ranked together: each dataset gets its own "
        "table (or pick one with --data). `--by arch` keeps the best variant per architecture.",
    )
    add_common(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default; fits the terminal, COLUMNS when piped), markdown, csv, json or html "
        "(one self-contained page)",
    )
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="an2dl (challenge) or fg mIoU")
    p.add_argument(
        "--by",
        choices=("config", "arch", "run"),
        default="config",
        help="config (default): one row per configuration; arch: the best variant of "
        "each architecture (the report's Table 1); run: one row per run",
    )
    p.add_argument(
        "--status",
        default="finished",
        choices=STATUSES,
        help="finished (default), failed, interrupted, diverged, pruned (harness tune), running or all; "
        "rows that did not finish show their status and the first line of their error",
    )
    p.add_argument("--arch", help="only this architecture")
    p.add_argument("--loss", help="only this loss")
    p.add_argument("--balancer", help="only this balancer")
    p.add_argument(
        "--data",
        metavar="NAME|FILE",
        help="only runs on this data: a dataset name (synthetic), an npz path or file name, a content-hash "
        "prefix, or the data column's text",
    )
    p.add_argument("--since", help="only runs started since an age (30m, 12h, 3d, 2w) or a date (2026-11-24)")
    p.add_argument(
        "--study",
        metavar="NAME",
        help="only the trials of this `harness tune` study (read from optuna.sqlite beside the store)",
    )
    p.add_argument("--top", type=int, help="show only the first N rows (of each dataset)")
    p.add_argument(
        "--wide",
        action="store_true",
        help="the table with every column, however wide (by default per-class IoU, params, GFLOPs, time "
        "and img/s make way when the terminal is narrow)",
    )
    p.add_argument(
        "--no-significance",
        action="store_true",
        help="skip the Δ best column (each row's paired bootstrap difference to the top row, 95%% interval, "
        "≈ when tied with it), which reads every run's per-image results",
    )


def ranked(args: argparse.Namespace, runs: list[dict], labeller: Labeller) -> list[dict]:
    """The rows the options ask for, ranked within each dataset, `--top` of each."""
    rows = leaderboard_rows(runs, args.metric, labeller)
    if args.by != "run":
        rows = group_rows(rows)
    if args.by == "arch":
        rows = best_per_arch(rows)
    if not args.top:
        return rows
    return [row for row in rows if row["rank"] <= args.top]


def run(args: argparse.Namespace) -> int:
    path = resolve_store_path(args.store)
    status = None if args.status == "all" else args.status
    since = parse_since(args.since) if args.since else None
    if args.top is not None and args.top < 1:
        raise HarnessError(f"--top must be at least 1, got {args.top}")
    runs = api.runs(path, status, args.arch, args.loss, args.balancer, since)
    if args.study is not None:
        runs = study_runs(runs, path, args.study)
    registry = load_registry(args, error_console())
    labeller = Labeller(registry, DEFAULT_CHOICES)
    if args.data is not None:
        every = leaderboard_rows(runs, args.metric, labeller)
        runs = filter_data(runs, args.data)
        if not runs and every:
            known = ", ".join(datasets(every))
            raise HarnessError(f"--data {args.data}: no such runs in {path}; their data: {known}")
    rows = ranked(args, runs, labeller)
    if rows:  # the out-of-fold score of fold-trained rows, and each row's difference to the top row
        with RunStore(path, create=False) as store:
            annotate(store, rows, runs, metric=args.metric, significance=not args.no_significance)
    if not rows and args.format == "table":
        print(f"no {args.status if status else ''} runs in {path} yet: try `harness run`".replace("  ", " "))
        return 0
    class_names = runs[0]["class_names"] if runs else []
    title = f"harness leaderboard: {path} ({args.metric} mIoU, by {args.by})"
    if args.format == "html":  # the table plus the report's figures of its rows, in one page to mail
        from harness.analysis.report import leaderboard_page

        text = leaderboard_page(
            title, rows, class_names, runs=runs, store=path, metric=args.metric, plugins=registry
        )
    else:
        text = render(
            rows,
            args.format,
            class_names,
            console=wide_console(),
            title=title,
            metric=args.metric,
            wide=args.wide,
        )
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def study_runs(runs: list[dict], path, study: str) -> list[dict]:
    """The runs of a `harness tune` study's trials (the study maps its trials to run ids)."""
    try:
        from harness.tune.study import study_run_ids
    except ModuleNotFoundError:
        raise HarnessError("--study reads an Optuna study: pip install 'segharness[tune]'") from None
    try:
        ids = study_run_ids(path, study)
    except ValueError as exc:
        raise HarnessError(f"--study: {exc}") from None
    return [run for run in runs if run["run_id"] in ids]
