"""`harness evaluate`: score a run's best checkpoint on the training_set of a labelled dataset."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness import api
from harness.cli.options import add_common, error_console, fmt, load_registry, print_json, wide_console


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a run on labelled data",
        description="Score a run on the training_set of a labelled npz.",
    )
    add_common(p)
    p.add_argument("run_id", help="run id (a unique prefix is enough)")
    p.add_argument("--data", required=True, help="labelled AN2DL .npz or dataset name")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    result = api.evaluate(args.run_id, args.data, store=args.store, device=args.device, plugins=registry)
    if args.format == "json":
        print_json(result)
        return 0
    table = Table(title=f"run {result['run_id']} on {result['data']} ({result['images']} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mIoU (an2dl)", fmt(result["miou_an2dl"]))
    table.add_row("mIoU (fg)", fmt(result["miou_fg"]))
    table.add_row("pixel accuracy", fmt(result["pixel_accuracy"]))
    for name, value in result["iou"].items():
        table.add_row(f"IoU {name}", fmt(value))
    add_variant_rows(table, result.get("variants") or {})
    wide_console().print(table)
    return 0


def add_variant_rows(table: Table, variants: dict) -> None:
    """One mIoU row per scoring variant of the model (maskrcnn: detections, semantic head, combined)."""
    for name, scores in variants.items():
        label = name if name == "combined" else f"{name} only"
        table.add_row(f"mIoU (an2dl), {label}", fmt(scores["miou_an2dl"]))
