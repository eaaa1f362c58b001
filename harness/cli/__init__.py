"""The `harness` command line: `app` holds the table of subcommands, one module per subcommand.

`main` installs the signal handlers before it imports the commands (torch and every plugin take a second
or more): Ctrl-C or SIGTERM at any moment ends the command with one line and exit 130 or 143.
"""

from __future__ import annotations

from harness.training.signals import ending_at_once, stop_signals


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code (see `harness.cli.app.main`)."""
    with stop_signals():
        with ending_at_once():  # nothing has started yet: a signal ends the process with one line
            from harness.cli.app import main as run_command
        return run_command(argv)


__all__ = ["main"]
