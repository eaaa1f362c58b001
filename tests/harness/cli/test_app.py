"""The `harness` command: bad input is one line and exit 2 with an untouched store; the table of commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.app import main
from tests_support import assert_bad_input, run_cli


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "--arch", "unett"], "unknown architecture 'unett'; did you mean 'unet'?"),
        (["run", "--loss", "cee"], "unknown loss 'cee'; did you mean 'ce'?"),
        (["run", "--arch-param", "depth=99"], "bad architecture parameter for 'unet': depth"),
        (["run", "--arch-param", "widht=8"], "did you mean 'width'?"),
        (["run", "--arch-param", "depth"], "--arch-param expects key=value"),
        (["run", "--set", "train.epochs=zero"], "train.epochs"),
        (["run", "--set", "trian.epochs=1"], "unknown setting 'trian'"),
        (["run", "--data", "missing/file.npz"], "missing/file.npz: no such file"),
        (["run", "--config", "nope.toml"], "nope.toml: config file not found"),
        (["run", "--epochs", "many"], "invalid int value"),
        (["run", "--device", "cuda:7"], "device 'cuda:7'"),
        (["frobnicate"], "invalid choice"),
        (["list", "-p", "unet"], "-p expects no:NAME"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_store(capsys, store_path, argv, match):
    if argv[-1] == "cuda:7" and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert_bad_input(capsys, store_path, *argv, match=match)


def test_console_script_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "list", "leaderboard", "predict", "evaluate"):
        assert command in out


def test_every_command_of_the_table_is_one_module_with_its_parser_and_handler():
    from harness.cli import app

    assert list(app.COMMANDS) == [
        "run", "sweep", "tune", "list", "leaderboard", "predict", "evaluate", "export", "compare", "diff",
        "report",
        "check-plugin", "data", "bench",
    ]  # fmt: skip
    for name, module in app.COMMANDS.items():
        assert callable(module.add_parser) and callable(module.run), name
        assert module.__name__ == f"harness.cli.{name.replace('-', '_')}"
    help_text = app.build_parser().format_help()
    # `harness --help` lists each command at an indent of four, in the table's order
    listed = [
        line.split()[0]
        for line in help_text.splitlines()
        if line[:5].isspace() is False and line[:4] == "    "
    ]
    assert listed == list(app.COMMANDS)


def test_the_handler_of_the_named_command_runs(capsys, monkeypatch):
    from harness.cli import compare

    seen = []
    monkeypatch.setattr(compare, "run", lambda args: seen.append((args.command, args.a, args.b)) or 7)
    assert main(["compare", "x", "y"]) == 7
    assert seen == [("compare", "x", "y")]


@pytest.mark.parametrize(
    ("command", "error", "code", "line"),
    [
        ("leaderboard", KeyboardInterrupt(), 130, "harness: interrupted"),
        ("leaderboard", "Terminated", 143, "harness: terminated (SIGTERM)"),
        (
            "run",
            "run_id",
            130,
            "harness: interrupted: run r1 recorded as 'interrupted'; "
            "continue it with `harness run --resume r1`",
        ),
        (
            "sweep",
            "run_id",
            130,
            "harness: sweep interrupted: run r1 recorded as 'interrupted'; rerun the same command to train "
            "what is missing",
        ),
        (
            "tune",
            "run_id",
            130,
            "harness: tune interrupted: run r1 recorded as 'interrupted'; rerun the same command to train "
            "what is missing",
        ),
    ],
)
def test_an_interrupted_command_prints_one_line_and_its_exit_code(
    capsys, monkeypatch, command, error, code, line
):
    from harness.cli import app
    from harness.training.signals import Terminated

    if error == "Terminated":
        error = Terminated()
    elif error == "run_id":
        error = KeyboardInterrupt()
        error.run_id = "r1"

    def interrupted(args):
        raise error

    monkeypatch.setattr(app.COMMANDS[command], "run", interrupted)
    code_got, out, err = run_cli(capsys, command)
    assert code_got == code
    assert err.strip() == line and out == ""


def test_python_m_harness_and_the_console_script_are_the_same_main():
    import importlib.metadata

    import harness.cli

    # The console script and both `python -m` forms enter through harness.cli.main, which installs the
    # signal handlers before it imports the commands (harness.cli.app).
    for entry in ("__main__.py", "cli/__main__.py"):
        assert "from harness.cli import main" in (Path(harness.__file__).parent / entry).read_text()
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "harness"]
    assert script.value == "harness.cli:main"
    by_module = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=True
    ).stdout
    by_package = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert by_module == by_package and "check-plugin" in by_module


def test_version_is_the_installed_distributions(capsys, monkeypatch):
    import importlib.metadata

    from harness.cli import app

    asked = []
    monkeypatch.setattr(importlib.metadata, "version", lambda name: asked.append(name) or "9.8.7")
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and asked == [app.DISTRIBUTION] == ["segharness"]
    assert capsys.readouterr().out == "harness 9.8.7\n"


def test_version_outside_an_install_is_the_packages(capsys, monkeypatch):
    import importlib.metadata

    import harness

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(harness, "__version__", "1.2.3")
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == "harness 1.2.3\n"


def test_version_from_the_command_line():
    import harness

    done = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    name, number = done.stdout.split()
    assert name == "harness" and number.split(".")[0].isdigit()
    assert number == harness.__version__  # pyproject.toml reads its version from harness.__version__


@pytest.mark.parametrize("argv", [["leaderboard", "--by", "nope"], ["nope"], ["evaluate"]])
def test_a_parser_error_says_harness_once(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: ") and err.count("harness:") == 1, err
    assert err.endswith("--help)")
