"""`harness check-plugin`: the conformance kit on a built-in; an unknown name is one line."""

from __future__ import annotations

import json

from tests_support import run_cli


def test_check_plugin_passes_on_a_builtin_and_rejects_unknown(capsys):
    code, out, err = run_cli(capsys, "check-plugin", "ce", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {row["check"] for row in rows} == {"value", "ignore_index", "sampled params"} and all(
        row["passed"] for row in rows
    )
    code, _, err = run_cli(capsys, "check-plugin", "cee")
    assert code == 2 and "did you mean 'ce'?" in err
