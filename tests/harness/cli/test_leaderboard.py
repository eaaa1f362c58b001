"""`harness leaderboard`: reading a store that does not exist creates nothing."""

from __future__ import annotations

from tests_support import run_cli


def test_leaderboard_on_missing_store_creates_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(store_path))
    assert code == 0 and "no" in out
    assert not store_path.exists()
