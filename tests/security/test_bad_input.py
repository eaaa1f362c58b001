"""The bad-input corpus: every malformed dataset, config file, flag and plugin parameter is refused with one
line naming what was wrong, exit code 2, and nothing written (no store, no output file, a store unchanged).

Each case runs through every entry point that reads that kind of input, so the count of cases is
(dataset files x 5 entry points) + (run settings x 3 commands) + (flags of the other commands).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sqlite3
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli.app import main
from harness.data.dataset import load_npz
from harness.errors import DataError
from tests_support import TINY_ARGS, run_cli

H, W = 8, 12  # not a multiple of 16 or 32: padding is the harness's job, not the file's


def _train(n: int = 4, dtype=np.uint8, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = np.empty((n, 2, h, w), dtype=dtype)
    data[:, 0] = rng.integers(0, 256, (n, h, w))
    data[:, 1] = rng.integers(0, 5, (n, h, w))
    return data


def _with(**changes) -> np.ndarray:
    """A float training set with one value changed: {"image": v} or {"mask": v}."""
    data = _train(dtype=np.float64)
    for where, value in changes.items():
        data[1, 0 if where == "image" else 1, 2, 3] = value
    return data


def _savez(**arrays) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def _raw(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _truncated(keep: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        np.savez(path, training_set=_train(), test_set=np.zeros((2, H, W), np.uint8))
        content = path.read_bytes()
        path.write_bytes(content[: int(len(content) * keep)])

    return write


def _damaged_member(path: Path) -> None:
    np.savez_compressed(path, training_set=_train(n=16))
    content = bytearray(path.read_bytes())
    middle = len(content) // 3
    content[middle : middle + 64] = bytes(64)  # zeros inside the deflate stream of training_set
    path.write_bytes(bytes(content))


def _member_without_npy_header(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("training_set.npy", b"just some bytes, no .npy header")


def _single_npy_of(array: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:  # np.save would add ".npy" to the name
            np.save(handle, array)

    return write


def _ragged(path: Path) -> None:
    # Images and masks of different sizes can only be stored as an object array of arrays.
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((H, W), np.uint8), np.zeros((H + 2, W), np.uint8)
    np.savez(path, training_set=ragged)


def _duplicate(first: str, second: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, _train())
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
            archive.writestr(first, buffer.getvalue())
            archive.writestr(second, buffer.getvalue())

    return write


ZIP_HEADER_MISSING = "does not start with a zip header"

# id -> (how the file is written, what the one-line error must say)
NPZ_REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    # keys
    "no training_set": (_savez(test_set=np.zeros((2, H, W), np.uint8)), "key 'training_set' is missing"),
    "no arrays at all": (_savez(), "keys found: none"),
    "other names": (_savez(images=np.zeros((2, H, W))), "keys found: 'images'"),
    "extra key": (_savez(training_set=_train(), labels=np.zeros(3)), "unknown key 'labels'"),
    "misspelt test_set": (
        _savez(training_set=_train(), test_sett=np.zeros((2, H, W), np.uint8)),
        "did you mean 'test_set'?",
    ),
    # shapes
    "training_set 1-d": (_savez(training_set=np.zeros(10, np.uint8)), "expected (N, 2, H, W)"),
    "training_set 0-d": (_savez(training_set=np.uint8(3)), "expected (N, 2, H, W)"),
    "training_set 3-d": (_savez(training_set=np.zeros((4, H, W), np.uint8)), "expected (N, 2, H, W)"),
    "training_set 5-d": (_savez(training_set=np.zeros((4, 2, H, W, 1), np.uint8)), "expected (N, 2, H, W)"),
    "three channels": (_savez(training_set=np.zeros((4, 3, H, W), np.uint8)), "has shape (4, 3, 8, 12)"),
    "image without mask": (_savez(training_set=np.zeros((4, 1, H, W), np.uint8)), "expected (N, 2, H, W)"),
    "zero images": (_savez(training_set=np.zeros((0, 2, H, W), np.uint8)), "is empty"),
    "zero height": (_savez(training_set=np.zeros((4, 2, 0, W), np.uint8)), "is empty"),
    "test_set 4-d": (
        _savez(training_set=_train(), test_set=np.zeros((2, 1, H, W), np.uint8)),
        "expected (M, H, W)",
    ),
    "test_set 2-d": (
        _savez(training_set=_train(), test_set=np.zeros((H, W), np.uint8)),
        "expected (M, H, W)",
    ),
    "empty test_set": (_savez(training_set=_train(), test_set=np.zeros((0, H, W), np.uint8)), "is empty"),
    "test images of another size": (
        _savez(training_set=_train(), test_set=np.zeros((2, H, W + 4), np.uint8)),
        "expected 8x12 like 'training_set'",
    ),
    "ragged images and masks": (_ragged, "holds Python objects"),
    # masks
    "float mask with fractions": (_savez(training_set=_with(mask=1.5)), "non-integral values (e.g. 1.5"),
    "mask label 5 of 5 classes": (_savez(training_set=_with(mask=5)), "values outside 0..4: 5 (1 pixels)"),
    "mask label 255": (_savez(training_set=_with(mask=255)), "values outside 0..4: 255"),
    "negative mask label": (_savez(training_set=_with(mask=-1)), "values outside 0..4: -1"),
    "NaN mask": (_savez(training_set=_with(mask=np.nan)), "1 NaN/inf values"),
    "int64 mask label 2**40": (
        _savez(training_set=_with(mask=2**40).astype(np.int64)),
        "outside 0..4: 1099511627776",
    ),
    # images
    "NaN image": (_savez(training_set=_with(image=np.nan)), "1 NaN/inf values"),
    "inf image": (_savez(training_set=_with(image=np.inf)), "1 NaN/inf values"),
    "-inf image": (_savez(training_set=_with(image=-np.inf)), "1 NaN/inf values"),
    "NaN test image": (
        _savez(training_set=_train(), test_set=np.full((2, H, W), np.nan, np.float32)),
        "key 'test_set' has 192 NaN/inf values",
    ),
    "image above 255": (_savez(training_set=_with(image=300)), "outside 0-255 (min 0, max 300"),
    "negative image": (_savez(training_set=_with(image=-0.5)), "outside 0-255 (min -0.5"),
    "float16 image above 255": (
        _savez(training_set=_with(image=1000).astype(np.float16)),
        "outside 0-255",
    ),
    # dtypes
    "bool": (_savez(training_set=np.zeros((4, 2, H, W), bool)), "has dtype bool"),
    "complex": (_savez(training_set=np.zeros((4, 2, H, W), np.complex64)), "has dtype complex64"),
    "unicode strings": (_savez(training_set=np.full((4, 2, H, W), "a")), "has dtype <U1"),
    "byte strings": (_savez(training_set=np.full((4, 2, H, W), b"a")), "has dtype |S1"),
    "datetimes": (_savez(training_set=np.zeros((4, 2, H, W), "datetime64[s]")), "has dtype datetime64[s]"),
    "structured": (_savez(training_set=np.zeros((4, 2, H, W), [("a", "u1"), ("b", "f4")])), "has dtype"),
    "object array": (_savez(training_set=_train().astype(object)), "holds Python objects"),
    "object test_set": (
        _savez(training_set=_train(), test_set=np.zeros((2, H, W)).astype(object)),
        "key 'test_set' holds Python objects",
    ),
    # not an npz
    "empty file": (_raw(b""), "the file is empty"),
    "text file": (_raw(b"training_set = [[1, 2], [3, 4]]\n"), ZIP_HEADER_MISSING),
    "png file": (_raw(b"\x89PNG\r\n\x1a\n" + bytes(64)), ZIP_HEADER_MISSING),
    "pickle file": (_raw(pickle.dumps({"training_set": [1, 2, 3]})), ZIP_HEADER_MISSING),
    "torch checkpoint": (
        lambda path: torch.save({"w": torch.zeros(2)}, path),
        "key 'training_set' is missing",
    ),
    "single .npy array": (_single_npy_of(_train()), "holds a single array of shape (4, 2, 8, 12)"),
    "object .npy array": (_single_npy_of(np.zeros(3, object)), "not a readable .npz archive"),
    "zip header only": (_raw(b"PK\x03\x04"), "not a readable .npz archive"),
    "truncated to 90%": (_truncated(0.9), "not a readable .npz archive"),
    "truncated to 50%": (_truncated(0.5), "not a readable .npz archive"),
    "truncated to 10%": (_truncated(0.1), "not a readable .npz archive"),
    "damaged compressed member": (_damaged_member, "key 'training_set' cannot be read"),
    "zip member without .npy header": (_member_without_npy_header, "key 'training_set' is not a numpy array"),
    # ambiguous archives: numpy would read the last of two members of one name
    "two training_set members": (_duplicate("training_set.npy", "training_set.npy"), "two members named"),
    "training_set.npy and training_set": (
        _duplicate("training_set.npy", "training_set"),
        "two members named",
    ),
}


def refused(capsys, *argv: str) -> tuple[int, str]:
    code, _, err = run_cli(capsys, *argv)
    return code, err


def assert_one_line(code: int, err: str, match: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert match in lines[0], lines[0]


def snapshot(store: Path) -> tuple[dict[str, str], list[str]]:
    """Every file beside the store (hashed) and the store's full SQL dump: equal means nothing was written."""
    files = {
        str(p.relative_to(store.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.parent.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }
    with sqlite3.connect(store) as db:
        dump = list(db.iterdump())
    return files, dump


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A store holding one finished tiny run (for evaluate, predict, compare, leaderboard, report)."""
    store = tmp_path_factory.mktemp("trained") / "runs" / "harness.sqlite"
    assert main(["run", *TINY_ARGS, "--store", str(store)]) == 0
    with sqlite3.connect(store) as db:
        (run_id,) = db.execute("SELECT run_id FROM runs").fetchone()
    return store, run_id


@pytest.fixture(params=sorted(NPZ_REFUSED), ids=str)
def bad_npz(request, tmp_path) -> tuple[Path, str]:
    write, match = NPZ_REFUSED[request.param]
    path = tmp_path / "bad data.npz"  # a space: paths are shown as given
    write(path)
    return path, match


# ---------------------------------------------------------------------------------------------------------
# Dataset files: 5 entry points each


def test_npz_loader_refuses(bad_npz):
    path, match = bad_npz
    with pytest.raises(DataError) as caught:
        load_npz(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and match in message


def test_run_refuses_and_creates_no_store(bad_npz, capsys, store_path):
    path, match = bad_npz
    assert_one_line(*refused(capsys, "run", "--data", str(path), "--store", str(store_path)), match)
    assert not store_path.parent.exists()


def test_data_inspect_refuses(bad_npz, capsys, tmp_path):
    path, match = bad_npz
    sheet = tmp_path / "sheet.png"
    assert_one_line(*refused(capsys, "data", "inspect", str(path), "--sheet", str(sheet)), match)
    assert not sheet.exists()


def test_evaluate_refuses_and_leaves_the_store_alone(bad_npz, trained, capsys):
    (path, match), (store, run_id) = bad_npz, trained
    before = snapshot(store)
    code, _, err = run_cli(capsys, "evaluate", run_id, "--data", str(path), "--store", str(store))
    assert_one_line(code, err, match)
    assert snapshot(store) == before


def test_predict_refuses_writes_no_csv_and_leaves_the_store_alone(bad_npz, trained, capsys, tmp_path):
    (path, match), (store, run_id) = bad_npz, trained
    before, csv = snapshot(store), tmp_path / "submission.csv"
    code, _, err = run_cli(
        capsys, "predict", run_id, "--data", str(path), "--out", str(csv), "--store", str(store)
    )
    assert_one_line(code, err, match)
    assert not csv.exists() and snapshot(store) == before


@pytest.mark.parametrize(
    ("changes", "shape"),
    [
        ({}, (5, 2, 13, 21)),  # odd sizes, a multiple of nothing: padded and cropped by the harness
        ({"zero": True}, (4, 2, 16, 16)),  # all-black images are valid data (their masks say what is there)
    ],
    ids=["size not a multiple of input_multiple", "all-zero images"],
)
def test_valid_but_unusual_files_load_and_train(changes, shape, capsys, store_path, tmp_path):
    n, _, h, w = shape
    data = _train(n=n, h=h, w=w)
    if changes.get("zero"):
        data[:, 0] = 0
    path = tmp_path / "unusual.npz"
    np.savez(path, training_set=data, test_set=data[:2, 0])
    loaded = load_npz(path)
    assert tuple(loaded.images.shape) == (n, h, w) and loaded.test_images.shape[1:] == (h, w)
    assert run_cli(capsys, "data", "inspect", str(path))[0] == 0
    code, _, err = run_cli(
        capsys, "run", "--data", str(path), "--arch-param", "width=4", "--epochs", "1", "--no-progress",
        "--set", "train.batch_size=2", "--store", str(store_path),
    )  # fmt: skip
    assert code == 0, err
    assert store_path.exists()


def test_labels_beyond_num_classes_are_refused(capsys, store_path, tmp_path):
    path = tmp_path / "five.npz"
    np.savez(path, training_set=_train())
    code, _, err = run_cli(
        capsys, "run", "--data", str(path), "--set", "data.num_classes=3", "--store", str(store_path)
    )
    assert_one_line(code, err, "values outside 0..2")
    assert not store_path.parent.exists()


# ---------------------------------------------------------------------------------------------------------
# Run settings (TOML file, --set, flags, plugin parameters): 3 commands each

TOML_REFUSED = {
    # unknown keys
    "unknown top-level key": ("epochs = 3\n", "epochs: Extra inputs are not permitted"),
    "unknown train key": ("[train]\nepoch = 3\n", "train.epoch: Extra inputs are not permitted"),
    "unknown section": ("[trainer]\nepochs = 3\n", "trainer: Extra inputs are not permitted"),
    "unknown arch key": ('[arch]\nname = "unet"\nparam = {}\n', "arch.param: Extra inputs are not permitted"),
    "sweep list in a run": ('[[runs]]\narch = { name = "unet" }\n', "runs: Extra inputs are not permitted"),
    "internal key": ("[arch]\ncli_params = { depth = 3 }\n", "arch.cli_params: Extra inputs"),
    # wrong types
    "epochs a string": ('[train]\nepochs = "many"\n', "train.epochs: Input should be a valid integer"),
    "epochs a float": ("[train]\nepochs = 1.5\n", "train.epochs: Input should be a valid integer"),
    "amp a sentence": ('[train]\namp = "yes please"\n', "train.amp: Input should be a valid boolean"),
    "seed a list": ("seed = [1]\n", "seed: Input should be a valid integer"),
    "seed a date": ("seed = 1979-05-27\n", "seed: Input should be a valid integer"),
    "lr a datetime": ("[train]\nlr = 1979-05-27T07:32:00Z\n", "train.lr: Input should be a valid number"),
    "section a number": ("train = 5\n", "train: Input should be a valid dictionary"),
    "arch a string": ('arch = "unet"\n', "arch: Input should be a valid dictionary"),
    "source a number": ("[data]\nsource = 5\n", "data.source: Input should be a valid string"),
    "weights not a list": ("[train]\ndeep_supervision_weights = 1.0\n", "Input should be a valid list"),
    # out of range
    "epochs 0": ("[train]\nepochs = 0\n", "train.epochs: Input should be greater than or equal to 1"),
    "negative lr": ("[train]\nlr = -1e-3\n", "train.lr: Input should be greater than 0"),
    "infinite lr": ("[train]\nlr = inf\n", "train.lr: Input should be a finite number"),
    "NaN weight decay": ("[train]\nweight_decay = nan\n", "train.weight_decay: Input should be a finite"),
    "plateau factor 1.5": ("[train]\nplateau_factor = 1.5\n", "train.plateau_factor: Input should be less"),
    "batch size 0": ("[train]\nbatch_size = 0\n", "train.batch_size: Input should be greater"),
    "val fraction 1": ("[data]\nval_fraction = 1.0\n", "data.val_fraction: Input should be less than 1"),
    "one class": (
        "[data]\nnum_classes = 1\n",
        "data.num_classes: Input should be greater than or equal to 2",
    ),
    "limit 1": ("[data]\nlimit = 1\n", "data.limit: Input should be greater than or equal to 2"),
    "negative seed": ("seed = -1\n", "seed: Input should be greater than or equal to 0"),
    "unknown clean mode": ('[data]\nclean = "all"\n', "data.clean: Input should be 'none' or 'outliers'"),
    "unknown augment preset": ('[augment]\npreset = "wild"\n', "unknown augmentation preset 'wild'"),
    "unknown augment step": (
        '[augment]\nsteps = [{ name = "blur" }]\n',
        "augment.steps[0].name: Input should be 'hflip'",
    ),
    # plugins and their parameters
    "unknown architecture": (
        '[arch]\nname = "unett"\n',
        "unknown architecture 'unett'; did you mean 'unet'?",
    ),
    "unknown loss": ('[loss]\nname = "dicee"\n', "unknown loss 'dicee'; did you mean 'dice'?"),
    "arch param a string": ('[arch]\nparams = { depth = "deep" }\n', "bad architecture parameter for 'unet'"),
    "arch param a table": (
        "[arch]\nparams = { width = { a = 1 } }\n",
        "width: Input should be a valid integer",
    ),
    "arch param misspelt": ("[arch]\nparams = { dept = 3 }\n", "did you mean 'depth'?"),
    "arch param out of range": ("[arch]\nparams = { depth = 99 }\n", "depth: Input should be less than"),
    "arch params a number": ("[arch]\nparams = 5\n", "arch.params: Input should be a valid dictionary"),
    "loss param a string": (
        '[loss]\nname = "focal"\nparams = { gamma = "high" }\n',
        "bad loss parameter for 'focal': gamma",
    ),
    "balancer param a list": (
        '[balancer]\nname = "oversample"\nparams = { k = [2] }\n',
        "bad balancer parameter for 'oversample': k",
    ),
    "composed part not a table": (
        '[balancer]\nname = "classweights+oversample"\nparams = { oversample = 5 }\n',
        "balancer 'oversample' parameters must be a table of name = value, got 5",
    ),
    "composed part unknown": (
        '[balancer]\nname = "classweights+oversample"\nparams = { copypaste = {} }\n',
        "balancer params name 'copypaste', which is not among classweights+oversample",
    ),
    "dataset param negative": ("[data]\nparams = { n = -5 }\n", "bad dataset parameter for 'synthetic': n"),
    # not TOML
    "syntax error": ("[train\nepochs = 3\n", "not valid TOML"),
    "duplicate key": ("seed = 1\nseed = 2\n", "not valid TOML"),
    "not UTF-8": (b"seed = 1\n\xff\xfe\n", "not valid TOML: not UTF-8 text"),
    "nested too deeply": ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    # extreme values
    "a 5000-level dotted table": ("[" + ".".join(["a"] * 5000) + "]\nx = 1\n", "nested too deeply"),
    "a 5000-level dotted key": (".".join(["train"] * 5000) + " = 1\n", "nested too deeply"),
    "epochs true": ("[train]\nepochs = true\n", "train.epochs: Input should be a number, not true/false"),
    "lr false": ("[train]\nlr = false\n", "train.lr: Input should be a number, not true/false"),
    "seed 2**63": (f"seed = {2**63 - 1}\n", "seed: Input should be less than 4294967296"),
    "ignore_index 7 of 5 classes": ("[data]\nignore_index = 7\n", "ignore_index 7 is not a class of 0..4"),
    "device meta": ('[train]\ndevice = "meta"\n', "not a device a run can train on"),
    "negative combo weight": (
        '[loss]\nname = "combo"\nparams = { parts = { ce = -1.0, dice = 1.0 } }\n',
        "parts.ce: Input should be greater than or equal to 0",
    ),
    "negative class weight": (
        '[loss]\nname = "ce"\nparams = { weights = [1.0, -2.0, 1.0, 1.0, 1.0] }\n',
        "weights.1: Input should be greater than or equal to 0",
    ),
}

FLAGS_REFUSED = {
    "--epochs -1": (["--epochs", "-1"], "train.epochs: Input should be greater than or equal to 1"),
    "--epochs 1.5": (["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
    "--epochs many": (["--epochs", "many"], "argument --epochs: invalid int value"),
    "--seed -3": (["--seed", "-3"], "seed: Input should be greater than or equal to 0"),
    "--limit 1": (["--limit", "1"], "data.limit: Input should be greater than or equal to 2"),
    "--batch-size 0": (["--batch-size", "0"], "train.batch_size: Input should be greater than or equal to 1"),
    "--arch unett": (["--arch", "unett"], "unknown architecture 'unett'"),
    "--loss nope": (["--loss", "nope"], "unknown loss 'nope'"),
    "--balancer nope": (["--balancer", "nope"], "unknown balancer 'nope'"),
    "--balancer none+none": (["--balancer", "none+none"], "balancer 'none+none'"),
    "--data empty": (["--data", ""], "unknown dataset ''"),
    "--data missing file": (["--data", "no/such/file.npz"], "no/such/file.npz: no such file"),
    "--data name too long": (["--data", "x" * 5000 + ".npz"], "cannot be opened (File name too long)"),
    "--config missing": (["--config", "no/such.toml"], "no/such.toml: config file not found"),
    "--config a folder": (["--config", "."], "cannot read config"),
    "--set unknown": (["--set", "trian.epochs=1"], "unknown setting 'trian'"),
    "--set misspelt": (["--set", "train.lrr=1"], "did you mean 'train.lr'?"),
    "--set no value": (["--set", "train.lr"], "--set expects key=value, got 'train.lr'"),
    "--set no key": (["--set", "=3"], "--set expects key=value"),
    "--set sub-key of a value": (["--set", "train.epochs.max=3"], "setting 'train.epochs' has no sub-keys"),
    "--set wrong type": (["--set", "train.epochs=zero"], "train.epochs: Input should be a valid integer"),
    "--set list for int": (["--set", "seed=[1,2]"], "seed: Input should be a valid integer"),
    "--set inf": (["--set", "train.lr=inf"], "train.lr: Input should be a finite number"),
    "--set huge": (["--set", "train.lr=1e999"], "train.lr: Input should be a finite number"),
    "--set NaN": (["--set", "train.grad_clip=NaN"], "train.grad_clip: Input should be a finite number"),
    "--set nested brackets": (
        ["--set", "train.lr=" + "[" * 3000],
        "train.lr: Input should be a valid number",
    ),
    "--set out of range": (["--set", "data.val_fraction=0"], "data.val_fraction: Input should be greater"),
    "--set bad bool": (["--set", "train.compile=perhaps"], "train.compile: Input should be a valid boolean"),
    "--set bad device": (
        ["--set", "train.device=gpu"],
        "train.device: not a device name; choose auto, cpu, cuda, cuda:N or mps (got 'gpu')",
    ),
    "--set arch params": (["--set", "arch.params.depth=deep"], "bad architecture parameter for 'unet'"),
    "--set a section": (["--set", "train=5"], "train: Input should be a valid dictionary"),
    "--arch-param not an int": (["--arch-param", "depth=deep"], "depth: Input should be a valid integer"),
    "--arch-param float for int": (["--arch-param", "width=8.5"], "width: Input should be a valid integer"),
    "--arch-param out of range": (["--arch-param", "depth=99"], "depth: Input should be less than"),
    "--arch-param negative": (["--arch-param", "dropout=-0.5"], "dropout: Input should be greater"),
    "--arch-param bad choice": (
        ["--arch-param", "norm=sparkly"],
        "bad architecture parameter for 'unet': norm",
    ),
    "--arch-param misspelt": (["--arch-param", "widht=8"], "did you mean 'width'?"),
    "--arch-param no value": (["--arch-param", "depth"], "--arch-param expects key=value"),
    "--arch-param unknown block": (["--arch-param", "encoder_block=nope"], "nope"),
    "--loss-param bad type": (["--loss", "dice", "--loss-param", "squared=maybe"], "squared"),
    "--loss-param list item": (["--loss", "dice", "--loss-param", "classes=a,b"], "classes"),
    "--balancer-param bad type": (["--balancer", "oversample", "--balancer-param", "k=two"], "k: Input"),
    "--data-param bad type": (["--data-param", "n=lots"], "n: Input should be a valid integer"),
    "--data-param unknown": (["--data-param", "count=5"], "unknown dataset parameter 'count'"),
    "--data-param on a file": (["--data", "{npz}", "--data-param", "n=5"], "data.params only apply"),
    "-p not no:": (["-p", "unet"], "-p expects no:NAME"),
    "-p empty name": (["-p", "no:"], "-p expects no:NAME"),
    "-p disables the default": (["-p", "no:unet"], "unknown architecture 'unet'"),
    "unknown flag": (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    "--seed 2**64": (["--seed", str(2**64)], "seed: Input should be less than 4294967296"),
    "--set device meta": (["--set", "train.device=meta"], "train.device: not a device a run can train on"),
    "--set device cpu:1": (["--set", "train.device=cpu:1"], "train.device: not a device a run can train on"),
    "--set ignore_index past the classes": (["--set", "data.ignore_index=7"], "is not a class of 0..4"),
    "--set epochs true": (["--set", "train.epochs=true"], "train.epochs: Input should be a valid integer"),
    "--loss-param negative combo weight": (["--loss", "combo", "--loss-param", "parts=ce:-1"], "parts.ce"),
    "--loss-param negative class weight": (
        ["--loss", "ce", "--loss-param", "weights=1,-2,1,1,1"],
        "weights.1",
    ),
}

SETTINGS_REFUSED = {f"toml: {k}": ("toml", *v) for k, v in TOML_REFUSED.items()} | {
    f"flag: {k}": ("flags", *v) for k, v in FLAGS_REFUSED.items()
}


def _settings_argv(case: str, tmp_path: Path) -> tuple[list[str], str]:
    kind, given, match = SETTINGS_REFUSED[case]
    if kind == "toml":
        config = tmp_path / "run.toml"
        if isinstance(given, bytes):
            config.write_bytes(given)
        else:
            config.write_text(given)
        return ["--config", str(config)], match
    valid = tmp_path / "valid.npz"
    np.savez(valid, training_set=_train())
    return [str(valid) if arg == "{npz}" else arg for arg in given], match


@pytest.mark.parametrize("case", sorted(SETTINGS_REFUSED))
@pytest.mark.parametrize("command", ["run", "sweep", "data preview"])
def test_bad_settings_are_refused_before_anything_is_written(command, case, capsys, store_path, tmp_path):
    argv, match = _settings_argv(case, tmp_path)
    sheet = tmp_path / "preview.png"
    if command == "sweep" and "sweep list in a run" in case:
        pytest.skip("[[runs]] is what a sweep file holds")
    extra = ["--out", str(sheet)] if command == "data preview" else []
    code, out, err = run_cli(capsys, *command.split(), *argv, *extra, "--store", str(store_path))
    assert_one_line(code, err, match)
    assert out == "" and not store_path.parent.exists() and not sheet.exists()


# ---------------------------------------------------------------------------------------------------------
# The other commands' flags: refused without touching the store


OTHER_FLAGS_REFUSED = {
    "leaderboard --metric": (["leaderboard", "--metric", "acc"], "argument --metric: invalid choice: 'acc'"),
    "leaderboard --by": (["leaderboard", "--by", "loss"], "argument --by: invalid choice: 'loss'"),
    "leaderboard --format": (["leaderboard", "--format", "pdf"], "argument --format: invalid choice: 'pdf'"),
    "leaderboard --since": (["leaderboard", "--since", "yesterday"], "--since expects an age like 30m"),
    "leaderboard --since -3d": (["leaderboard", "--since", "3 days"], "--since expects an age"),
    "leaderboard --top -1": (["leaderboard", "--top", "-1"], "--top must be at least 1, got -1"),
    "leaderboard --top x": (["leaderboard", "--top", "x"], "argument --top: invalid int value: 'x'"),
    "compare --resamples 0": (
        ["compare", "{run}", "{run}", "--resamples", "0"],
        "--resamples must be at least 1",
    ),
    "compare --resamples x": (["compare", "{run}", "{run}", "--resamples", "x"], "invalid int value"),
    "compare --metric": (["compare", "{run}", "{run}", "--metric", "acc"], "invalid choice: 'acc'"),
    "compare unknown run": (["compare", "nope", "{run}"], "starts with 'nope'"),
    "report --top 0": (["report", "--out", "{out}", "--top", "0"], "--top must be at least 1, got 0"),
    "report --metric": (["report", "--out", "{out}", "--metric", "acc"], "invalid choice: 'acc'"),
    "report no --out": (["report"], "the following arguments are required: --out"),
    "evaluate --format": (["evaluate", "{run}", "--data", "synthetic", "--format", "xml"], "invalid choice"),
    "evaluate --device": (["evaluate", "{run}", "--data", "synthetic", "--device", "gpu"], "device 'gpu'"),
    "predict no --out": (["predict", "{run}", "--data", "synthetic"], "required: --out"),
    "predict out folder missing": (
        ["predict", "{run}", "--data", "synthetic", "--out", "{out}/x.csv"],
        "does not exist",
    ),
    "predict unknown run": (
        ["predict", "zz", "--data", "synthetic", "--out", "{out}.csv"],
        "unknown run 'zz'",
    ),
    "data inspect --min-group": (["data", "inspect", "synthetic", "--min-group", "1"], "min_group"),
    "data inspect --format": (["data", "inspect", "synthetic", "--format", "xml"], "invalid choice"),
    "data preview --count 0": (["data", "preview", "--out", "{out}.png", "--count", "0"], "--count must be"),
    "data preview --count 65": (["data", "preview", "--out", "{out}.png", "--count", "65"], "--count must"),
    "data frobnicate": (["data", "frobnicate"], "invalid choice: 'frobnicate'"),
    "sweep --seeds 0": (["sweep", "--seeds", "0"], "--seeds must be between 1 and 100, got 0"),
    "sweep --arch empty item": (["sweep", "--arch", "unet,,segnet"], "--arch expects a comma-separated list"),
    "sweep --arch unknown": (["sweep", "--arch", "unet,segnett"], "unknown architecture 'segnett'"),
    "sweep --executor": (["sweep", "--executor", "slurm"], "invalid choice: 'slurm'"),
    "sweep --max-minutes-per-run 0": (["sweep", "--max-minutes-per-run", "0"], "train.max_minutes"),
    "list --kind": (["list", "--kind", "model"], "argument --kind: invalid choice: 'model'"),
    "check-plugin unknown": (["check-plugin", "unett"], "did you mean 'unet'?"),
    "check-plugin --kind": (["check-plugin", "unet", "--kind", "dataset"], "invalid choice: 'dataset'"),
    "leaderboard --since overflow": (["leaderboard", "--since", "999999999999d"], "is out of range"),
    "leaderboard --since extreme date": (
        ["leaderboard", "--since", "9999-12-31T23:59:59-01:00"],
        "is out of range",
    ),
    "compare --resamples 10**12": (
        ["compare", "{run}", "{run}", "--resamples", str(10**12)],
        "--resamples must be at least 1 and at most",
    ),
    "compare --seed -1": (["compare", "{run}", "{run}", "--seed", "-1"], "--seed must be 0 or more"),
    "sweep seeds past the largest": (
        ["sweep", "--seeds", "3", "--set", f"seed={2**32 - 2}"],
        "would go past the largest seed",
    ),
    "predict --out a directory": (
        ["predict", "{run}", "--data", "synthetic", "--out", "{tmp}"],
        "is a directory",
    ),
    "predict --out empty": (["predict", "{run}", "--data", "synthetic", "--out", ""], "--out is empty"),
    "predict --out under a file": (
        ["predict", "{run}", "--data", "synthetic", "--out", "{store}/x.csv"],
        "cannot write in",
    ),
    "no command": ([], "the following arguments are required: COMMAND"),
    "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
}


@pytest.mark.parametrize("case", sorted(OTHER_FLAGS_REFUSED))
def test_bad_flags_of_other_commands_leave_the_store_alone(case, trained, capsys, tmp_path):
    store, run_id = trained
    given, match = OTHER_FLAGS_REFUSED[case]
    out_base = tmp_path / "out"
    argv = [
        a.replace("{run}", run_id).replace("{out}", str(out_base)).replace("{tmp}", str(tmp_path))
        for a in given
    ]
    argv = [a.replace("{store}", str(store)) for a in argv]
    before = snapshot(store)
    code, out, err = run_cli(capsys, *argv, *(["--store", str(store)] if argv else []))
    assert_one_line(code, err, match)
    assert out == "" and snapshot(store) == before
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


def test_evaluate_on_masks_that_are_all_background_says_nothing_to_score(trained, capsys, tmp_path):
    store, run_id = trained
    path = tmp_path / "background.npz"
    data = _train()
    data[:, 1] = 0  # every pixel is the ignored class
    np.savez(path, training_set=data)
    before = snapshot(store)
    code, out, err = run_cli(capsys, "evaluate", run_id, "--data", str(path), "--store", str(store))
    assert_one_line(code, err, "nothing to score")
    assert out == "" and snapshot(store) == before
