"""Where the run store lives: an explicit path, else `$HARNESS_STORE`, else `runs/harness.sqlite`."""

from __future__ import annotations

import os
from pathlib import Path

from harness.store.errors import StoreError

DEFAULT_STORE = "runs/harness.sqlite"
STORE_ENV = "HARNESS_STORE"
SQLITE_URL = "sqlite:///"


def resolve_store_path(path: str | Path | None = None) -> Path:
    """Pick the store file: an explicit ``path`` wins, then ``$HARNESS_STORE``, then ``DEFAULT_STORE``.

    A store may be given as a path or as a URL ``sqlite:///relative/path`` or ``sqlite:////absolute/path``
    (SQLAlchemy's spelling, so one setting reads the same everywhere); other schemes are refused.
    """
    chosen = path if path not in (None, "") else os.environ.get(STORE_ENV) or DEFAULT_STORE
    text = str(chosen)
    if text.startswith(SQLITE_URL):
        text = text[len(SQLITE_URL) :]
        if not text:
            raise StoreError(f"store URL {chosen!r} names no file: use sqlite:///path/to/harness.sqlite")
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"store URL scheme '{scheme}' is not supported: the run store is SQLite "
            "(a path or sqlite:///path)"
        )
    return Path(text).expanduser()
