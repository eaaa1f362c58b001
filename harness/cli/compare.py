"""`harness compare A B`: the paired bootstrap of mIoU(B) - mIoU(A) over validation images."""

from __future__ import annotations

import argparse

from rich.table import Table
from rich.text import Text

from harness.cli.options import add_common, error_console, load_registry, print_json, wide_console
from harness.config import DEFAULT_CHOICES
from harness.errors import ConfigError
from harness.store import resolve_store_path
from leaderboard.labels import Labeller

RESAMPLES_MAX = 100_000  # 100k replicates over 500 images already hold 400 MB of indices


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="is B better than A? paired bootstrap of the mIoU difference",
        description="Paired bootstrap over validation images of mIoU(B) - mIoU(A). A and B are each a run id "
        "(or unique prefix) or a config hash prefix (the leaderboard's config column: all finished runs of "
        "that configuration, paired with the other side by seed). Two runs pair only when they were "
        "validated on the same images (same data, split and seed). Each side is named by its variant label "
        "and its data, as the leaderboard shows them.",
    )
    add_common(p)
    p.add_argument("a", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("b", help="run id, unique run id prefix, or config hash prefix")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--metric", choices=("an2dl", "fg"), default="an2dl", help="an2dl (challenge) or fg mIoU")
    p.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from harness.analysis.compare import CONFIDENCE, compare_store

    # Checked before the store is read: each replicate holds an index per image, so memory grows with it.
    if not 1 <= args.resamples <= RESAMPLES_MAX:
        raise ConfigError(f"--resamples must be at least 1 and at most {RESAMPLES_MAX}, got {args.resamples}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {args.seed}")
    labeller = Labeller(load_registry(args, error_console()), DEFAULT_CHOICES)
    result = compare_store(
        resolve_store_path(args.store),
        args.a,
        args.b,
        resamples=args.resamples,
        seed=args.seed,
        metric=args.metric,
        labeller=labeller,
    )
    if args.format == "json":
        print_json(result.to_dict())
        return 0
    table = Table(title=f"paired bootstrap of mIoU ({result.metric}): B − A", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    folds = result.folds or [None] * len(result.seeds)
    seeds = ", ".join(str(s) if f is None else f"{s}/f{f}" for s, f in zip(result.seeds, folds, strict=True))
    table.add_row("A", Text(f"{result.a_label} on {result.a_data} ({result.a_kind} {result.a})"))
    table.add_row("B", Text(f"{result.b_label} on {result.b_data} ({result.b_kind} {result.b})"))
    table.add_row("pairs", f"{result.pairs} (seed{'s' * (result.pairs != 1)} {seeds})")
    table.add_row("validation images", f"{result.images} (resampled within each pair)")
    table.add_row("mIoU A / B", f"{result.a_miou:.4f} / {result.b_miou:.4f}")
    table.add_row("B − A", f"{result.difference:+.4f}")
    table.add_row(f"{CONFIDENCE:.0%} interval", f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}]")
    table.add_row("resamples", f"{result.resamples} (seed {result.seed})")
    wide_console().print(table)
    if result.excludes_zero:
        better = "B" if result.difference > 0 else "A"
        print(f"the interval excludes zero: {better} is better on these validation images")
    else:
        print("the interval contains zero: no clear difference on these validation images")
    return 0
