"""`harness tune`: a tiny study end to end (trials, best config, importances, the leaderboard of the
study), and the search space's bad input: one line, exit 2, nothing written, before any trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import RunConfig, read_toml, resolve
from harness.plugins import load_plugins
from harness.store import RunStore
from harness.tune.space import check_space, parse_tune
from tests_support import add_run, assert_bad_input, run_cli

TINY_FILE = """
arch = { name = "unet", params = { width = 4, depth = 2 } }
data = { params = { n = 24, test_n = 3 } }
[train]
epochs = 1
batch_size = 8
eval_batch_size = 16
[tune]
study = "cli"
trials = 2
startup_trials = 1
pruner = "none"
[tune.space]
"train.lr" = { float = [1e-3, 1e-2], log = true }
"train.weight_decay" = { float = [0.0, 1e-3] }
"""


def _file(tmp_path, space_line: str | None = None):
    text = (
        TINY_FILE
        if space_line is None
        else TINY_FILE.split("[tune.space]")[0] + "[tune.space]\n" + space_line
    )
    path = tmp_path / "tune.toml"
    path.write_text(text)
    return str(path)


def test_a_study_end_to_end_and_its_leaderboard(capsys, tmp_path, store_path):
    code, out, err = run_cli(capsys, "tune", "--config", _file(tmp_path), "--store", str(store_path))
    assert code == 0, err
    assert out.count("trial ") >= 2 and "finished" in out
    best = store_path.parent / "tune" / "cli" / "best.toml"
    assert best.is_file() and f"its config: {best}" in out and "warning" not in out
    assert (store_path.parent / "tune" / "cli" / "importances.png").is_file()
    assert "parameter importances" in out and "train.weight_decay" in out
    with RunStore(store_path) as store:  # a run of no study: the study's leaderboard leaves it out
        add_run(store, "20260101-000000-unet-000000", None)
    code, board, err = run_cli(
        capsys, "leaderboard", "--store", str(store_path), "--study", "cli", "--by", "run", "--format", "json"
    )
    assert code == 0, err
    trials = [line.split("(")[1].split(")")[0] for line in out.splitlines() if line.startswith("trial ")]
    assert sorted(row["run_id"] for row in json.loads(board)) == sorted(trials)
    code, out, err = run_cli(capsys, "leaderboard", "--store", str(store_path), "--study", "nope")
    assert code == 2 and "no study 'nope'" in err and "studies: cli" in err
    # rerun: the study has its two trials, nothing is trained again
    code, out, err = run_cli(capsys, "tune", "--config", _file(tmp_path), "--store", str(store_path))
    assert code == 0 and "trial 2" not in out


@pytest.mark.parametrize(
    "line, match",
    [
        ('"train.lrr" = { float = [1e-3, 1e-2] }', "train.lrr"),
        ('"train.lr" = { float = ["a", 1e-2] }', "bound 'a' is not a number"),
        ('"arch.params.bottleneck" = { categorical = [] }', "non-empty list"),
        ('"train.lr" = { float = [1e-2, 1e-3] }', "above high"),
        ('"train.lr" = { float = [-1.0, 1e-2], log = true }', "log range must be above zero"),
    ],
)
def test_a_bad_space_is_one_line_before_any_trial(capsys, tmp_path, store_path, line, match):
    assert_bad_input(capsys, store_path, "tune", "--config", _file(tmp_path, line), match=match)


def test_tune_needs_a_tune_file(capsys, tmp_path, store_path):
    assert_bad_input(capsys, store_path, "tune", match="needs --config")
    plain = tmp_path / "plain.toml"
    plain.write_text("[train]\nepochs = 1\n")
    assert_bad_input(capsys, store_path, "tune", "--config", str(plain), match="[tune] table")


EXAMPLES = Path(__file__).parents[3] / "examples"


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("tune-*.toml")))
def test_the_example_studies_are_valid(registry_for_examples, name):
    tree = read_toml(EXAMPLES / name)
    settings, space = parse_tune(tree)
    base = {k: v for k, v in tree.items() if k != "tune"}
    check_space(space, base, registry_for_examples, [], {})  # on the synthetic data: no Mars file needed
    assert settings.trials >= 30


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("mars-*.toml")))
def test_the_example_recipes_resolve_and_keep_what_they_say(registry_for_examples, name):
    tree = read_toml(EXAMPLES / name)
    resolved = resolve(RunConfig.model_validate(tree), registry_for_examples)  # synthetic data: no Mars file
    if "4epochs" in name:
        assert (resolved.config.train.epochs, resolved.config.train.max_minutes) == (4, None)
    else:
        assert resolved.config.train.max_minutes == 10


def test_there_are_example_studies_and_recipes():
    assert len(list(EXAMPLES.glob("tune-*.toml"))) >= 3 and len(list(EXAMPLES.glob("mars-*.toml"))) >= 3


@pytest.fixture(scope="module")
def registry_for_examples():
    return load_plugins()
