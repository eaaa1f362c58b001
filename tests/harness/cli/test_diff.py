"""`harness diff A B` the command, on two tiny real runs that differ in one architecture parameter and the
seed: by run ids, run id prefixes and config hash prefixes; the table, the JSON, the "no difference" line and
one-line refusals (the comparison itself: tests/harness/analysis/test_diff.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli.app import build_parser, main
from harness.store import RunStore
from tests_support import TINY_ARGS, run_cli


@dataclass(frozen=True)
class Two:
    store: Path
    a: dict  # seed 0, the default bottleneck (conv)
    b: dict  # seed 1, --arch-param bottleneck=se


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Two:
    store = tmp_path_factory.mktemp("diff") / "runs" / "harness.sqlite"
    assert main(["run", *TINY_ARGS, "--store", str(store)]) == 0
    assert (
        main(["run", *TINY_ARGS, "--arch-param", "bottleneck=se", "--seed", "1", "--store", str(store)]) == 0
    )
    with RunStore(store, create=False) as opened:
        newest, oldest = opened.list_runs()
    return Two(store, oldest, newest)


def diff_cli(capsys, two, *argv):
    return run_cli(capsys, "diff", *argv, "--store", str(two.store))


def test_the_flags_and_their_defaults():
    args = build_parser().parse_args(["diff", "run-a", "cfg-b"])
    assert (args.a, args.b, args.format, args.store) == ("run-a", "cfg-b", "table", None)
    assert build_parser().parse_args(["diff", "a", "b", "--format", "json"]).format == "json"


def test_diff_by_run_ids_shows_only_the_setting_and_the_seed(capsys, two):
    code, out, err = diff_cli(capsys, two, two.a["run_id"], two.b["run_id"])
    assert code == 0, err
    assert f"A: run {two.a['run_id']} (config {two.a['config_hash'][:8]}, seed 0)" in out
    assert f"B: run {two.b['run_id']} (config {two.b['config_hash'][:8]}, seed 1)" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 4}
    assert set(rows) == {"seed", "arch.params.bottleneck", "arch.params.bottleneck_params.reduction"}
    assert [c.strip() for c in rows["arch.params.bottleneck"].split("│")[2:4]] == ["conv", "se"]
    assert [c.strip() for c in rows["arch.params.bottleneck_params.reduction"].split("│")[2:4]] == ["–", "8"]
    assert "3 settings differ" in out
    assert "train.lr" not in out and "data.source" not in out  # equal settings are not shown


def _differences(capsys, two, a, b):
    code, out, err = diff_cli(capsys, two, a, b, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_prefixes_and_config_hash_prefixes_resolve_to_the_same_differences(capsys, two):
    by_ids = _differences(capsys, two, two.a["run_id"], two.b["run_id"])
    by_prefixes = _differences(capsys, two, two.a["run_id"][:-2], two.b["run_id"][:-2])
    by_hashes = _differences(capsys, two, two.a["config_hash"][:6], two.b["config_hash"][:6])
    assert by_ids["differences"] == by_prefixes["differences"] == by_hashes["differences"]
    assert by_prefixes["a"]["key"] == two.a["run_id"] and by_prefixes["a"]["kind"] == "run"
    assert by_hashes["a"] == {
        "kind": "config",
        "key": two.a["config_hash"],
        "config_hash": two.a["config_hash"],
        "runs": [two.a["run_id"]],
        "seeds": [0],
    }


def test_json_shape(capsys, two):
    data = _differences(capsys, two, two.a["run_id"], two.b["run_id"])
    assert set(data) == {"a", "b", "same", "differences"} and data["same"] is False
    assert data["differences"] == [
        {"key": "seed", "a": 0, "b": 1},
        {"key": "arch.params.bottleneck", "a": "conv", "b": "se"},
        {"key": "arch.params.bottleneck_params.reduction", "a": {"missing": True}, "b": 8},
    ]
    assert data["b"]["seeds"] == [1] and data["b"]["runs"] == [two.b["run_id"]]


def test_nothing_differs_is_one_line(capsys, two):
    code, out, err = diff_cli(capsys, two, two.a["run_id"], two.a["config_hash"][:8])
    assert code == 0, err
    assert out.strip().splitlines() == [
        f"no difference: A run {two.a['run_id']} (config {two.a['config_hash'][:8]}, seed 0) and B config "
        f"{two.a['config_hash'][:8]} (1 finished run, seed 0) have the same settings, seed and data"
    ]
    data = _differences(capsys, two, two.b["run_id"], two.b["run_id"])
    assert data["same"] is True and data["differences"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuchrun", "{b}"], "no run id or config hash starts with 'nosuchrun'"),
        (["{b}", "2"], "'2' is ambiguous"),
        (["{a}", "{b}", "--format", "yaml"], "argument --format: invalid choice: 'yaml'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_the_store_untouched(capsys, two, argv, message):
    before = two.store.stat().st_mtime_ns, sorted(p.name for p in two.store.parent.iterdir())
    filled = [a.format(a=two.a["run_id"], b=two.b["run_id"]) for a in argv]
    code, out, err = diff_cli(capsys, two, *filled)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and message in lines[0], err
    assert (two.store.stat().st_mtime_ns, sorted(p.name for p in two.store.parent.iterdir())) == before


def test_a_missing_store_is_one_line_and_creates_nothing(capsys, store_path):
    code, _, err = run_cli(capsys, "diff", "a", "b", "--store", str(store_path))
    assert code == 2 and "no run store at" in err and len(err.strip().splitlines()) == 1
    assert not store_path.parent.exists()
