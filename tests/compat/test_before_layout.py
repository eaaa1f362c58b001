"""What the layout move (issue 14) must not change: config hashes and stores written by the code before it.

The hashes below and the fixture store in tests/fixtures/store_before_layout/ were produced by the code as
it stood before the move (commit ef8603f): `harness run --arch unet --arch-param depth=2 --arch-param width=8
--epochs 2 --data-param n=24`, then `harness leaderboard --format json|csv` on that store.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from harness import api
from harness.cli import main
from harness.config import build_config, config_hash, resolve
from harness.plugins import load_plugins

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_before_layout"
RUN_ID = "20261201-111623-unet-d6048b"

# config -> its hash, as the code before the move computed it
PINNED_HASHES = {
    "default": ({}, "45f4f09e83761337"),
    "unetpp_combo_copypaste": (
        {
            "arch": {"name": "unetpp", "params": {"deep_supervision": True}},
            "loss": {"name": "combo", "params": {"parts": {"focal": 1.0, "dice": 1.0}}},
            "balancer": {"name": "copypaste"},
        },
        "281e073f3adffb7b",
    ),
    "unet_blocks": (
        {
            "arch": {"name": "unet", "params": {"bottleneck": "rdam+gc", "encoder_block": "se"}},
            "train": {"schedule": "onecycle", "lr": 3e-3},
            "augment": {"preset": "standard"},
        },
        "00b30cc9c8d975fa",
    ),
    "composed_balancer": (
        {"balancer": {"name": "classweights+copypaste"}, "data": {"val_fraction": 0.25}, "seed": 3},
        "960a695a58d6c618",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_config_hash_is_the_one_before_the_move(name):
    base, expected = PINNED_HASHES[name]
    config, cli_params = build_config(base)
    resolved = resolve(config, load_plugins(autoload=False), cli_params)
    # A plugin revised since (rdam, issue 17) adds its revision to the hash on purpose; the rest of the
    # payload must still hash as it did before the move.
    assert config_hash(resolved.config) == expected
    assert (resolved.hash == expected) == (not resolved.revisions)


def test_a_revised_plugin_changes_the_hash_of_exactly_the_configs_that_use_it():
    registry = load_plugins(autoload=False)
    revised = resolve(build_config(PINNED_HASHES["unet_blocks"][0])[0], registry)
    assert revised.revisions == {"block:rdam": 1}  # found through the arch params: the block names
    assert revised.hash != PINNED_HASHES["unet_blocks"][1]
    default = resolve(build_config({})[0], registry)
    assert default.revisions == {} and default.hash == PINNED_HASHES["default"][1]
    r2unet = resolve(build_config({"arch": {"name": "r2unet"}})[0], registry)
    assert r2unet.revisions == {"architecture:r2unet": 1}
    assert r2unet.hash != config_hash(r2unet.config)


@pytest.fixture
def old_store(tmp_path) -> Path:
    """A copy of the fixture store (readers must not touch the committed file), its checkpoint path
    pointed at the copy: the store records absolute paths, and the fixture was written elsewhere."""
    shutil.copytree(FIXTURE, tmp_path / "store")
    path = tmp_path / "store" / "harness.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE runs SET checkpoint = ? WHERE run_id = ?", (str(path.parent / RUN_ID / "best.pt"), RUN_ID)
        )
    return path


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_leaderboard_of_an_old_store_keeps_every_field_it_had(old_store, capsys, fmt):
    # The fields and values printed before the move are all still there; labels and data came later.
    assert main(["leaderboard", "--store", str(old_store), "--format", fmt]) == 0
    printed = capsys.readouterr().out
    expected = (FIXTURE / f"leaderboard.{fmt}").read_text()
    if fmt == "json":
        rows, before = json.loads(printed), json.loads(expected)
    else:
        rows, before = list(csv.DictReader(io.StringIO(printed))), list(csv.DictReader(io.StringIO(expected)))
    assert len(rows) == len(before)
    for row, old in zip(rows, before, strict=True):
        assert {key: row[key] for key in old} == old
        assert row["label"] == "unet[depth=2, width=8]" and row["data"].startswith("synthetic@")


def test_an_old_run_loads_and_predicts(old_store):
    loaded = api.load_run(RUN_ID[:12], store=old_store, plugins=load_plugins(autoload=False))
    assert loaded.run_id == RUN_ID
    assert loaded.resolved.hash.startswith("5ecda465")  # the leaderboard's config column, then and now
    result = api.evaluate(RUN_ID, "synthetic", store=old_store, device="cpu")
    assert result["images"] > 0 and 0.0 <= result["miou_an2dl"] <= 1.0
    masks = api.predict(RUN_ID, "synthetic", out=old_store.parent / "sub.csv", store=old_store, device="cpu")
    assert masks.shape[1:] == (64, 128) and set(np.unique(masks)) <= {
        1,
        2,
        3,
        4,
    }  # never background


def test_report_reads_an_old_store(old_store, tmp_path):
    out = tmp_path / "report"
    assert main(["report", "--store", str(old_store), "--out", str(out), "--no-progress"]) == 0
    page = (out / "index.html").read_text()
    assert RUN_ID in page


def test_compare_reads_the_old_per_image_file(old_store, capsys):
    # A run against itself: the old run's per-image file is read on both sides and rebuilds its stored mIoU.
    assert main(["compare", RUN_ID, RUN_ID, "--store", str(old_store), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    stored = json.loads((FIXTURE / "leaderboard.json").read_text())[0]["miou"]
    assert result["images"] == 5 and result["a_miou"] == pytest.approx(stored, abs=1e-12)
    assert result["difference"] == 0.0
