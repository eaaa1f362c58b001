"""`harness data inspect|preview`: the report as JSON, the preview sheet, bad --count."""

from __future__ import annotations

import json

from tests_support import run_cli


def test_data_inspect_json_and_preview_sheet(capsys, tmp_path, store_path):
    code, out, err = run_cli(capsys, "data", "inspect", "synthetic", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert {"classes", "duplicate_mask_groups", "outliers", "summary", "neighbours"} <= set(report)
    assert report["summary"]["images"] == 512
    assert {"edge_pairs", "hash_pairs", "groups", "largest_group"} <= set(report["neighbours"])
    code, out, _ = run_cli(capsys, "data", "inspect", "synthetic")
    assert code == 0 and "neighbour pairs" in out and "near-duplicate pairs" in out

    sheet = tmp_path / "sheet.png"
    code, out, err = run_cli(
        capsys, "data", "preview", "--balancer", "oversample", "--data-param", "n=48", "--out", str(sheet)
    )
    assert code == 0, err
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not store_path.exists()

    code, _, err = run_cli(capsys, "data", "preview", "--out", str(sheet), "--count", "500")
    assert code == 2 and "--count must be between 1 and 64" in err
