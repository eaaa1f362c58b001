"""The tiny trained store the command modules read (evaluate, predict, report, sweep): trained once per
session, so these modules together cost one tiny run. Tests read it; one that changes a store copies it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import api
from tests_support import TINY_CONFIG


@dataclass(frozen=True)
class Trained:
    store: Path
    run_id: str


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """A store holding one finished run of TINY_CONFIG (the same configuration as TINY_ARGS)."""
    store = tmp_path_factory.mktemp("cli-store") / "runs" / "harness.sqlite"
    result = api.run(TINY_CONFIG, store=store)
    assert result.status == "finished"
    return Trained(store, result.run_id)
