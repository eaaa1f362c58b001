"""The paired bootstrap behind `harness compare` on synthetic per-image confusion matrices, pairing and
refusals (the command itself: tests/harness/cli/test_compare.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.analysis.compare import bootstrap_differences, compare, miou_batch, paired_bootstrap
from harness.errors import HarnessError
from harness.inference.metrics import metrics_from_confusion
from harness.store import RunStore
from harness.training.checkpoints import PER_IMAGE_NAME
from tests_support import K, add_run, per_image


@pytest.fixture
def store(store_path):
    with RunStore(store_path) as opened:
        yield opened


def test_miou_batch_matches_the_one_metric():
    rng = np.random.default_rng(1)
    matrices = rng.integers(0, 30, (300, K, K)) * (rng.random((300, K, K)) < 0.5)
    for metric, attr in (("an2dl", "miou_an2dl"), ("fg", "miou_fg")):
        got = miou_batch(matrices, 0, metric)
        want = [getattr(metrics_from_confusion(torch.as_tensor(m), 0), attr) for m in matrices]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)


def test_vectorised_bootstrap_equals_a_plain_loop():
    a, b = per_image(0.7, n=15, seed=1), per_image(0.8, n=15, seed=2)
    fast = bootstrap_differences([(a, b)], resamples=40, seed=5)
    positions = np.random.default_rng(5).integers(0, 15, size=(40, 15))  # the same draws, replayed
    slow = [
        metrics_from_confusion(torch.as_tensor(b[p].sum(0))).miou_an2dl
        - metrics_from_confusion(torch.as_tensor(a[p].sum(0))).miou_an2dl
        for p in positions
    ]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_clearly_better_b_excludes_zero_with_the_right_sign(store):
    add_run(store, "run-a", per_image(0.70, seed=1))
    add_run(store, "run-b", per_image(0.80, seed=2), config_hash="cfg-b")
    forward = compare(store, "run-a", "run-b", resamples=500)
    assert forward.difference > 0.05 and forward.ci_low > 0 and forward.excludes_zero
    assert forward.ci_low < forward.difference < forward.ci_high
    assert (forward.pairs, forward.images) == (1, 120)
    backward = compare(store, "run-b", "run-a", resamples=500)
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.ci_high < 0 and backward.excludes_zero


def test_identical_runs_give_zero_and_an_interval_containing_it(store):
    confusion = per_image(0.75)
    add_run(store, "twin-1", confusion)
    add_run(store, "twin-2", confusion)
    result = compare(store, "twin-1", "twin-2", resamples=300)
    assert result.difference == 0
    assert result.ci_low <= 0 <= result.ci_high and not result.excludes_zero


def test_bootstrap_is_reproducible_with_a_seed():
    pairs = [(per_image(0.7, seed=1), per_image(0.72, seed=2))]
    first = paired_bootstrap(pairs, resamples=300, seed=7)
    assert paired_bootstrap(pairs, resamples=300, seed=7) == first
    assert paired_bootstrap(pairs, resamples=300, seed=8)[3:] != first[3:]


def test_runs_validated_on_different_images_are_refused(store):
    add_run(store, "run-a", per_image(0.7), indices=np.arange(120))
    add_run(store, "run-b", per_image(0.8), indices=np.arange(1, 121))
    with pytest.raises(HarnessError, match="validated on different images"):
        compare(store, "run-a", "run-b")


def test_groups_pair_by_shared_seeds_only(store):
    for seed in (0, 1, 2):
        add_run(store, f"a-{seed}", per_image(0.7, seed=seed), seed=seed, config_hash="aaaa1111")
    for seed in (1, 2, 3):
        add_run(store, f"b-{seed}", per_image(0.8, seed=10 + seed), seed=seed, config_hash="bbbb2222")
    add_run(store, "b-dead", None, seed=0, config_hash="bbbb2222", status="failed")  # not in the group
    result = compare(store, "aaaa", "bbbb", resamples=200)
    assert (result.a_kind, result.b_kind, result.a, result.b) == ("config", "config", "aaaa1111", "bbbb2222")
    assert result.pairs == 2 and result.seeds == [1, 2] and result.images == 240
    per_seed = [
        miou_batch(per_image(0.8, seed=10 + s).sum(0)) - miou_batch(per_image(0.7, seed=s).sum(0))
        for s in (1, 2)
    ]
    assert result.difference == pytest.approx(np.mean(per_seed))


def test_groups_without_a_shared_seed_are_refused(store):
    add_run(store, "a-0", per_image(0.7), seed=0, config_hash="aaaa1111")
    add_run(store, "b-5", per_image(0.8), seed=5, config_hash="bbbb2222")
    with pytest.raises(HarnessError, match=r"share no seed"):
        compare(store, "aaaa", "bbbb")


def test_unknown_key_and_missing_per_image_file_are_refused(store):
    add_run(store, "old-run", None)
    add_run(store, "new-run", per_image(0.7))
    with pytest.raises(HarnessError, match="no run id or config hash starts with 'nope'"):
        compare(store, "nope", "new-run")
    with pytest.raises(HarnessError, match=f"old-run \\(finished\\) has no {PER_IMAGE_NAME}"):
        compare(store, "old-run", "new-run")


def test_fold_trained_groups_pair_by_seed_and_fold(store):
    for fold in (0, 1, 2):  # the folds validated other images, so only the same fold pairs
        rows = np.arange(fold, 360, 3)
        add_run(
            store, f"a-f{fold}", per_image(0.7, seed=fold), config_hash="aaaa1111", fold=fold, indices=rows
        )
        if fold < 2:
            b = per_image(0.8, seed=10 + fold)
            add_run(store, f"b-f{fold}", b, config_hash="bbbb2222", fold=fold, indices=rows)
    result = compare(store, "aaaa", "bbbb", resamples=200)
    assert result.pairs == 2 and result.seeds == [0, 0] and result.folds == [0, 1]
    assert result.to_dict()["folds"] == [0, 1]
    per_fold = [
        miou_batch(per_image(0.8, seed=10 + f).sum(0)) - miou_batch(per_image(0.7, seed=f).sum(0))
        for f in (0, 1)
    ]
    assert result.difference == pytest.approx(np.mean(per_fold))
