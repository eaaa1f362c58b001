"""User-facing errors: one line naming the thing and the fix; the CLI turns them into exit code 2."""


class HarnessError(Exception):
    """A problem with the user's input (file, config, flag, plugin parameter), not a bug."""

    def __str__(self) -> str:
        # Messages quote what the user gave (names, keys, paths); a newline in it must not split the line.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(HarnessError):
    """A bad configuration value, flag or plugin parameter."""


class PluginError(HarnessError):
    """An unknown, ambiguous or broken plugin."""


class DataError(HarnessError):
    """A missing or malformed dataset."""
