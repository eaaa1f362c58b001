"""harness.augment.seeds: one stream per epoch and rank, a strong stream apart from the ordinary one, and
formulas pinned so a config and seed keep giving the images of earlier releases."""

from __future__ import annotations

import numpy as np

from harness.augment.seeds import epoch_seed, strong_seed


def test_the_seed_formulas_are_pinned():
    assert epoch_seed(7, 3) == 7003 and epoch_seed(7, 3, rank=1, world_size=2) == 14007
    assert strong_seed(0) == int(np.random.SeedSequence([0, 1]).generate_state(1)[0])
    assert strong_seed(7) != strong_seed(8) and strong_seed(7) != 7


def test_a_plain_run_is_rank_0_of_1():
    assert epoch_seed(5, 2) == epoch_seed(5, 2, rank=0, world_size=1)


def test_every_epoch_and_rank_of_a_run_draws_its_own_stream():
    for world_size in (1, 2, 4):
        seeds = [
            epoch_seed(11, epoch, rank, world_size) for epoch in range(1, 51) for rank in range(world_size)
        ]
        assert len(set(seeds)) == len(seeds), world_size
    # the ranks of one epoch differ, and so do consecutive epochs
    assert epoch_seed(11, 3, 0, 2) != epoch_seed(11, 3, 1, 2)
    assert epoch_seed(11, 1) != epoch_seed(11, 2)


def test_runs_with_different_seeds_do_not_share_epoch_streams():
    first = {epoch_seed(0, epoch) for epoch in range(1, 101)}
    second = {epoch_seed(1, epoch) for epoch in range(1, 101)}
    assert not first & second


def test_the_strong_stream_is_apart_from_every_ordinary_stream():
    bases = [epoch_seed(seed, epoch) for seed in range(4) for epoch in range(1, 26)]
    strong = [strong_seed(base) for base in bases]
    assert len(set(strong)) == len(bases)  # a strong stream per ordinary stream
    assert not set(strong) & set(bases)  # and never one of the ordinary ones
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in strong)  # usable by numpy and torch
    assert strong_seed(7003) == strong_seed(7003)  # deterministic
    # the two streams draw different numbers
    base, derived = np.random.default_rng(7003), np.random.default_rng(strong_seed(7003))
    assert not np.array_equal(base.random(8), derived.random(8))
