"""The example third-party package (examples/harness-block-example) adds a block the harness uses.

`make setup` installs it into the project's venv, as a user would install any plugin package; these
tests go through the installed entry point, not through a fake one.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest

from harness import load_run
from harness.cli.app import main
from tests_support import TINY_ARGS

PACKAGE = "harness-block-example"
PROVIDER = "harness_block_example"  # the entry point's name


@pytest.fixture(autouse=True, scope="module")
def _installed():
    try:
        importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{PACKAGE} is not installed: run `make setup` (or pip install -e examples/{PACKAGE})")


def test_console_script_lists_the_block_with_its_provider():
    # The installed console script, in a fresh process: discovery through package metadata only.
    out = subprocess.run(
        [sys.executable, "-m", "harness", "list", "--kind", "block", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ghost"]["provider"] == PROVIDER  # not "(built-in)"
    assert rows["ghost"]["roles"] == ["bottleneck", "decoder", "encoder"]
    assert set(rows["ghost"]["params"]) == {"ratio", "cheap_kernel"}
    assert rows["se"]["provider"] == "plugins.blocks.se (built-in)"


def test_check_plugin_passes_the_block(capsys):
    code = main(["check-plugin", "ghost", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {row["check"] for row in rows} == {
        "shapes",
        "gradients",
        "norms",
        "params",
        "stage",
        "sampled params",
    }
    assert all(row["passed"] and row["kind"] == "block" for row in rows)


def test_a_one_epoch_run_uses_the_block(capsys, store_path):
    argv = [
        "run",
        "--arch",
        "unet",
        "--arch-param",
        "encoder_block=ghost",
        "--arch-param",
        "encoder_params.ratio=3",
    ]
    code = main([*argv, *TINY_ARGS, "--format", "json", "--store", str(store_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["status"] == "finished"
    # The store keeps the block and all its parameters, and the checkpoint loads back into that model.
    loaded = load_run(result["run_id"], store=store_path)
    params = loaded.record["config"]["arch"]["params"]
    assert params["encoder_block"] == "ghost" and params["encoder_params"] == {"ratio": 3, "cheap_kernel": 3}
    assert type(loaded.model.encoders[0][0]).__name__ == "GhostModule"


def test_disabling_the_plugin_makes_the_name_unknown(capsys, store_path):
    code = main(
        ["run", "-p", f"no:{PROVIDER}", "--arch-param", "encoder_block=ghost", "--store", str(store_path)]
    )
    assert code == 2 and "unknown block 'ghost' for encoder_block" in capsys.readouterr().err
