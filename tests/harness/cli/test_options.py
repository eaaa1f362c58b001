"""The options the subcommands share: flags into settings (flags over the file, --set over flags), the
registry's warnings and the two consoles."""

from __future__ import annotations

import argparse
import sys

from harness.cli import options
from harness.cli.app import build_parser
from harness.plugins import load_plugins


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_flags_become_settings_in_order_and_set_comes_last():
    args = parse("run", "--set", "train.epochs=9", "--epochs", "3", "--data", "x.npz", "--batch-size", "4")
    assert options.flag_settings(args) == [
        "train.epochs=3",
        "train.batch_size=4",
        "data.source=x.npz",
        "train.epochs=9",
    ]
    assert options.flag_settings(parse("run")) == []


def test_sweep_budget_flag_is_the_same_setting_as_run():
    args = parse("sweep", "--max-minutes-per-run", "2.5", "--seed", "7")
    assert options.flag_settings(args) == ["train.max_minutes=2.5", "seed=7"]
    assert options.flag_settings(parse("run", "--max-minutes", "2.5", "--seed", "7")) == [
        "train.max_minutes=2.5",
        "seed=7",
    ]


def test_set_overrides_flags_which_override_the_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('seed = 1\n[train]\nepochs = 2\nbatch_size = 8\n[arch]\nname = "segnet"\n')
    registry = load_plugins()
    args = parse("run", "--config", str(config), "--arch", "unet", "--epochs", "3", "--set", "train.epochs=5")
    resolved = options.resolved_config(args, registry).config
    assert resolved.train.epochs == 5  # --set over the flag
    assert resolved.arch.name == "unet"  # the flag over the file
    assert resolved.train.batch_size == 8 and resolved.seed == 1  # the file where no flag says otherwise


def test_plugin_params_are_collected_by_section():
    args = parse("run", "--arch-param", "depth=2", "--arch-param", "width=4", "--loss-param", "gamma=2")
    assert options.plugin_params(args) == {
        "arch": ["depth=2", "width=4"],
        "loss": ["gamma=2"],
        "balancer": [],
        "data": [],
    }


def test_a_plugin_that_fails_to_load_is_one_warning_line(capsys, third_party):
    third_party({"broken": "raise ImportError('no such thing')\n"})
    registry = options.load_registry(parse("list"), options.error_console())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: warning: ") and "broken" in err[0]
    assert "unet" in registry.specs["architecture"]  # every other plugin still loads


def test_the_error_console_is_built_once_and_writes_to_the_current_stderr(capsys):
    assert options.error_console() is options.error_console()
    options.error_console().print("one [b]line[/b]", markup=False)
    assert capsys.readouterr().err == "one [b]line[/b]\n"
    assert options.error_console().file is sys.stderr


def test_the_wide_console_does_not_squash_tables_into_80_columns(capsys):
    console = options.wide_console()
    assert not console.is_terminal and console.width == 200
    assert console.file is sys.stdout
