"""`harness list`: every plugin with its provider, parameters and cost."""

from __future__ import annotations

import json

from tests_support import run_cli


def test_list_json_describes_every_plugin(capsys):
    code, out, _ = run_cli(capsys, "list", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    by_name = {(row["kind"], row["name"]): row for row in rows}
    unet = by_name[("architecture", "unet")]
    assert set(unet) >= {"kind", "name", "summary", "provider", "params", "params_count", "gflops"}
    assert unet["params"]["depth"] == {
        "type": "int",
        "default": 4,
        "description": "Number of 2x down-sampling steps.",
    }
    assert 1e6 <= unet["params_count"] <= 10e6 and unet["gflops"] > 0
    assert ("loss", "ce") in by_name and ("balancer", "none") in by_name
