"""`harness evaluate` the command: --data is required, the metrics table (a row per class, – for the ignored
one) or the JSON of api.evaluate, exit code 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import io

from harness import api
from harness.cli.app import build_parser, main
from harness.data.synthetic import synthetic

CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A small labelled AN2DL npz (4 images, no test_set: evaluate needs none)."""
    path = tmp_path_factory.mktemp("evaluate") / "labelled.npz"
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (4, 64, 128)), rng.integers(0, 5, (4, 64, 128))], axis=1)
    np.savez(path, training_set=train.astype(np.uint8))
    return path


def evaluate_cli(capsys, trained, *argv):
    code = main(["evaluate", trained.run_id, *argv, "--store", str(trained.store)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_flags_and_their_defaults(capsys):
    args = build_parser().parse_args(["evaluate", "abc", "--data", "x.npz"])
    assert (args.run_id, args.data, args.format, args.device, args.store, args.tta, args.masks) == (
        ["abc"],
        "x.npz",
        "table",
        "auto",
        None,
        "none",
        None,
    )
    assert main(["evaluate", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "harness: error: the following arguments are required: --data (see harness evaluate --help)"
    )


def test_json_is_what_the_api_returns(capsys, trained, labelled):
    code, out, err = evaluate_cli(
        capsys, trained, "--data", str(labelled), "--format", "json", "--device", "cpu"
    )
    assert code == 0, err
    shown = json.loads(out)
    want = api.evaluate(trained.run_id, str(labelled), store=trained.store, device="cpu")
    assert shown == json.loads(json.dumps(want))  # the same numbers, printed as JSON
    assert shown["run_id"] == trained.run_id and shown["data"] == str(labelled) and shown["images"] == 4
    assert list(shown["iou"]) == CLASSES


def test_the_table_has_a_row_per_metric_and_class(capsys, trained, labelled):
    code, out, err = evaluate_cli(capsys, trained, "--data", str(labelled), "--device", "cpu")
    assert code == 0 and err == ""
    squeezed = "".join(out.split())  # the title wraps (anywhere, even inside the path) at the table's width
    assert "".join(f"run {trained.run_id} on {labelled} (4 images)".split()) in squeezed
    assert "┃ metric" in out and "value ┃" in out  # the header
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    scored = api.evaluate(trained.run_id, str(labelled), store=trained.store, device="cpu")
    assert list(rows) == [
        "mIoU (an2dl)",
        "mIoU (fg)",
        "pixel accuracy",
        *(f"IoU {name}" for name in CLASSES),
    ]
    assert rows["mIoU (an2dl)"] == f"{scored['miou_an2dl']:.4f}"
    assert rows["pixel accuracy"] == f"{scored['pixel_accuracy']:.4f}"
    assert rows["IoU background"] == "–"  # the ignored class has no IoU
    assert rows["IoU sand"] == f"{scored['iou']['sand']:.4f}"


def test_each_row_shows_its_own_number_with_four_decimals(capsys, monkeypatch):
    seen = {}

    def fake_evaluate(
        run_id, data, *, store, device, plugins, include_training, limit, on_start, on_batch, **more
    ):
        seen.update(run_id=run_id, data=data, store=store, device=device)
        assert (include_training, limit, on_start, on_batch) == (False, None, None, None)  # no bar on a pipe
        assert more == {"tta": "none", "weights": None, "masks": None}
        iou = {"background": None, "soil": 0.123456, "sand": float("nan")}
        return {
            "run_id": "r1",
            "data": "d.npz",
            "images": 9,
            "miou_an2dl": 0.5,
            "miou_fg": 0.25,
            "pixel_accuracy": 0.75,
            "iou": iou,
            "scored": "all 9 images (not the data this run trained on)",
        }

    monkeypatch.setattr(api, "evaluate", fake_evaluate)
    assert main(["evaluate", "r1", "--data", "d.npz", "--store", "s.sqlite", "--device", "cpu"]) == 0
    assert seen == {"run_id": ["r1"], "data": "d.npz", "store": "s.sqlite", "device": "cpu"}
    out = capsys.readouterr().out
    rows = [" ".join(line.replace("│", " ").split()) for line in out.splitlines() if line.startswith("│")]
    assert out.splitlines()[-1] == "scored: all 9 images (not the data this run trained on)"
    assert rows == [
        "mIoU (an2dl) 0.5000",
        "mIoU (fg) 0.2500",
        "pixel accuracy 0.7500",
        "IoU background –",
        "IoU soil 0.1235",
        "IoU sand –",  # NaN (no pixels of the class) shows as – too
    ]


def test_on_the_runs_own_data_its_training_images_are_left_out(trained):
    # The trained fixture is TINY_CONFIG: synthetic n=24, split with val_fraction 0.2 (5 validation images).
    own = synthetic(n=24, test_n=3)
    scored = api.evaluate(trained.run_id, own, store=trained.store, device="cpu")
    assert (scored["images"], scored["trained_on"]) == (5, 19)
    assert scored["scored"].startswith("5 of 24 images: the 19 this run trained on are left out")
    every = api.evaluate(trained.run_id, own, store=trained.store, device="cpu", include_training=True)
    assert every["images"] == 24 and "including the 19 this run trained on (--all)" in every["scored"]
    other = api.evaluate(trained.run_id, synthetic(n=24, test_n=3, seed=5), store=trained.store, device="cpu")
    assert (other["images"], other["trained_on"]) == (24, 0)  # other content: nothing was trained on


def test_the_cli_says_which_images_it_scored_and_takes_a_limit(capsys, trained, labelled):
    code, out, err = evaluate_cli(capsys, trained, "--data", str(labelled), "--limit", "3", "--device", "cpu")
    assert code == 0, err
    assert "(3 images)" in out
    scored = "scored: all 4 images (not the data this run trained on); the first 3 of them (--limit)"
    assert out.splitlines()[-1] == scored
    code, _, err = evaluate_cli(capsys, trained, "--data", str(labelled), "--limit", "0")
    assert code == 2 and err.strip() == "harness: error: --limit must be at least 1, got 0"


def test_a_folder_of_images_with_its_masks_scores_as_the_npz_does(capsys, trained, labelled, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    with np.load(labelled) as archive:
        train = archive["training_set"]
    for i, (image, mask) in enumerate(train):
        io.imsave(images / f"frame{i}.png", image, check_contrast=False)
        io.imsave(masks / f"frame{i}.png", mask, check_contrast=False)
    argv = ["--data", str(images), "--masks", str(masks), "--format", "json", "--device", "cpu"]
    code, out, err = evaluate_cli(capsys, trained, *argv)
    assert code == 0, err
    from_folder = json.loads(out)
    from_npz = api.evaluate(trained.run_id, str(labelled), store=trained.store, device="cpu")
    assert from_folder["images"] == 4 and from_folder["iou"] == json.loads(json.dumps(from_npz["iou"]))
    (masks / "frame3.png").unlink()
    code, _, err = evaluate_cli(capsys, trained, *argv)
    assert code == 2 and f"{masks}: no mask for image frame3.png" in err
    code, _, err = evaluate_cli(capsys, trained, "--data", str(images))
    assert code == 2 and "needs --masks MASKS_DIR" in err


def test_tta_and_an_ensemble_say_what_ran(capsys, trained, labelled):
    argv = ["--data", str(labelled), "--device", "cpu", "--tta", "flips", "--weights", "1"]
    code, out, err = evaluate_cli(capsys, trained, *argv)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "tta flips on 64x128: identity, hflip, vflip, rot180",
        f"ensemble of 1 runs: {trained.run_id}",
    ]
    scored = api.evaluate(trained.run_id, str(labelled), store=trained.store, device="cpu", tta="flips")
    plain = api.evaluate(trained.run_id, str(labelled), store=trained.store, device="cpu")
    assert scored["tta"] == "tta flips on 64x128: identity, hflip, vflip, rot180" and "tta" not in plain
    code, _, err = evaluate_cli(capsys, trained, "--data", str(labelled), "--weights", "1,x")
    assert code == 2 and "'1,x' is not a comma-separated list of numbers" in err
