"""`harness predict` the command: --data and --out are required, the submission CSV and the one line it
prints on success, one-line refusals that write nothing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skimage import io

from harness import api
from harness.cli.app import build_parser, main
from harness.data.synthetic import synthetic
from tests_support import run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An AN2DL npz with 2 labelled and 3 test images; and one without a test_set."""
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    train = np.stack([rng.integers(0, 256, (2, 64, 128)), rng.integers(0, 5, (2, 64, 128))], axis=1)
    np.savez(
        folder / "mars.npz", training_set=train.astype(np.uint8), test_set=rng.integers(0, 256, (3, 64, 128))
    )
    np.savez(folder / "labelled.npz", training_set=train.astype(np.uint8))
    return folder


def test_the_flags_and_their_defaults(capsys):
    args = build_parser().parse_args(["predict", "abc", "--data", "x.npz", "--out", "s.csv"])
    assert (args.run_id, args.data, args.out, args.device, args.store, args.tta, args.weights) == (
        ["abc"],
        "x.npz",
        "s.csv",
        "auto",
        None,
        "none",
        None,
    )
    for argv, missing in ((["--data", "x.npz"], "--out"), (["--out", "s.csv"], "--data")):
        assert main(["predict", "abc", *argv]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            f"harness: error: the following arguments are required: {missing} (see harness predict --help)"
        ]


def test_writes_the_csv_and_says_so_in_one_line(capsys, trained, data, tmp_path):
    out = tmp_path / "submission.csv"
    store = ["--store", str(trained.store)]
    argv = [
        "predict",
        trained.run_id[:12],
        "--data",
        str(data / "mars.npz"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    code, stdout, stderr = run_cli(capsys, *argv, *store)
    assert code == 0 and stderr == ""
    assert stdout == f"wrote {out}: 3 test images, 64x128 masks\n"
    with out.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", *map(str, range(64 * 128))] and [r[0] for r in rows[1:]] == ["0", "1", "2"]
    masks = api.predict(trained.run_id, str(data / "mars.npz"), store=trained.store, device="cpu")
    assert np.array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), masks.reshape(3, -1))


def test_unknown_run_id_is_one_line(capsys, trained):
    store_path = trained.store
    code, _, err = run_cli(
        capsys, "predict", "nope", "--data", "synthetic", "--out", "x.csv", "--store", str(store_path)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("source", "out", "message"),
    [
        ("labelled.npz", "s.csv", "labelled.npz: has no test_set to predict"),
        ("mars.npz", "no/such/folder/s.csv", "does not exist"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(capsys, trained, data, tmp_path, source, out, message):
    target = tmp_path / out
    argv = ["predict", trained.run_id, "--data", str(data / source), "--out", str(target), "--device", "cpu"]
    code, stdout, err = run_cli(capsys, *argv, "--store", str(trained.store))
    assert code == 2 and stdout == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("harness: error: ") and message in line
    assert not target.exists() and not list(tmp_path.rglob("*.csv*"))


@pytest.fixture
def images(tmp_path):
    """A folder of two gray PNGs of the training size, one of another size and one colour JPEG."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, shape in (("a.png", (64, 128)), ("b.png", (64, 128)), ("odd.png", (50, 70))):
        io.imsave(folder / name, rng.integers(0, 256, shape).astype(np.uint8), check_contrast=False)
    io.imsave(folder / "colour.jpg", rng.integers(0, 256, (64, 128, 3)).astype(np.uint8))
    return folder


def test_a_folder_of_images_gives_one_png_mask_each_with_its_name(capsys, trained, images, tmp_path):
    out = tmp_path / "masks"
    argv = [
        "predict",
        trained.run_id,
        "--data",
        str(images),
        "--out",
        str(out),
        "--palette",
        "--device",
        "cpu",
    ]
    code, stdout, stderr = run_cli(capsys, *argv, "--tta", "flips", "--store", str(trained.store))
    assert code == 0, stderr
    assert stdout == f"wrote {out}: 4 PNG masks, one per image\n"
    assert "note: 1 of 4 images were colour; converted to grayscale" in stderr
    assert "tta flips on 50x70: identity, hflip, vflip, rot180" in stderr
    assert sorted(p.name for p in out.glob("*.png") if ".palette" not in p.name) == [
        "a.png", "b.png", "colour.png", "odd.png",
    ]  # fmt: skip
    assert (out / "odd.palette.png").is_file()
    assert io.imread(out / "odd.png").shape == (50, 70)  # padded to the multiple and cropped back
    # the PNGs hold exactly the masks of the same images taken from an npz
    stacked = np.stack([io.imread(images / n) for n in ("a.png", "b.png")])
    direct = api.predict(
        trained.run_id, synthetic_with(stacked), store=trained.store, device="cpu", tta="flips"
    )
    assert np.array_equal(np.stack([io.imread(out / n) for n in ("a.png", "b.png")]), direct)


def synthetic_with(test_images: np.ndarray):
    data = synthetic(n=2, test_n=1)
    data.test_images = torch.from_numpy(test_images)
    return data


def test_a_folder_with_a_corrupt_file_is_refused_naming_it(capsys, trained, images, tmp_path):
    (images / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "masks"
    argv = ["predict", trained.run_id, "--data", str(images), "--out", str(out), "--device", "cpu"]
    code, stdout, err = run_cli(capsys, *argv, "--store", str(trained.store))
    assert code == 2 and stdout == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("harness: error: ") and f"{images / 'broken.png'}: not a readable image" in line
    assert not out.exists()


def test_a_folder_needs_a_directory_to_write_into(capsys, trained, images, tmp_path):
    target = tmp_path / "file.csv"
    target.write_text("")
    argv = ["predict", trained.run_id, "--data", str(images), "--out", str(target)]
    code, _, err = run_cli(capsys, *argv, "--store", str(trained.store))
    assert code == 2 and "is a file; give a directory" in err
