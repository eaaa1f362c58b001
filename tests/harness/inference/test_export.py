"""ONNX export: for every registered architecture that exports, onnxruntime's output matches PyTorch's
within 1e-4 at two batch sizes (the batch axis is dynamic); one that cannot (Mask R-CNN's data-dependent
detection) is refused in one line. Skipped only where onnxruntime is missing (the export extra)."""

from __future__ import annotations

import pytest
import torch

from harness.conformance.kit import shallow_params
from harness.errors import HarnessError
from harness.inference.export import Exportable, export_onnx, onnx_max_difference
from harness.inference.scoring import Normalisation
from harness.plugins import load_plugins

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'segharness[export]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'segharness[export]')")

REGISTRY = load_plugins()
ARCHITECTURES = [provided.spec for provided in REGISTRY.all("architecture")]


def exportable(spec) -> Exportable:
    params = shallow_params(spec, REGISTRY)
    torch.manual_seed(0)
    model = spec.build(params, in_channels=1, num_classes=5).eval()
    return Exportable(model, Normalisation(90.0, 30.0), spec.multiple(params))


@pytest.mark.parametrize("spec", ARCHITECTURES, ids=lambda spec: spec.name)
def test_onnx_matches_pytorch_or_is_refused_in_one_line(spec, tmp_path):
    module = exportable(spec)
    images = torch.randint(0, 256, (3, 1, 32, 64), generator=torch.Generator().manual_seed(1)).float()
    out = tmp_path / f"{spec.name}.onnx"
    if spec.instance_based:
        with pytest.raises(HarnessError, match=f"architecture '{spec.name}' cannot be exported to ONNX"):
            export_onnx(module, images[:2], out, arch=spec.name)
        return
    export_onnx(module, images[:2], out, arch=spec.name)
    assert onnx_max_difference(out, module, images) < 1e-4  # 3 images, exported with 2: dynamic batch
    assert onnx_max_difference(out, module, images[:1]) < 1e-4


def test_the_graph_has_the_normalisation_inside():
    spec = REGISTRY.get("architecture", "unet")
    module = exportable(spec)
    x = torch.full((2, 1, 32, 64), 90.0)  # the mean: the model sees zeros
    with torch.no_grad():
        assert torch.allclose(module(x), module.model(torch.zeros(2, 1, 32, 64)), atol=1e-6)
