"""`harness leaderboard`: reading a store that does not exist creates nothing; it starts without pandas."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.plugins import load_plugins
from harness.store import RunStore
from tests_support import add_run, run_cli


def test_leaderboard_on_missing_store_creates_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(store_path))
    assert code == 0 and "no" in out
    assert not store_path.exists()


def test_leaderboard_does_not_import_pandas(trained):
    # pandas (~0.35 s) is for the DataFrame of api.leaderboard: not on the command's path. (The command loads
    # the plugins, for the defaults its labels compare with; scipy comes with them, through scikit-image.)
    probe = (
        "import sys\n"
        "from harness.cli import main\n"
        f"codes = [main(['leaderboard', '--store', {str(trained.store)!r}, *more]) for more in\n"
        "         ([], ['--by', 'run', '--format', 'csv'])]\n"
        "print(*codes, *sorted({m.split('.')[0] for m in sys.modules} & {'pandas'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert f"\n1,{trained.run_id}," in done.stdout  # the leaderboard was really rendered, with its run
    assert done.stdout.splitlines()[-1] == "0 0"


def stored_unet(**values) -> dict:
    """A run's config as the store keeps it: unet's params resolved in full (choices and defaults)."""
    registry = load_plugins(autoload=False)
    params = registry.get("architecture", "unet").parse_params(values, registry=registry)
    return {
        "arch": {"name": "unet", "params": params.model_dump(mode="json")},
        "data": {"source": "synthetic"},
    }


@pytest.fixture
def variants(store_path):
    """Two runs differing only in their bottleneck, a failed one, and a run on other data."""
    with RunStore(store_path) as store:
        add_run(store, "run-se", None, config_hash="a" * 16, config=stored_unet(bottleneck="se"))
        add_run(store, "run-aspp", None, config_hash="b" * 16, config=stored_unet(bottleneck="aspp"))
        add_run(store, "run-bad", None, config_hash="c" * 16, config=stored_unet(depth=2), status="failed")
        store.finish_run("run-bad", status="failed", error="ValueError: bad batch\nTraceback ...")
        mars = {**stored_unet(), "data": {"source": "/data/ai4mars-an2dl.npz"}}
        add_run(store, "run-mars", None, config_hash="d" * 16, config=mars)
    return store_path


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_runs_differing_only_in_the_bottleneck_get_different_labels_in_every_format(
    variants, capsys, monkeypatch, fmt
):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--format", fmt, "--data", "synthetic"
    )
    assert code == 0, err
    assert "unet[bottleneck=se]" in out and "unet[bottleneck=aspp]" in out
    if fmt == "json":
        rows = json.loads(out)
        assert [row["arch_params"] for row in rows] == [{"bottleneck": "se"}, {"bottleneck": "aspp"}]
        assert all(row["loss_params"] == {} and row["balancer_params"] == {} for row in rows)
    if fmt == "csv":
        header = out.splitlines()[0].split(",")
        assert {"label", "data", "arch_params", "loss_params", "balancer_params"} <= set(header)


def test_two_datasets_are_never_ranked_together(variants, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(variants))
    assert code == 0
    titles = [line.strip() for line in out.splitlines() if line.startswith("data ")]
    assert titles == [
        "data synthetic: 2 rows, ranked on this data only",
        "data ai4mars-an2dl.npz: 1 row, ranked on this data only",
    ]
    code, out, _ = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--by", "arch", "--format", "json"
    )
    assert [(row["data"], row["rank"], row["label"]) for row in json.loads(out)] == [
        ("synthetic", 1, "unet[bottleneck=se]"),  # the best unet variant on each dataset, named
        ("ai4mars-an2dl.npz", 1, "unet"),
    ]
    code, out, _ = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--data", "ai4mars-an2dl.npz", "--format", "json"
    )
    assert [row["run_ids"] for row in json.loads(out)] == [["run-mars"]]
    code, _, err = run_cli(capsys, "leaderboard", "--store", str(variants), "--data", "nope.npz")
    assert (
        code == 2 and err.startswith("harness: error: --data nope.npz: no such runs") and "synthetic" in err
    )


def test_failed_rows_show_their_status_and_error(variants, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--status", "failed", "--by", "run"
    )
    assert code == 0
    (row,) = [line for line in out.splitlines() if "run-bad" in line]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert (
        cells[1:][:2] == ["run-bad", "unet[depth=2]"]
        and "failed" in cells
        and "ValueError: bad batch" in cells
    )
    assert "Traceback" not in out


def test_the_fg_metric_names_its_header(variants, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _, out, _ = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--metric", "fg", "--data", "synthetic"
    )
    assert "mIoU (fg)" in out
    _, out, _ = run_cli(
        capsys, "leaderboard", "--store", str(variants), "--data", "synthetic", "--format", "markdown"
    )
    assert "| mIoU |" in out


def test_piped_output_honours_columns(variants, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(capsys, "leaderboard", "--store", str(variants), "--data", "synthetic")
    assert max(len(line) for line in out.splitlines() if line.startswith("│")) <= 80
    assert "not shown at 80 columns" in out
    monkeypatch.delenv("COLUMNS")
    _, out, _ = run_cli(capsys, "leaderboard", "--store", str(variants), "--data", "synthetic")
    assert "not shown" not in out  # no COLUMNS on a pipe: 200 columns, room for all
