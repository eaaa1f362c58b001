"""`harness report`: figures of the top runs and one self-contained HTML page (the work: analysis.report)."""

from __future__ import annotations

import argparse

from harness.cli.options import add_common, error_console, load_registry


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="figures and one self-contained HTML page for the top runs",
        description="Write learning curves and per-class IoU of the top N finished runs, the best run's "
        "confusion matrix and prediction overlays (PNGs), and index.html with all of them embedded. "
        "Runs on one dataset only (the best run's, or --data); rows and legends carry the leaderboard's "
        "labels.",
    )
    add_common(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and index.html")
    p.add_argument("--top", type=int, default=5, help="how many runs to show (default 5)")
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="rank by an2dl or fg mIoU")
    p.add_argument("--arch", help="only this architecture")
    p.add_argument("--loss", help="only this loss")
    p.add_argument("--balancer", help="only this balancer")
    p.add_argument(
        "--data",
        metavar="NAME|FILE",
        help="only runs on this data (as `harness leaderboard --data`); default: the best run's data",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar for the overlays")


def run(args: argparse.Namespace) -> int:
    from harness.analysis.report import build_report

    err = error_console()
    registry = load_registry(args, err)
    written = build_report(
        args.out,
        store=args.store,
        top=args.top,
        metric=args.metric,
        arch=args.arch,
        loss=args.loss,
        balancer=args.balancer,
        data=args.data,
        plugins=registry,
        show_progress=not args.no_progress,
    )
    for path in written:  # once, on stdout: the list a script reads (stderr has only the overlays' bar)
        print(path)
    return 0
