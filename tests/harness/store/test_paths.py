"""harness.store.paths: which file the run store is (explicit path, $HARNESS_STORE, default; sqlite URLs)."""

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.store import DEFAULT_STORE, resolve_store_path


def test_resolve_store_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    assert resolve_store_path() == Path(DEFAULT_STORE)
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "env.sqlite"))
    assert resolve_store_path() == tmp_path / "env.sqlite"
    assert resolve_store_path(tmp_path / "explicit.sqlite") == tmp_path / "explicit.sqlite"
    assert resolve_store_path("x.sqlite") == Path("x.sqlite")


def test_store_urls(tmp_path: Path) -> None:
    assert resolve_store_path("sqlite:///runs/a.sqlite") == Path("runs/a.sqlite")
    assert resolve_store_path(f"sqlite:///{tmp_path}/b.sqlite") == tmp_path / "b.sqlite"
    with pytest.raises(HarnessError, match="scheme 'postgresql' is not supported"):
        resolve_store_path("postgresql://host/db")
    with pytest.raises(HarnessError, match="names no file"):
        resolve_store_path("sqlite:///")
