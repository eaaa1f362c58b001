"""A tiny study: the tiny synthetic config (1 epoch), a two-dimensional space, trials of seconds."""

from __future__ import annotations

import pytest

from harness.plugins import load_plugins
from harness.tune.space import parse_tune
from harness.tune.study import Tuning
from tests_support import tiny

SPACE = {
    "train.lr": {"float": [1e-3, 1e-2], "log": True},
    "arch.params.bottleneck": {"categorical": ["conv", "se"]},
}


def tune_tree(study: str = "tiny", **tune) -> dict:
    """A tune file as a dict: the tiny config and a [tune] table."""
    table = {"study": study, "trials": 2, "startup_trials": 1, "pruner": "none", "space": SPACE, **tune}
    return {**tiny(), "tune": table}


@pytest.fixture(scope="session")
def registry():
    return load_plugins()


@pytest.fixture
def make_tuning(registry, store_path):
    def make(tree: dict | None = None, **tune) -> Tuning:
        tree = tree or tune_tree(**tune)
        settings, space = parse_tune(tree)
        base = {k: v for k, v in tree.items() if k != "tune"}
        return Tuning(settings, space, base, registry, store_path, [], {})

    return make


@pytest.fixture(scope="session")
def finished_study(registry, tmp_path_factory):
    """A study of two finished trials (trained once per session: tests read it, never change it)."""
    from harness.tune.study import run_study

    store = tmp_path_factory.mktemp("tune") / "runs" / "harness.sqlite"
    settings, space = parse_tune(tune_tree())
    tuning = Tuning(settings, space, tiny(), registry, store, [], {})
    return run_study(tuning), store
