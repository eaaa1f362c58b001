"""`harness predict`: a run's best checkpoint on a dataset's test_set, written as a submission CSV."""

from __future__ import annotations

import argparse

from harness import api
from harness.cli.options import add_common, error_console, load_registry


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="write a submission CSV",
        description="Predict a dataset's test_set with a run's best checkpoint.",
    )
    add_common(p)
    p.add_argument("run_id", help="run id (a unique prefix is enough)")
    p.add_argument("--data", required=True, help="AN2DL .npz (its test_set) or dataset name")
    p.add_argument("--out", required=True, help="CSV path: header id,0..H*W-1, one row per test image")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    masks = api.predict(
        args.run_id, args.data, out=args.out, store=args.store, device=args.device, plugins=registry
    )
    print(f"wrote {args.out}: {len(masks)} test images, {masks.shape[1]}x{masks.shape[2]} masks")
    return 0
