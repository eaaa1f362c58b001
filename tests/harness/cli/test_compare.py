"""`harness compare` the command: its flags and defaults, the table or JSON it prints, the verdict line, and
one-line refusals (the bootstrap itself: tests/harness/analysis/test_compare.py)."""

from __future__ import annotations

import json

import pytest

from harness.cli.app import build_parser, main
from harness.store import RunStore
from tests_support import add_run, per_image


@pytest.fixture
def store(store_path):
    with RunStore(store_path) as opened:
        yield opened


def compare_cli(capsys, store_path, *argv):
    code = main(["compare", *argv, "--store", str(store_path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_flags_and_their_defaults():
    args = build_parser().parse_args(["compare", "run-a", "cfg-b"])
    assert (args.a, args.b, args.resamples, args.seed, args.metric, args.format, args.store) == (
        "run-a",
        "cfg-b",
        2000,
        0,
        "an2dl",
        "table",
        None,
    )
    args = build_parser().parse_args(
        ["compare", "a", "b", "--metric", "fg", "--seed", "3", "--format", "json"]
    )
    assert (args.metric, args.seed, args.format) == ("fg", 3, "json")


def test_cli_json_and_one_line_refusal(store, store_path, capsys):
    add_run(store, "run-a", per_image(0.70, seed=1))
    add_run(store, "run-b", per_image(0.80, seed=2), config_hash="cfg-b")
    code = main(
        ["compare", "run-a", "run-b", "--store", str(store_path), "--format", "json", "--resamples", "400"]
    )
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert code == 0
    assert {
        "a",
        "b",
        "pairs",
        "images",
        "difference",
        "ci_low",
        "ci_high",
        "excludes_zero",
        "resamples",
    } <= set(data)
    assert (data["a"], data["b"], data["resamples"], data["metric"], data["direction"]) == (
        "run-a",
        "run-b",
        400,
        "an2dl",
        "b - a",
    )
    assert data["excludes_zero"] is True and data["ci_low"] > 0
    code = main(["compare", "run-a", "zzz", "--store", str(store_path)])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().count("\n") == 0 and err.startswith("harness: error: no run id")


def test_the_table_shows_both_sides_the_interval_and_says_which_is_better(store, store_path, capsys):
    add_run(store, "run-a", per_image(0.70, seed=1))
    add_run(store, "run-b", per_image(0.80, seed=2), config_hash="cfg-b")
    code, out, err = compare_cli(capsys, store_path, "run-a", "run-b", "--resamples", "300", "--seed", "4")
    assert code == 0 and err == ""
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "paired bootstrap of mIoU (an2dl): B − A" in lines
    assert {"pairs 1 (seed 0)", "resamples 300 (seed 4)"} <= set(lines)
    assert {"A unet on synthetic (run run-a)", "B unet on synthetic (run run-b)"} <= set(lines)
    assert "validation images 120 (resampled within each pair)" in lines
    (difference,) = [line for line in lines if line.startswith("B − A ")]
    assert difference.split()[-1].startswith("+")
    assert any(line.startswith("95% interval [+") for line in lines)
    assert lines[-1] == "the interval excludes zero: B is better on these validation images"
    _, out, _ = compare_cli(capsys, store_path, "run-b", "run-a", "--resamples", "300")
    assert out.splitlines()[-1] == "the interval excludes zero: A is better on these validation images"
    _, out, _ = compare_cli(capsys, store_path, "run-a", "run-a", "--resamples", "300", "--metric", "fg")
    assert "paired bootstrap of mIoU (fg): B − A" in out
    assert (
        out.splitlines()[-1] == "the interval contains zero: no clear difference on these validation images"
    )


def test_both_sides_are_named_by_their_variant_label_and_data(store, store_path, capsys):
    variant = {"arch": {"name": "unet", "params": {"bottleneck": "se"}}, "data": {"source": "synthetic"}}
    add_run(store, "run-a", per_image(0.70, seed=1))
    add_run(store, "run-b", per_image(0.80, seed=2), config_hash="cfg-b", config=variant)
    code, out, err = compare_cli(capsys, store_path, "run-a", "run-b", "--resamples", "50")
    assert code == 0, err
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "B unet[bottleneck=se] on synthetic (run run-b)" in lines
    code, out, _ = compare_cli(capsys, store_path, "run-a", "run-b", "--resamples", "50", "--format", "json")
    data = json.loads(out)
    assert (data["a_label"], data["b_label"], data["b_data"]) == ("unet", "unet[bottleneck=se]", "synthetic")


def test_config_groups_pair_by_seed_in_the_table(store, store_path, capsys):
    for seed in (0, 1):
        add_run(store, f"a-{seed}", per_image(0.7, seed=seed), seed=seed, config_hash="aaaa1111")
        add_run(store, f"b-{seed}", per_image(0.8, seed=seed + 5), seed=seed, config_hash="bbbb2222")
    code, out, _ = compare_cli(capsys, store_path, "aaaa", "bbbb", "--resamples", "200")
    lines = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert code == 0
    assert {"A unet on synthetic (config aaaa1111)", "B unet on synthetic (config bbbb2222)"} <= set(lines)
    assert "pairs 2 (seeds 0, 1)" in lines


def test_bad_flags_are_one_line_before_the_store_is_read(capsys, tmp_path):
    missing = tmp_path / "none.sqlite"
    for argv, message in [
        (["a", "b", "--resamples", "x"], "invalid int value: 'x'"),
        (["a", "b", "--format", "csv"], "invalid choice: 'csv'"),
        (["a"], "the following arguments are required: b"),
    ]:
        code, out, err = compare_cli(capsys, missing, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert message in err and "(see harness compare --help)" in err
    assert not missing.exists()
