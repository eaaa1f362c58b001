"""harness.analysis.significance: each leaderboard row's paired bootstrap difference to the top row —
the interval a brute-force bootstrap gives, a tie mark that follows the data, a note for unpaired rows."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.compare import miou_batch
from harness.analysis.significance import annotate
from harness.store import RunStore
from leaderboard.rows import group_rows, leaderboard_rows
from tests_support import add_run, per_image

FOLDS = {"data": {"ignore_index": 0, "folds": 2}}


def _config(store, name: str, accuracy: float, n: int, *, seed: int = 0) -> dict[int, np.ndarray]:
    """A 2-fold configuration: fold f validated images f, f+2, ...; returns fold -> its confusions."""
    matrices = {}
    for fold in range(2):
        conf = per_image(accuracy, n=n, seed=10 * fold + seed)
        score = float(miou_batch(conf.sum(0), 0))
        indices = np.arange(fold, 2 * n, 2)
        add_run(store, f"{name}-f{fold}", conf, seed=seed, config_hash=name, indices=indices, config=FOLDS,
                fold=fold, miou=score)  # fmt: skip
        matrices[fold] = conf
    return matrices


def _rows(store):
    runs = store.list_runs()
    rows = group_rows(leaderboard_rows(runs))
    return annotate(store, rows, runs, resamples=4000, seed=1), runs


def _brute_force(top: dict, other: dict, resamples: int = 4000) -> tuple[float, float, float]:
    """The paired bootstrap written out plainly: resample each fold's images, sum, score, average."""
    rng = np.random.default_rng(123)
    diffs = []
    for _ in range(resamples):
        per_fold = []
        for fold in top:
            pick = rng.integers(0, len(top[fold]), len(top[fold]))
            per_fold.append(miou_batch(other[fold][pick].sum(0), 0) - miou_batch(top[fold][pick].sum(0), 0))
        diffs.append(np.mean(per_fold))
    point = np.mean([miou_batch(other[f].sum(0), 0) - miou_batch(top[f].sum(0), 0) for f in top])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(point), float(low), float(high)


def test_the_interval_matches_a_brute_force_bootstrap(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        top = _config(store, "good", 0.8, 12)
        other = _config(store, "fair", 0.7, 12)
        rows, _ = _rows(store)
    assert [r["config_hash"] for r in rows] == ["good", "fair"]
    assert rows[0]["delta_vs_best"] == 0.0 and rows[0]["ci_low"] is None and rows[0]["tied_with_best"]
    point, low, high = _brute_force(top, other)
    assert rows[1]["delta_vs_best"] == pytest.approx(point, abs=1e-12)
    assert rows[1]["ci_low"] == pytest.approx(low, abs=0.01)
    assert rows[1]["ci_high"] == pytest.approx(high, abs=0.01)
    assert rows[1]["miou_oof"] is not None and rows[1]["pair_note"] is None


@pytest.mark.parametrize(("accuracy", "images", "tied"), [(0.79, 6, True), (0.5, 60, False)])
def test_the_tie_mark_follows_the_data(tmp_path, accuracy, images, tied):
    with RunStore(tmp_path / "s.sqlite") as store:
        _config(store, "top", 0.8, images)
        _config(store, "other", accuracy, images)
        rows, _ = _rows(store)
    assert rows[1]["tied_with_best"] is tied
    assert (rows[1]["ci_low"] <= 0 <= rows[1]["ci_high"]) is tied


def test_a_row_that_cannot_pair_says_why_and_no_significance_skips_it(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        _config(store, "top", 0.8, 8)
        _config(store, "elsewhere", 0.6, 8, seed=5)  # another seed: nothing to pair with
        rows, runs = _rows(store)
        assert rows[1]["delta_vs_best"] is None
        assert (
            "cannot be paired with the top row" in rows[1]["pair_note"]
            and "share no seed" in rows[1]["pair_note"]
        )
        plain = annotate(store, group_rows(leaderboard_rows(runs)), runs, significance=False)
    assert all("delta_vs_best" not in row for row in plain) and plain[0]["miou_oof"] is not None
