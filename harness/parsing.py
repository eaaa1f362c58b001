"""Turning user strings (`k=v` flags, `--set` paths) into typed values, and errors into one line."""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

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
    the raw string is returned so the model's own validation reports the error with the field name.
    """
    adapter = TypeAdapter(annotation)
    candidates: list[Any] = [raw]
    if raw.lower() in ("none", "null"):
        candidates.append(None)
    with contextlib.suppress(ValueError, RecursionError):  # deeply nested brackets exhaust the parser
        candidates.append(json.loads(raw))
    candidates.append([_scalar(part.strip()) for part in raw.split(",") if part.strip()])
    for candidate in candidates:
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    return raw


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
    if len(value) > 1 and value[-1] in _UNITS and value[:-1].replace(".", "", 1).isdigit():
        return (now - timedelta(seconds=float(value[:-1]) * _UNITS[value[-1]])).isoformat(
            timespec="microseconds"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since expects an age like 30m, 12h, 3d, 2w or a date like 2026-11-24, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
