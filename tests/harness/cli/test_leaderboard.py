"""`harness leaderboard`: reading a store that does not exist creates nothing."""

from __future__ import annotations

from harness.cli.app import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_leaderboard_on_missing_store_creates_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(store_path))
    assert code == 0 and "no" in out
    assert not store_path.exists()
