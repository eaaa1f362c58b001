"""`harness data inspect|preview`: look at a dataset, and at what the model sees of it, before training."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from harness import api
from harness.cli.options import (
    add_common,
    add_config_options,
    error_console,
    load_registry,
    print_json,
    resolved_config,
    wide_console,
)
from harness.errors import HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="inspect a dataset, preview what the model sees",
        description="Look at the data before training on it.",
    )
    # type(p): the inner parsers are the same one-line-error Parser as the outer ones
    inner = p.add_subparsers(dest="data_command", required=True, parser_class=type(p), metavar="SUBCOMMAND")
    look = inner.add_parser(
        "inspect",
        help="class shares, duplicate masks and likely outliers",
        description="Class pixel shares, images per class, groups of images sharing one mask, and outliers: "
        "large groups of different images sharing one mask with several classes (the AN2DL 'aliens'). "
        "`--set data.clean=outliers` drops them in a run.",
    )
    add_common(look)
    look.add_argument("file", help="AN2DL .npz path or dataset name")
    look.add_argument("--format", choices=("table", "json"), default="table")
    look.add_argument(
        "--sheet", metavar="PNG", help="also write a contact sheet of the outliers (or duplicates)"
    )
    look.add_argument(
        "--min-group", type=int, default=10, help="smallest shared-mask group flagged (default 10)"
    )
    view = inner.add_parser(
        "preview",
        help="contact sheet of training images after balancing and augmentation",
        description="Write a contact sheet (image | mask) of what the model will see in an epoch: the "
        "training split after the balancer and the augmentation. Takes the same options as `harness run`.",
    )
    add_common(view)
    add_config_options(view)
    view.add_argument("--out", required=True, metavar="PNG", help="where to write the sheet")
    view.add_argument("--count", type=int, default=32, help="images on the sheet (1-64, default 32)")
    view.add_argument("--epoch", type=int, default=1, help="which epoch's augmentation to show (default 1)")


def run(args: argparse.Namespace) -> int:
    return {"inspect": inspect, "preview": preview}[args.data_command](args)


def inspect(args: argparse.Namespace) -> int:
    """`data inspect`: class shares, shared-mask groups and outliers (and optionally their sheet)."""
    from harness.data.inspect import inspect as inspect_data
    from harness.data.neighbours import neighbour_report
    from harness.data.sheets import outlier_sheet

    registry = load_registry(args, error_console())
    dataset = api.load_source(args.file, 5, registry)
    report = inspect_data(dataset, min_group=args.min_group)
    report["neighbours"] = neighbour_report(dataset.images)
    if args.sheet:
        outlier_sheet(dataset, report, Path(args.sheet))
    if args.format == "json":
        print_json(report)
        return 0
    console = wide_console()
    classes = Table(title=f"{dataset.source}: {len(dataset)} images")
    for column in ("class", "pixel share", "images"):
        classes.add_column(column, justify="right" if column != "class" else "left")
    for name, row in report["classes"].items():
        classes.add_row(name, f"{row['pixel_share']:.2%}", str(row["images"]))
    console.print(classes)
    groups = report["duplicate_mask_groups"]
    console.print(
        f"{len(groups)} groups of images sharing one mask (largest: "
        f"{', '.join(str(g['size']) for g in groups[:8]) or 'none'}); "
        f"{len(report['outliers'])} outliers (groups of >= {args.min_group} different images sharing a "
        "mask with several classes)" + (f"; sheet written to {args.sheet}" if args.sheet else ""),
        markup=False,
    )
    near = report["neighbours"]
    console.print(
        f"{near['edge_pairs']} neighbour pairs (bottom row continuing into another's top row: "
        f"{', '.join(f'{a}->{b}' for a, b in near['edge_examples'][:5]) or 'none'}), {near['hash_pairs']} "
        f"near-duplicate pairs (average hash); data.groups=auto joins them into {near['groups']} groups of "
        f"{near['grouped_images']} images (largest {near['largest_group']})",
        markup=False,
    )
    return 0


def preview(args: argparse.Namespace) -> int:
    """`data preview`: a contact sheet of the training split as epoch `--epoch` augments it."""
    import numpy as np

    from harness.augment.backend import augmented_view
    from harness.data.sheets import contact_sheet
    from harness.training.prepare import prepare

    if not 1 <= args.count <= 64:
        raise HarnessError(f"--count must be between 1 and 64, got {args.count}")
    if args.epoch < 1:
        raise HarnessError(f"--epoch must be >= 1, got {args.epoch}")
    registry = load_registry(args, error_console())
    resolved = resolved_config(args, registry)
    prep = prepare(resolved)
    images, masks = augmented_view(
        prep.augmentation, args.epoch, prep.train_images, prep.train_masks, prep.train_strong
    )
    rng = np.random.default_rng(resolved.config.seed)
    rows = np.sort(rng.choice(len(images), size=min(args.count, len(images)), replace=False))
    strong = prep.train_strong
    titles = [f"#{i}" + (" strong" if strong is not None and bool(strong[i]) else "") for i in rows]
    out = contact_sheet(images[rows], masks[rows], Path(args.out), titles=titles)
    print(f"wrote {out}: {len(rows)} of {len(images)} training images as epoch {args.epoch} shows them")
    return 0
