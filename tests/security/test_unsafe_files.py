"""Nothing unsafe is loaded: pickles planted in a dataset, a per-image results file or a checkpoint are
refused by the harness's own loaders without running a line of them.

Every payload creates a marker file when unpickled. Each test first shows the payload is live (plain
unpickling does create the marker), then that the harness path refuses the file and the marker never appears.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.analysis.compare import load_per_image
from harness.cli.app import main
from harness.config import build_config, resolve
from harness.data.dataset import load_npz
from harness.errors import DataError, HarnessError
from harness.plugins import load_plugins
from harness.store import RunStore
from harness.training.checkpoints import PER_IMAGE_NAME, load_checkpoint
from tests_support import TINY_CONFIG, start_fields

ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this creates (opens for writing) the marker file: the stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


def object_array(marker: Path) -> np.ndarray:
    array = np.empty(2, dtype=object)
    array[0], array[1] = Payload(marker), np.zeros((2, 2, 8, 8), np.uint8)
    return array


def test_the_payload_is_live(tmp_path, marker):
    # The control: without the harness's guards, each planted file would run the payload.
    path = tmp_path / "evil.npz"
    np.savez(path, training_set=object_array(marker))
    np.load(path, allow_pickle=True)["training_set"]
    assert marker.exists()
    marker.unlink()
    torch.save({"state_dict": {}, "extra": Payload(marker)}, tmp_path / "best.pt")
    torch.load(tmp_path / "best.pt", weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------------
# Datasets


@pytest.mark.parametrize("key", ["training_set", "test_set"])
def test_pickled_arrays_in_a_dataset_are_refused_unexecuted(key, tmp_path, marker):
    path = tmp_path / "evil.npz"
    arrays = {"training_set": np.zeros((2, 2, 8, 8), np.uint8), key: object_array(marker)}
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"key '{key}' holds Python objects"):
        load_npz(path)
    assert not marker.exists()


def test_a_pickle_posing_as_a_dataset_is_refused_unexecuted(tmp_path, marker, capsys):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"training_set": Payload(marker)}))
    store = tmp_path / "runs" / "harness.sqlite"
    for argv in (["run", "--data", str(path)], ["data", "inspect", str(path)]):
        assert main([*argv, "--store", str(store)]) == 2
        assert "not an .npz archive" in capsys.readouterr().err
    assert not marker.exists() and not store.parent.exists()


def test_a_pickled_npy_posing_as_a_dataset_is_refused_unexecuted(tmp_path, marker):
    path = tmp_path / "evil.npz"
    with path.open("wb") as handle:
        np.save(handle, object_array(marker), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable .npz archive"):
        load_npz(path)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------
# Run files: per-image results and checkpoints


def fake_run(store_path: Path, checkpoint: Path | None = None) -> str:
    """A finished run record with a valid tiny config (its files are whatever the test puts there)."""
    config, cli = build_config(TINY_CONFIG)
    resolved = resolve(config, load_plugins(), cli)
    run_id = "20260101-000000-unet-abcdef"
    with RunStore(store_path) as store:
        store.start_run(
            **start_fields(
                run_id,
                config=resolved.config.model_dump(mode="json"),
                config_hash=resolved.hash,
                torch_version=torch.__version__,
                gflops=1.0,
                class_names=["background", "soil", "bedrock", "sand", "big rock"],
            )
        )
        metrics = {"miou_an2dl": 0.5, "miou_fg": 0.5, "iou": {"soil": 0.5}}
        checkpoint = checkpoint or store.run_dir(run_id) / "best.pt"
        store.finish_run(
            run_id, status="finished", metrics=metrics, epochs=1, best_epoch=1, checkpoint=checkpoint
        )
        store.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    return run_id


def test_a_pickled_per_image_file_is_refused_unexecuted(tmp_path, marker, capsys):
    store_path = tmp_path / "runs" / "harness.sqlite"
    run_id = fake_run(store_path)
    evil = store_path.parent / run_id / PER_IMAGE_NAME
    np.savez(evil, indices=np.arange(2), confusion=object_array(marker))
    with RunStore(store_path, create=False) as store, pytest.raises(HarnessError, match="not a readable"):
        load_per_image(store, store.get_run(run_id))
    assert main(["compare", run_id, run_id, "--store", str(store_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not marker.exists()


def _torch_zip(path: Path, marker: Path) -> None:
    torch.save({"format": 1, "state_dict": {}, "normalisation": [0.0, 1.0], "x": Payload(marker)}, path)


def _legacy_pickle(path: Path, marker: Path) -> None:
    # The pre-zip torch format is a bare pickle stream: the classic way to ship a payload as "weights".
    path.write_bytes(
        pickle.dumps({"state_dict": {}, "normalisation": [0.0, 1.0], "x": Payload(marker)}, protocol=2)
    )


CHECKPOINTS = {"torch zip checkpoint": _torch_zip, "bare pickle named best.pt": _legacy_pickle}


@pytest.mark.parametrize("plant", sorted(CHECKPOINTS))
def test_a_malicious_checkpoint_is_refused_unexecuted(plant, tmp_path, marker):
    path = tmp_path / "best.pt"
    CHECKPOINTS[plant](path, marker)
    with pytest.raises(HarnessError, match="best.pt"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("plant", sorted(CHECKPOINTS))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_commands_refuse_a_malicious_checkpoint_in_one_line(command, plant, tmp_path, marker, capsys):
    store_path = tmp_path / "runs" / "harness.sqlite"
    run_id = fake_run(store_path)
    CHECKPOINTS[plant](store_path.parent / run_id / "best.pt", marker)
    out = tmp_path / "submission.csv"
    extra = ["--out", str(out)] if command == "predict" else []
    code = main([command, run_id, "--data", "synthetic", *extra, "--store", str(store_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "best.pt" in err[0], err
    assert not marker.exists() and not out.exists()


# ---------------------------------------------------------------------------------------------------------
# The rule, checked on the source: every np.load / torch.load states its safe option, no pickle module


def _loads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            if (name, node.func.attr) in {("np", "load"), ("numpy", "load"), ("torch", "load")}:
                yield name, node


def _sources() -> list[Path]:
    return sorted(p for d in ("harness", "leaderboard", "plugins") for p in (ROOT / d).rglob("*.py"))


def test_every_load_in_the_code_refuses_pickles():
    seen, unsafe = 0, []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for module, call in _loads(tree):
            seen += 1
            option, required = ("weights_only", True) if module == "torch" else ("allow_pickle", False)
            value = {k.arg: k.value for k in call.keywords}.get(option)
            if not (isinstance(value, ast.Constant) and value.value is required):
                unsafe.append(
                    f"{path.relative_to(ROOT)}:{call.lineno} {module}.load without {option}={required}"
                )
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in imports for a in n.names} | {
            n.module for n in imports if isinstance(n, ast.ImportFrom)
        }
        if names & {"pickle", "cPickle", "dill", "joblib", "cloudpickle"}:
            unsafe.append(f"{path.relative_to(ROOT)} imports a pickle module")
    assert seen >= 3 and unsafe == []
