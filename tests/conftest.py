"""Shared fixtures: tiny synthetic runs that finish in seconds on a laptop CPU."""

from __future__ import annotations

import importlib.metadata
import signal
import textwrap

import pytest

from harness import plugins


@pytest.fixture
def store_path(tmp_path):
    """A run store path inside the test's own directory (not created until a run starts)."""
    return tmp_path / "runs" / "harness.sqlite"


@pytest.fixture(autouse=True)
def _no_user_store(monkeypatch):
    # Tests never read or write the developer's own run store.
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    monkeypatch.delenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("HARNESS_PLUGINS", raising=False)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A stopped command leaves SIGINT and SIGTERM ignored (its process is on its way out); in the test
    process that would leak into later tests (a Ctrl-C test that never raises), so each test's are undone."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """Install fake entry-point plugins: third_party({"ep_name": source_code, ...})."""

    def install(sources: dict[str, str]) -> None:
        entries = []
        for name, source in sources.items():
            (tmp_path / f"fake_{name}.py").write_text(textwrap.dedent(source))
            entries.append(importlib.metadata.EntryPoint(name=name, value=f"fake_{name}", group="harness"))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: entries)

    return install
