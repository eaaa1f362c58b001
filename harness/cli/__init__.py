"""The `harness` command line: `app` holds the table of subcommands, one module per subcommand.

`main` installs the signal handlers before it imports the commands (torch and every plugin take a second
or more): Ctrl-C or SIGTERM at any moment ends the command with one line and exit 130 or 143.
"""

from __future__ import annotations

import sys

from harness.training.signals import Terminated, stop_signals


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script; returns the exit code (see `harness.cli.app.main`)."""
    with stop_signals():
        try:
            from harness.cli.app import main as run_command
        except KeyboardInterrupt as exc:  # during the imports: nothing has started, so nothing to record
            terminated = isinstance(exc, Terminated)
            sys.stderr.write(f"harness: {'terminated (SIGTERM)' if terminated else 'interrupted'}\n")
            return 143 if terminated else 130
        return run_command(argv)


__all__ = ["main"]
