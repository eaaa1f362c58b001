"""The `harness` command line: `app` holds the table of subcommands, one module per subcommand."""

from harness.cli.app import main

__all__ = ["main"]
