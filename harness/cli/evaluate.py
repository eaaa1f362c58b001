"""`harness evaluate`: score a run's best checkpoint (or an ensemble of runs, with optional test-time
augmentation) on the training_set of a labelled dataset, or on a folder of images and their masks."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness import api
from harness.cli.options import (
    add_common,
    add_ensemble_options,
    error_console,
    fmt,
    load_registry,
    print_json,
    wide_console,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a run on labelled data",
        description="Score a run (or the ensemble of several) on the training_set of a labelled npz, or on a "
        "folder of images against --masks.",
    )
    add_common(p)
    add_ensemble_options(p)
    p.add_argument(
        "--data", required=True, help="labelled AN2DL .npz, dataset name, or a folder or glob of images"
    )
    p.add_argument(
        "--masks", metavar="MASKS_DIR", help="with a folder of images: their PNG masks, same names"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    result = api.evaluate(
        args.run_id, args.data, store=args.store, device=args.device, plugins=registry,
        tta=args.tta, weights=args.weights, masks=args.masks,
    )  # fmt: skip
    if args.format == "json":
        print_json(result)
        return 0
    if result.get("tta"):
        print(result["tta"])  # which transforms ran
    who = f"run {result['run_id']}"
    if "runs" in result:
        print(f"ensemble of {len(result['runs'])} runs: {', '.join(result['runs'])}")
        who = f"ensemble of {len(result['runs'])} runs"
    table = Table(title=f"{who} on {result['data']} ({result['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mIoU (an2dl)", fmt(result["miou_an2dl"]))
    table.add_row("mIoU (fg)", fmt(result["miou_fg"]))
    table.add_row("pixel accuracy", fmt(result["pixel_accuracy"]))
    for name, value in result["iou"].items():
        table.add_row(f"IoU {name}", fmt(value))
    wide_console().print(table)
    return 0
