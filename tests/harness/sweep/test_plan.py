"""Planning a sweep: grid expansion, sweep files, list and seed parsing; bad input fails before any run."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.plugins import load_plugins
from harness.sweep.plan import plan, seed_list, split_list
from tests_support import TINY_ARGS, run_cli

TINY = TINY_ARGS  # the tiny run of tests_support; --no-progress suits a sweep too


def test_grid_expands_every_combination_and_seed():
    registry = load_plugins()
    runs = plan(
        {},
        registry,
        archs=["unet", "attunet"],
        losses=["ce", "dice"],
        balancers=["none", "classweights"],
        seeds=2,
    )
    assert len(runs) == 16
    assert len({r.key for r in runs}) == 16
    assert len({r.resolved.hash for r in runs}) == 8  # seeds share a config hash
    assert Counter(r.config.seed for r in runs) == {0: 8, 1: 8}
    assert {r.config.arch.name for r in runs} == {"unet", "attunet"}


def test_sweep_file_lists_runs_over_a_base():
    registry = load_plugins()
    base = {
        "train": {"epochs": 3},
        "arch": {"name": "unet", "params": {"width": 8}},
        "runs": [{"arch": {"params": {"depth": 2}}}, {"arch": {"name": "segnet"}, "loss": {"name": "dice"}}],
    }
    first, second = plan(base, registry)
    assert first.config.arch.params["width"] == 8 and first.config.arch.params["depth"] == 2
    assert second.config.arch.name == "segnet" and second.config.loss.name == "dice"
    assert first.config.train.epochs == second.config.train.epochs == 3


def test_list_and_seed_parsing():
    assert split_list("a, b,a", "--arch") == ["a", "b"]
    assert split_list(None, "--arch") is None
    assert seed_list(3, 5) == [5, 6, 7]
    with pytest.raises(Exception, match="comma-separated"):
        split_list("a,,b", "--arch")
    with pytest.raises(Exception, match="--seeds"):
        seed_list(0, 0)


def test_bad_name_anywhere_in_the_grid_fails_before_anything_runs(capsys, store_path):
    code, _, err = run_cli(capsys, "sweep", "--arch", "unet,unetp", *TINY, "--store", str(store_path))
    assert code == 2
    assert "unetp" in err and "did you mean 'unetpp'" in err
    assert len(err.strip().splitlines()) == 1
    assert not store_path.exists()


def test_folds_multiply_configurations_and_seeds_into_runs_of_one_hash_per_configuration():
    registry = load_plugins()
    base = {"data": {"folds": 3, "params": {"n": 24}}}
    runs = plan(base, registry, archs=["unet", "segnet"], seeds=2)
    assert len(runs) == 12 and len({r.key for r in runs}) == 12
    assert len({r.resolved.hash for r in runs}) == 2  # seeds and folds share a config hash
    assert Counter(r.config.data.fold for r in runs) == {0: 4, 1: 4, 2: 4}
    assert "seed 1 · fold 2" in runs[-1].label
    (one,) = plan({"data": {"folds": 3, "fold": 1, "params": {"n": 24}}}, registry)
    assert one.key == (runs[1].resolved.hash, 0, 1)


def test_folds_that_cannot_be_made_fail_before_anything_runs(capsys, store_path):
    code, _, err = run_cli(capsys, "sweep", "--folds", "30", *TINY, "--store", str(store_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "30 folds need at least 30 images, it has 24" in err
    assert not store_path.exists()
