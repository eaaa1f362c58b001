"""The `harness` command: bad input is one line and exit 2 with an untouched store; the happy path works."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from harness.cli.app import main
from tests_support import TINY_ARGS


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_bad_input(capsys, store_path, *argv, match):
    code, out, err = run_cli(capsys, *argv, "--store", str(store_path))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert match in lines[0]
    assert not store_path.exists() and not store_path.parent.exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "--arch", "unett"], "unknown architecture 'unett'; did you mean 'unet'?"),
        (["run", "--loss", "cee"], "unknown loss 'cee'; did you mean 'ce'?"),
        (["run", "--arch-param", "depth=99"], "bad architecture parameter for 'unet': depth"),
        (["run", "--arch-param", "widht=8"], "did you mean 'width'?"),
        (["run", "--arch-param", "depth"], "--arch-param expects key=value"),
        (["run", "--set", "train.epochs=zero"], "train.epochs"),
        (["run", "--set", "trian.epochs=1"], "unknown setting 'trian'"),
        (["run", "--data", "missing/file.npz"], "missing/file.npz: no such file"),
        (["run", "--config", "nope.toml"], "nope.toml: config file not found"),
        (["run", "--epochs", "many"], "invalid int value"),
        (["run", "--device", "cuda:7"], "device 'cuda:7'"),
        (["frobnicate"], "invalid choice"),
        (["list", "-p", "unet"], "-p expects no:NAME"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_store(capsys, store_path, argv, match):
    if argv[-1] == "cuda:7" and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert_bad_input(capsys, store_path, *argv, match=match)


def test_malformed_npz_is_one_line(capsys, store_path, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, training_set=np.zeros((4, 3, 8, 8), np.uint8))
    assert_bad_input(capsys, store_path, "run", "--data", str(bad), match="has shape (4, 3, 8, 8)")


def test_bad_toml_is_one_line(capsys, store_path, tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[train]\nepochs = = 3\n")
    assert_bad_input(capsys, store_path, "run", "--config", str(bad), match="run.toml: not valid TOML")


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


def test_run_leaderboard_predict_evaluate(capsys, store_path, tmp_path):
    store = ["--store", str(store_path)]
    code, out, err = run_cli(capsys, "run", *TINY_ARGS, *store, "--format", "json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]

    code, out, _ = run_cli(capsys, "leaderboard", "--format", "json", "--by", "run", *store)
    (row,) = json.loads(out)
    assert row["run_id"] == run_id and row["arch"] == "unet" and row["status"] == "finished"
    assert set(row["iou"]) >= {"soil", "bedrock", "sand", "big rock"}
    code, out, _ = run_cli(capsys, "leaderboard", "--format", "json", *store)
    (group,) = json.loads(out)
    assert group["run_ids"] == [run_id] and group["n"] == 1 and group["miou_mean"] == row["miou"]

    code, out, _ = run_cli(capsys, "leaderboard", "--format", "markdown", *store)
    assert code == 0 and "| unet |" in out.replace("  ", " ")

    data = tmp_path / "mars.npz"
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (6, 64, 128)), rng.integers(0, 5, (6, 64, 128))], axis=1)
    np.savez(data, training_set=train.astype(np.float64), test_set=rng.integers(0, 256, (5, 64, 128)))
    submission = tmp_path / "submission.csv"
    code, out, err = run_cli(
        capsys, "predict", run_id[:12], "--data", str(data), "--out", str(submission), *store
    )
    assert code == 0, err
    with submission.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", *map(str, range(64 * 128))]
    assert len(rows) == 6 and [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    values = np.array([r[1:] for r in rows[1:]], dtype=int)
    assert values.min() >= 1 and values.max() <= 4  # background never predicted

    code, out, err = run_cli(capsys, "evaluate", run_id, "--data", str(data), "--format", "json", *store)
    assert code == 0, err
    scored = json.loads(out)
    assert scored["images"] == 6 and 0 <= scored["miou_an2dl"] <= 1


def test_unknown_run_id_is_one_line(capsys, store_path):
    run_cli(capsys, "run", *TINY_ARGS, "--store", str(store_path))
    code, _, err = run_cli(
        capsys, "predict", "nope", "--data", "synthetic", "--out", "x.csv", "--store", str(store_path)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_leaderboard_on_missing_store_creates_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(store_path))
    assert code == 0 and "no" in out
    assert not store_path.exists()


def test_console_script_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "list", "leaderboard", "predict", "evaluate"):
        assert command in out


def test_check_plugin_passes_on_a_builtin_and_rejects_unknown(capsys):
    code, out, err = run_cli(capsys, "check-plugin", "ce", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {row["check"] for row in rows} == {"value", "ignore_index"} and all(row["passed"] for row in rows)
    code, _, err = run_cli(capsys, "check-plugin", "cee")
    assert code == 2 and "did you mean 'ce'?" in err


def test_data_inspect_json_and_preview_sheet(capsys, tmp_path, store_path):
    code, out, err = run_cli(capsys, "data", "inspect", "synthetic", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert {"classes", "duplicate_mask_groups", "outliers", "summary"} <= set(report)
    assert report["summary"]["images"] == 512

    sheet = tmp_path / "sheet.png"
    code, out, err = run_cli(
        capsys, "data", "preview", "--balancer", "oversample", "--data-param", "n=48", "--out", str(sheet)
    )
    assert code == 0, err
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not store_path.exists()

    code, _, err = run_cli(capsys, "data", "preview", "--out", str(sheet), "--count", "500")
    assert code == 2 and "--count must be between 1 and 64" in err


def test_clean_outliers_setting_is_accepted(capsys, store_path):
    code, out, err = run_cli(
        capsys, "run", *TINY_ARGS, "--set", "data.clean=outliers", "--store", str(store_path)
    )
    assert code == 0, err
    other = store_path.parent.parent / "other" / "x.sqlite"
    assert_bad_input(capsys, other, "run", "--set", "data.clean=aliens", match="data.clean")
