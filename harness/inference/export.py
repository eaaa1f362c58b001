"""ONNX export: a run's model with its input normalisation built in, a dynamic batch axis, checked
against PyTorch in onnxruntime.

The exported graph takes `images`, float32 (B,1,H,W) raw pixel values (0-255, as the npz holds them),
and returns `logits` (B,K,H,W); the argmax over K (never the ignored class) is the mask. H and W are the
frame the run was trained on; the batch is dynamic. `onnx`, `onnxscript` and `onnxruntime` come with the
`export` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError
from harness.inference.scoring import Normalisation, forward_logits

OPSET = 18  # supported by onnxruntime 1.16 and later
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class Exportable(nn.Module):
    """Raw (B,1,H,W) pixels in, logits out: normalisation, padding to the multiple and cropping inside."""

    def __init__(self, model: nn.Module, norm: Normalisation, multiple: int):
        super().__init__()
        self.model = model
        self.mean, self.std, self.multiple = norm.mean, norm.std, multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = forward_logits(self.model, (images - self.mean) / self.std, self.multiple)
        return out[-1] if isinstance(out, list) else out


def _onnx_modules():
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it and onnxscript)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise HarnessError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({exc.name} is missing): "
            "pip install 'segharness[export]'"
        ) from None
    return onnxruntime


def export_onnx(module: Exportable, example: torch.Tensor, out: Path, *, arch: str) -> None:
    """Write `module` as ONNX (opset OPSET, dynamic batch) to `out`; one line when the graph cannot export."""
    _onnx_modules()
    module.eval()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" and the exporter's step-by-step log
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:  # torch.export's errors are many and long: the first line says enough
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise HarnessError(f"architecture {arch!r} cannot be exported to ONNX: {first}") from None
    finally:
        quiet.setLevel(level)
    program.save(str(out))


def onnx_max_difference(path: Path, module: Exportable, images: torch.Tensor) -> float:
    """The largest absolute difference between onnxruntime's logits for `images` and PyTorch's."""
    runtime = _onnx_modules()
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images.float().numpy()})[0]
    with torch.no_grad():
        want = module.eval()(images.float()).numpy()
    return float(np.abs(got - want).max())
