"""The `harness` command: the table of subcommands, the parser, and what every command ends with.

Each subcommand is one module of harness.cli with `add_parser(subparsers)` and `run(args) -> int` side
by side; `COMMANDS` lists them in the order `harness --help` shows them. Bad input (flags, files,
configs, plugin parameters) prints one line on stderr and exits 2. Ctrl-C (SIGINT) and SIGTERM record
the run in progress as 'interrupted', print one line and exit 130 and 143.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from types import ModuleType

import harness
from harness.cli import (
    bench,
    check_plugin,
    compare,
    data,
    diff,
    evaluate,
    export,
    leaderboard,
    predict,
    report,
    run,
    sweep,
    tune,
)
from harness.cli import list as list_
from harness.cli.options import error_console
from harness.errors import HarnessError
from harness.training.signals import Terminated, stop_signals

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 143  # 128 + SIGTERM
DISTRIBUTION = "segharness"  # the name on the package index; the import package and the command are `harness`

# name -> the module with its `add_parser` and `run`
COMMANDS: dict[str, ModuleType] = {
    "run": run,
    "sweep": sweep,
    "tune": tune,
    "list": list_,
    "leaderboard": leaderboard,
    "predict": predict,
    "evaluate": evaluate,
    "export": export,
    "compare": compare,
    "diff": diff,
    "report": report,
    "check-plugin": check_plugin,
    "data": data,
    "bench": bench,
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # main prints "harness: error: " before it, so the message does not repeat the program's name.
        raise HarnessError(f"{message} (see {self.prog} --help)")


def build_parser() -> Parser:
    """The whole command line: every subcommand of `COMMANDS`, each parser a one-line-error `Parser`."""
    parser = Parser(prog="harness", description="Plugin-based benchmark harness for semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"harness {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def version() -> str:
    """The installed distribution's version; the package's own `__version__` when it is not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return harness.__version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code."""
    err = error_console()
    args = None
    try:
        with stop_signals():
            args = build_parser().parse_args(argv)
            return COMMANDS[args.command].run(args)
    except HarnessError as exc:
        err.print(f"harness: error: {exc}", markup=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        err.print(interrupted_line(exc, getattr(args, "command", None)), markup=False)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def interrupted_line(exc: KeyboardInterrupt, command: str | None) -> str:
    """One line: what stopped us, what was recorded, how to go on."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    run_id = getattr(exc, "run_id", None)
    if command in ("sweep", "tune"):  # both resume by running the same command again
        recorded = f"run {run_id} recorded as 'interrupted'; " if run_id else ""
        return f"harness: {command} {what}: {recorded}rerun the same command to train what is missing"
    if run_id:
        return (
            f"harness: {what}: run {run_id} recorded as 'interrupted'; "
            f"continue it with `harness run --resume {run_id}`"
        )
    return f"harness: {what}"


if __name__ == "__main__":
    raise SystemExit(main())
