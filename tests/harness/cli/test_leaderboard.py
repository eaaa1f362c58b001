"""`harness leaderboard`: reading a store that does not exist creates nothing; it starts without pandas."""

from __future__ import annotations

import subprocess
import sys

from tests_support import run_cli


def test_leaderboard_on_missing_store_creates_nothing(capsys, store_path):
    code, out, _ = run_cli(capsys, "leaderboard", "--store", str(store_path))
    assert code == 0 and "no" in out
    assert not store_path.exists()


def test_leaderboard_does_not_import_pandas(trained):
    # pandas (~0.35 s) is for the DataFrame of api.leaderboard: not on the command's path. (The command loads
    # the plugins, for the defaults its labels compare with; scipy comes with them, through scikit-image.)
    probe = (
        "import sys\n"
        "from harness.cli import main\n"
        f"codes = [main(['leaderboard', '--store', {str(trained.store)!r}, *more]) for more in\n"
        "         ([], ['--by', 'run', '--format', 'csv'])]\n"
        "print(*codes, *sorted({m.split('.')[0] for m in sys.modules} & {'pandas'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert f"\n1,{trained.run_id}," in done.stdout  # the leaderboard was really rendered, with its run
    assert done.stdout.splitlines()[-1] == "0 0"
