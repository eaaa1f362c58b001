"""The augmentation random streams, one formula each, shared by both backends.

Every epoch draws from its own stream (`epoch_seed`); under torchrun each rank too, where it augments
rows of its own. The rows a balancer marks strong draw from a stream derived from that seed
(`strong_seed`), so editing the strong steps leaves the ordinary rows' draws as they were.
"""

from __future__ import annotations

import numpy as np


def epoch_seed(seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> int:
    """The seed of `epoch`'s augmentation for one rank of `world_size` (a plain run: rank 0 of 1)."""
    return (seed * 1000 + epoch) * world_size + rank


def strong_seed(seed: int) -> int:
    """The seed of the strong rows' stream, derived from the ordinary rows' `seed`."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
