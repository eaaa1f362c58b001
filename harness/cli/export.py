"""`harness export`: a run's model as an ONNX file (normalisation built in, dynamic batch axis), checked in
onnxruntime against PyTorch on a few validation images."""

from __future__ import annotations

import argparse

from harness import api
from harness.cli.options import add_common, error_console, load_registry, print_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's model as ONNX",
        description="Export a run's best checkpoint to ONNX: input `images` float32 (batch,1,H,W) raw pixel "
        "values 0-255 (the normalisation is inside), output `logits` (batch,K,H,W), dynamic batch axis. "
        "Then run it in onnxruntime on a few validation images and print the largest difference to "
        "PyTorch. Needs the export extra: pip install 'segharness[export]'.",
    )
    add_common(p)
    p.add_argument("run_id", help="run id (a unique prefix is enough)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="the only format: onnx (default)")
    p.add_argument("--out", help="file to write; default model.onnx in the run's directory")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args, error_console())
    result = api.export(args.run_id, out=args.out, format=args.format, store=args.store, plugins=registry)
    if args.json:
        print_json(result)
        return 0
    print(f"wrote {result['out']}: ONNX opset {result['opset']}, dynamic batch axis")
    print(f"input {result['input']}; output {result['output']}")
    images, difference = result["images"], result["max_abs_diff"]
    print(f"onnxruntime vs PyTorch on {images} validation images: max |difference| {difference:.2e}")
    return 0
