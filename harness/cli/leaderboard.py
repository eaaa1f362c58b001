"""`harness leaderboard`: rank recorded runs (by configuration, architecture or run) in any format."""

from __future__ import annotations

import argparse
import sys

from harness import api
from harness.cli.options import add_common, error_console, load_registry, wide_console
from harness.errors import HarnessError
from harness.parsing import parse_since
from harness.store import resolve_store_path
from leaderboard.table import best_per_arch, display_table, group_rows, leaderboard_rows, render


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="rank recorded runs",
        description="Rank configurations by validation mIoU: the runs of one configuration across seeds "
        "are one row (mean ± std, n). `--by arch` keeps the best configuration per architecture.",
    )
    add_common(p)
    p.add_argument(
        "--format",
        choices=("table", "markdown", "csv", "json", "html"),
        default="table",
        help="table (default), markdown, csv, json or html (one self-contained page)",
    )
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="an2dl (challenge) or fg mIoU")
    p.add_argument(
        "--by",
        choices=("config", "arch", "run"),
        default="config",
        help="config (default): one row per configuration; arch: the best configuration of "
        "each architecture (the report's Table 1); run: one row per run",
    )
    p.add_argument(
        "--status",
        default="finished",
        choices=("finished", "failed", "interrupted", "diverged", "running", "all"),
        help="finished (default), failed, interrupted, diverged, running or all",
    )
    p.add_argument("--arch", help="only this architecture")
    p.add_argument("--loss", help="only this loss")
    p.add_argument("--balancer", help="only this balancer")
    p.add_argument("--since", help="only runs started since an age (30m, 12h, 3d, 2w) or a date (2026-11-24)")
    p.add_argument("--top", type=int, help="show only the first N rows")


def run(args: argparse.Namespace) -> int:
    path = resolve_store_path(args.store)
    status = None if args.status == "all" else args.status
    since = parse_since(args.since) if args.since else None
    if args.top is not None and args.top < 1:
        raise HarnessError(f"--top must be at least 1, got {args.top}")
    runs = api.runs(path, status, args.arch, args.loss, args.balancer, since)
    rows = leaderboard_rows(runs, args.metric)
    if args.by != "run":
        rows = group_rows(rows)
    if args.by == "arch":
        rows = best_per_arch(rows)
    rows = rows[: args.top] if args.top else rows
    if not rows and args.format == "table":
        print(f"no {args.status if status else ''} runs in {path} yet: try `harness run`".replace("  ", " "))
        return 0
    class_names = runs[0]["class_names"] if runs else []
    title = f"harness leaderboard: {path} ({args.metric} mIoU, by {args.by})"
    if args.format == "html":  # the table plus the report's figures, in one page to mail
        from harness.analysis.report import leaderboard_page
        from leaderboard.html import config_links

        headers, cells = display_table(rows, class_names)
        registry = load_registry(args, error_console())
        links = config_links(rows, runs)
        text = leaderboard_page(
            title, headers, cells, store=path, metric=args.metric, plugins=registry, links=links
        )
    else:
        text = render(rows, args.format, class_names, console=wide_console(), title=title)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
