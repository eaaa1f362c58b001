"""`harness export` the command: the ONNX file, its opset and the difference to PyTorch in three lines;
one-line refusals for an architecture that cannot export and for a path that cannot be written."""

from __future__ import annotations

import json

import pytest

from harness import api
from harness.errors import HarnessError
from harness.plugins import load_plugins
from tests_support import run_cli

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'segharness[export]')")


def test_writes_the_file_and_prints_opset_and_difference(capsys, trained, tmp_path):
    out = tmp_path / "model.onnx"
    argv = ["export", trained.run_id[:12], "--out", str(out), "--store", str(trained.store), "--json"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    result = json.loads(stdout)
    assert out.is_file() and result["out"] == str(out) and result["opset"] == 18
    assert result["images"] == 4 and result["max_abs_diff"] < 1e-4
    assert result["input"] == "images: float32 (batch, 1, 64, 128), pixels 0-255"
    code, stdout, err = run_cli(capsys, *argv[:-1])
    assert code == 0 and stdout.splitlines()[0] == f"wrote {out}: ONNX opset 18, dynamic batch axis"
    assert "validation images: max |difference|" in stdout.splitlines()[2]


def test_an_instance_based_architecture_is_refused_in_one_line(trained, monkeypatch):
    load_run = api.load_run
    maskrcnn = load_plugins().get("architecture", "maskrcnn")

    def as_maskrcnn(*args, **kwargs):
        loaded = load_run(*args, **kwargs)
        loaded.resolved = loaded.resolved.model_copy(update={"arch": maskrcnn})
        return loaded

    monkeypatch.setattr(api, "load_run", as_maskrcnn)
    with pytest.raises(
        HarnessError, match="architecture 'maskrcnn' cannot be exported to ONNX: its detection"
    ):
        api.export(trained.run_id, store=trained.store)


def test_a_path_that_cannot_be_written_is_refused(capsys, trained, tmp_path):
    argv = ["export", trained.run_id, "--out", str(tmp_path / "no" / "m.onnx"), "--store", str(trained.store)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "cannot write there" in err and len(err.strip().splitlines()) == 1
