"""`harness evaluate`: score a run's best checkpoint (or an ensemble of runs, with optional test-time
augmentation) on the training_set of a labelled dataset, or on a folder of images and their masks.

On the runs' own data it leaves out the images they trained on (`--all` includes them) and says which
images it scored; a progress bar on stderr counts them (`--no-progress` hides it); `--limit N` scores the
first N of them.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

from rich.table import Table
from rich.text import Text

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
        description="Score a run (or the ensemble of several) on the training_set of a labelled npz or "
        "dataset, or on a folder of images against --masks. On the data the runs trained on (recognised by "
        "content) the images of their training splits are left out, so the score is not inflated by images "
        "a model has seen; --all scores them too. The output says which images were scored.",
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
    p.add_argument("--limit", type=int, metavar="N", help="score at most the first N of the chosen images")
    p.add_argument(
        "--all",
        dest="include_training",
        action="store_true",
        help="also score the images the run trained on (on its own data they are left out by default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class _Bar:
    """A transient rich bar over the images being scored, on stderr."""

    def __init__(self):
        from harness.training.progress import progress_bar

        self.progress = progress_bar(transient=True, console=error_console())
        self.task = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("scoring", total=total, status="images")

    def advance(self, images: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, images)


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    # A bar only where someone watches: on a log file or a pipe it would be noise.
    show = not args.no_progress and error_console().is_terminal
    with _Bar() if show else nullcontext() as bar:
        result = api.evaluate(
            args.run_id, args.data, store=args.store, device=args.device, plugins=registry,
            include_training=args.include_training, limit=args.limit,
            on_start=bar.start if bar else None, on_batch=bar.advance if bar else None,
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
    table = Table(title=Text(f"{who} on {result['data']} ({result['images']} images)"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mIoU (an2dl)", fmt(result["miou_an2dl"]))
    table.add_row("mIoU (fg)", fmt(result["miou_fg"]))
    table.add_row("pixel accuracy", fmt(result["pixel_accuracy"]))
    for name, value in result["iou"].items():
        table.add_row(f"IoU {name}", fmt(value))
    add_variant_rows(table, result.get("variants") or {})
    console = wide_console()
    console.print(table)
    console.print(Text(f"scored: {result['scored']}"), soft_wrap=True)
    return 0


def add_variant_rows(table: Table, variants: dict) -> None:
    """One mIoU row per scoring variant of the model (maskrcnn: detections, semantic head, combined)."""
    for name, scores in variants.items():
        label = name if name == "combined" else f"{name} only"
        table.add_row(f"mIoU (an2dl), {label}", fmt(scores["miou_an2dl"]))
