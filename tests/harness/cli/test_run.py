"""`harness run` (and the leaderboard, predict and evaluate of its run): bad input is one line, the happy
path works."""

from __future__ import annotations

import csv
import json

import numpy as np

from tests_support import TINY_ARGS, assert_bad_input, run_cli


def test_malformed_npz_is_one_line(capsys, store_path, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, training_set=np.zeros((4, 3, 8, 8), np.uint8))
    assert_bad_input(capsys, store_path, "run", "--data", str(bad), match="has shape (4, 3, 8, 8)")


def test_bad_toml_is_one_line(capsys, store_path, tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[train]\nepochs = = 3\n")
    assert_bad_input(capsys, store_path, "run", "--config", str(bad), match="run.toml: not valid TOML")


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
    assert code == 0 and "| unet[depth=2, width=4] |" in out.replace("  ", " ")

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


def test_clean_outliers_setting_is_accepted(capsys, store_path):
    code, out, err = run_cli(
        capsys, "run", *TINY_ARGS, "--set", "data.clean=outliers", "--store", str(store_path)
    )
    assert code == 0, err
    other = store_path.parent.parent / "other" / "x.sqlite"
    assert_bad_input(capsys, other, "run", "--set", "data.clean=aliens", match="data.clean")
