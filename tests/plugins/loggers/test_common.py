"""plugins.loggers.common and the `log` settings: off by default, not in the config hash, a bad name is one
line, and a logger that fails warns once and leaves the run `finished`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from harness.config import build_config, resolve
from harness.plugins import load_plugins
from harness.specs import RunInfo
from harness.training import loop
from plugins.loggers.common import RunLogger, Sessions, flatten, numbers, run_log_dir
from tests_support import TINY_ARGS, TINY_CONFIG, assert_bad_input, run_cli


def _info(tmp_path: Path, **log) -> RunInfo:
    return RunInfo("r1", {"log": log}, tmp_path / "r1", "cpu", tmp_path / "harness.sqlite")


def _resolved(base, registry):
    config, cli_params = build_config(base)
    return resolve(config, registry, cli_params)


def test_two_configs_differing_only_in_log_settings_hash_alike():
    registry = load_plugins(autoload=False)
    logged = copy.deepcopy(TINY_CONFIG) | {
        "log": {"loggers": ["csv", "mlflow"], "dir": "/tmp/elsewhere", "experiment": "mine"}
    }
    plain, with_log = (_resolved(c, registry) for c in (TINY_CONFIG, logged))
    assert plain.hash == with_log.hash
    assert with_log.config.log.loggers == ["csv", "mlflow"] and plain.config.log.loggers == []
    changed = _resolved(copy.deepcopy(TINY_CONFIG) | {"seed": 1, "train": {"lr": 1e-3}}, registry)
    assert changed.hash != plain.hash  # the hash still sees what defines the run


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_unknown_logger_is_one_line_with_a_did_you_mean(capsys, store_path, command):
    assert_bad_input(
        capsys, store_path, command, "--log", "csv,tensorbord", match="did you mean 'tensorboard'?"
    )


def test_an_unknown_logger_in_the_config_file_is_one_line(capsys, store_path, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[log]\nloggers = ["mlfow"]\n')
    assert_bad_input(capsys, store_path, "run", "--config", str(config), match="did you mean 'mlflow'?")


def test_log_options_are_in_the_help(capsys):
    for command in ("run", "sweep"):
        with pytest.raises(SystemExit):
            run_cli(capsys, command, "--help")
        out = capsys.readouterr().out
        assert "--log NAMES" in out and "--log-dir DIR" in out and "log.loggers" in out


def test_flatten_gives_dotted_keys_and_lists_as_json():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {
        "a.b": 1,
        "a.c": "[1, 2]",
        "d": None,
        "e": "{}",
    }


def test_numbers_flattens_per_class_values_and_drops_none():
    values = {"epoch": 2, "val_miou": 0.5, "val_iou": {"soil": 0.25, "background": None}, "ok": True}
    assert numbers(values) == {"epoch": 2.0, "val_miou": 0.5, "val_iou/soil": 0.25}


def test_a_file_logger_writes_in_the_run_dir_or_under_log_dir(tmp_path):
    assert run_log_dir(_info(tmp_path)) == tmp_path / "r1"
    assert run_log_dir(_info(tmp_path, dir=str(tmp_path / "logs"))) == tmp_path / "logs" / "r1"


class Broken(RunLogger):
    def epoch(self, epoch, values):
        raise OSError("disk\nfull")


def test_a_failing_session_warns_once_in_one_line_and_stops(tmp_path, capsys):
    sessions = Sessions("broken", Broken)
    run = _info(tmp_path, loggers=["broken"])
    sessions.start(run)
    for epoch in (1, 2, 3):
        sessions.call(run, "epoch", epoch, {})
    sessions.end(run, "finished", None)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "harness: warning: the broken logger failed, it logs nothing more for run r1: OSError: disk full"
    ]


def test_a_logger_the_run_did_not_ask_for_is_never_opened(tmp_path):
    opened = []

    class Counting(RunLogger):
        def __init__(self, run):
            opened.append(run.run_id)

    Sessions("counting", Counting).start(_info(tmp_path, loggers=["csv"]))
    Sessions("counting", Counting).start(RunInfo("old", {}, tmp_path, "cpu", tmp_path))  # a pre-log config
    assert opened == []


def test_a_tracking_server_down_leaves_the_run_finished_with_one_warning(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    samples = []  # tensorboard implements harness_best_epoch, but this run did not ask for it
    monkeypatch.setattr(loop, "best_sample", lambda *args: samples.append(args))
    store = tmp_path / "runs" / "harness.sqlite"
    code, out, err = run_cli(capsys, "run", *TINY_ARGS, "--log", "mlflow,csv", "--store", str(store))
    assert code == 0 and " finished: " in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: warning: the mlflow logger failed"), err
    (run_dir,) = [p for p in store.parent.iterdir() if p.is_dir()]
    assert (run_dir / "epochs.csv").is_file()  # the other logger went on
    assert samples == []  # no plugin asked for the best epoch's predictions: none were computed


def test_a_missing_package_is_one_warning_naming_the_extra(tmp_path, capsys, monkeypatch):
    from plugins.loggers.tensorboard import TensorBoardLogger

    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)  # as if not installed
    sessions = Sessions("tensorboard", TensorBoardLogger)
    sessions.start(_info(tmp_path, loggers=["tensorboard"]))
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("harness: warning: the tensorboard logger failed") and "[log]" in line
    assert sessions.open == {}
