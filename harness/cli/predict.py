"""`harness predict`: a run's best checkpoint (or an ensemble of runs, with optional test-time
augmentation) on a dataset's test_set, written as a submission CSV; or on a folder of images, written as
one PNG mask per image."""

from __future__ import annotations

import argparse
import sys

from harness import api
from harness.cli.options import add_common, add_ensemble_options, error_console, load_registry


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="write a submission CSV, or PNG masks for a folder of images",
        description="Predict a dataset's test_set (or a folder of images) with a run's best checkpoint, "
        "or with the ensemble of several runs.",
    )
    add_common(p)
    add_ensemble_options(p)
    p.add_argument(
        "--data",
        required=True,
        help="AN2DL .npz (its test_set), dataset name, or a folder or glob of PNG/JPEG/TIFF images",
    )
    p.add_argument(
        "--out",
        required=True,
        help="for an npz: the CSV path (header id,0..H*W-1, one row per test image); for a folder of "
        "images: a directory, one PNG of class indices per image with the image's name",
    )
    p.add_argument(
        "--palette", action="store_true", help="with a folder: also a coloured preview NAME.palette.png"
    )
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    masks = api.predict(
        args.run_id,
        args.data,
        out=args.out,
        store=args.store,
        device=args.device,
        plugins=registry,
        tta=args.tta,
        weights=args.weights,
        palette=args.palette,
        notice=lambda line: print(line, file=sys.stderr),
    )
    if isinstance(masks, list):
        print(f"wrote {args.out}: {len(masks)} PNG masks, one per image")
    else:
        print(f"wrote {args.out}: {len(masks)} test images, {masks.shape[1]}x{masks.shape[2]} masks")
    return 0
