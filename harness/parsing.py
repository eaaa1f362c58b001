"""Turning user strings (`k=v` flags, `--set` paths) into typed values, and errors into one line."""

from __future__ import annotations

import contextlib
import difflib
import json
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from harness.errors import ConfigError


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' when a close choice exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    """Split `key=value` (the value may itself contain '=')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} expects key=value, got {text!r}")
    return key.strip(), value.strip()


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def coerce_string(annotation: Any, raw: str) -> Any:
    """Best typed reading of a command-line string for a field of type `annotation`.

    Tried in order: the string itself (pydantic's lax mode already reads '5' as an int and
    'false' as a bool), JSON ('[1,2]', 'null'), then a comma-separated list. When nothing fits,
    the list it reads (or the raw string) is returned so the model's own validation reports the error
    with the field name.
    """
    adapter = TypeAdapter(annotation)
    candidates: list[Any] = [raw]
    if raw.lower() in ("none", "null"):
        candidates.append(None)
    with contextlib.suppress(ValueError, RecursionError):  # deeply nested brackets exhaust the parser
        candidates.append(json.loads(raw))
    candidates.append([_scalar(part.strip()) for part in raw.split(",") if part.strip()])
    for candidate in candidates:
        if isinstance(candidate, bool) and not takes_bool(annotation):
            continue  # JSON reads 'true' as True, which a number field would take as 1
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    # A list that fits nowhere (a negative weight) is reported item by item, not as "not a valid list".
    read = candidates[-2] if raw.lstrip().startswith(("[", "{")) else candidates[-1] if "," in raw else None
    return read if isinstance(read, list | dict) else raw


def describe_validation_error(error: ValidationError, where: str) -> str:
    """One line for a pydantic error: `where: field: message (got value)`, first problem first."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "value"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{loc}: {item['msg']}{shown}")
    return f"{where}: " + "; ".join(parts)


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> str:
    """`--since` as an ISO UTC timestamp: an age (`30m`, `12h`, `3d`, `2w`) or a date/time (`2026-11-24`).

    Stored run times are ISO UTC strings, so the result compares with them as text.
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    try:
        if len(value) > 1 and value[-1] in _UNITS and value[:-1].replace(".", "", 1).isdigit():
            return (now - timedelta(seconds=float(value[:-1]) * _UNITS[value[-1]])).isoformat(
                timespec="microseconds"
            )
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:  # an age beyond year 1, or a date whose UTC time falls outside years 1-9999
        raise ConfigError(
            f"--since {text!r} is out of range: give an age or a date within years 1-9999"
        ) from None
    except ValueError:
        raise ConfigError(
            f"--since expects an age like 30m, 12h, 3d, 2w or a date like 2026-11-24, got {text!r}"
        ) from None


# Tables and arrays nested deeper than this are no configuration the harness reads; refusing them early
# spares a RecursionError from deepcopy or pydantic.
MAX_NESTING = 32


def takes_bool(annotation: Any) -> bool:
    """Whether a field of this annotation may hold true/false: yes unless it is a number (int or float)
    without bool among its types (pydantic would otherwise read `epochs = true` as 1)."""
    return _mentions(annotation, (bool,)) or not _mentions(annotation, (int, float))


def _mentions(annotation: Any, kinds: tuple[type, ...]) -> bool:
    if annotation in kinds:
        return True
    return any(_mentions(arg, kinds) for arg in get_args(annotation))


def check_nesting(value: Any, where: str) -> None:
    """Refuse tables and arrays nested deeper than MAX_NESTING (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ConfigError(f"{where}: tables or arrays nested too deeply (over {MAX_NESTING} levels)")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file as a dict; a missing or malformed file is one ConfigError line."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            tree = tomllib.load(handle)
        check_nesting(tree, f"{path}: not valid TOML")
        return tree
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except ValueError as exc:  # a path with a NUL byte
        raise ConfigError(f"{str(path)!r}: cannot read config: {exc}") from None
