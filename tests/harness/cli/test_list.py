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
        "bounds": "≥ 1, ≤ 6",
        "description": "Number of 2x down-sampling steps.",
    }
    assert 1e6 <= unet["params_count"] <= 10e6 and unet["gflops"] > 0
    assert ("loss", "ce") in by_name and ("balancer", "none") in by_name


def test_list_name_shows_one_plugin_in_full(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_cli(capsys, "list", "se")
    assert code == 0
    assert out.splitlines()[0].startswith("block se: ")
    (row,) = [line for line in out.splitlines() if line.startswith("│ reduction")]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[:4] == ["reduction", "int", "8", "≥ 1, ≤ 64"] and cells[4].startswith("Channels")
    code, out, _ = run_cli(capsys, "list", "combo", "--format", "json")
    (combo,) = json.loads(out)
    assert combo["name"] == "combo" and combo["params"]["parts"]["description"]


def test_an_unknown_name_is_one_line_with_a_hint(capsys):
    code, _, err = run_cli(capsys, "list", "sse")
    assert code == 2
    assert (
        err.strip()
        == "harness: error: no plugin named 'sse'; did you mean 'se'? (`harness list` shows them all)"
    )


def test_the_overview_stays_readable_at_120_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_cli(capsys, "list", "--kind", "architecture")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 120
    rows = out.split("│ architecture │")[1:]
    assert all(len(row.strip().splitlines()) <= 5 for row in rows)  # maskrcnn's 31 parameters included
    assert "built-in" in out and "plugins.architectures" not in out  # providers are not cut mid-word
    maskrcnn = next(row for row in rows if row.lstrip().startswith("maskrcnn"))
    assert "more" in maskrcnn
