"""`harness run` (and the leaderboard, predict and evaluate of its run): bad input is one line, the happy
path works."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

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


def _grouped_npz(tmp_path) -> str:
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (12, 8, 8)), rng.integers(0, 5, (12, 8, 8))], axis=1)
    path = tmp_path / "grouped.npz"
    np.savez(path, training_set=train.astype(np.uint8), groups=np.repeat([0, 1], 6))
    return str(path)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--folds", "1"], "data.folds"),
        (["--fold", "1"], "fold 1 needs folds"),
        (["--folds", "3", "--fold", "3"], "fold 3 is not one of 0..2"),
        (["--folds", "25"], "25 folds need at least 25 images, it has 24"),
        (["--folds", "3", "--data", "GROUPED"], "need at least 3 groups, it has 2: a fold would be empty"),
    ],
)
def test_fold_settings_that_cannot_work_are_one_line_and_store_nothing(
    capsys, store_path, tmp_path, flags, match
):
    argv = ["--epochs", "1", "--data", _grouped_npz(tmp_path)] if "GROUPED" in flags else TINY_ARGS
    flags = [flag for flag in flags if flag not in ("--data", "GROUPED")]
    assert_bad_input(capsys, store_path, "run", *argv, *flags, match=match)


def test_run_folds_trains_every_fold_as_runs_of_one_configuration(capsys, store_path):
    store = ["--store", str(store_path)]
    code, out, err = run_cli(capsys, "run", *TINY_ARGS, "--folds", "2", *store)
    assert code == 0, err
    assert out.count(" finished: val mIoU") == 2 and "on fold 1 of 2" in out
    code, out, _ = run_cli(capsys, "leaderboard", "--format", "json", *store)
    (row,) = json.loads(out)
    assert row["n"] == 2 and sorted(row["folds"]) == [0, 1] and row["miou_oof"] is not None
    validated = []
    for run_id in row["run_ids"]:
        with np.load(store_path.parent / run_id / "val_per_image.npz") as files:
            validated += files["indices"].tolist()
    assert sorted(validated) == list(range(24))  # each image validated by exactly one fold
    out_csv = store_path.parent / "submission.csv"
    code, _, err = run_cli(
        capsys, "predict", row["config"], "--data", "synthetic", "--out", str(out_csv), *store
    )
    assert code == 0 and "ensemble of 2 runs" in err, err  # the fold models, probabilities averaged
