"""harness.errors: a HarnessError is one line (newlines in what the user gave are escaped), its kinds are
HarnessErrors, and the CLI turns any of them into exit code 2 with one line on stderr."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.config import build_config, resolve
from harness.errors import ConfigError, DataError, HarnessError, PluginError
from harness.plugins import load_plugins


@pytest.mark.parametrize("kind", [HarnessError, ConfigError, PluginError, DataError])
def test_newlines_in_a_message_are_escaped_to_one_line(kind):
    error = kind("unknown loss 'a\nb'\r\nsee --help")
    assert str(error) == "unknown loss 'a\\nb'\\r\\nsee --help"
    assert "\n" not in str(error) and "\r" not in str(error)
    assert error.args == ("unknown loss 'a\nb'\r\nsee --help",)  # the original stays in args
    assert str(kind("plain")) == "plain"


def test_the_kinds_are_harness_errors_and_distinct():
    for kind in (ConfigError, PluginError, DataError):
        assert issubclass(kind, HarnessError) and issubclass(kind, Exception)
    assert not issubclass(ConfigError, (PluginError, DataError))
    assert not issubclass(PluginError, (ConfigError, DataError))
    assert not issubclass(DataError, (ConfigError, PluginError))


@pytest.mark.parametrize(
    ("config", "settings", "kind"),
    [
        ({}, ["train.epochs"], ConfigError),
        ({"arch": {"name": "unett"}}, [], PluginError),
        ({"data": {"source": "missing/data.npz"}}, [], DataError),
    ],
)
def test_bad_input_raises_its_kind(config, settings, kind):
    with pytest.raises(kind):
        built, params = build_config(config, settings=settings)
        resolve(built, load_plugins(), params)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "train.epochs"], "--set expects key=value, got 'train.epochs'"),  # ConfigError
        (["--data", "{tmp}/missing.npz"], "{tmp}/missing.npz: no such file"),  # DataError
        (["--arch", "unett"], "unknown architecture 'unett'; did you mean 'unet'?"),  # PluginError
        (["--arch", "un\nett"], "unknown architecture 'un\\nett'"),  # the user's newline stays escaped
    ],
)
def test_the_cli_turns_each_kind_into_exit_2_and_one_line(capsys, tmp_path, store_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["run", *argv, "--store", str(store_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("harness: error: ") and message.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not store_path.exists()  # bad input is refused before anything is recorded
