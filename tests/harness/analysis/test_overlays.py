"""The best run's overlays: which validation rows are shown (a run without a checkpoint: test_checkpoints.py).

The end-to-end check (the reloaded model reproduces the stored validation) is in test_report.py, which
trains the runs once for every report test.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.overlays import OVERLAY_IMAGES, spread


@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 100, 1001])
def test_spread_is_evenly_spaced_includes_both_ends_and_is_fixed(count):
    positions = spread(count)
    assert len(positions) == min(OVERLAY_IMAGES, count)
    assert positions[0] == 0 and positions[-1] == count - 1
    assert np.all(np.diff(positions) > 0)
    assert np.array_equal(positions, spread(count))
    if count >= OVERLAY_IMAGES:
        gaps = np.diff(positions)
        assert gaps.max() - gaps.min() <= 1


def test_spread_of_fewer_images_than_wanted_takes_them_all():
    assert spread(3, wanted=8).tolist() == [0, 1, 2]
    assert spread(10, wanted=3).tolist() == [0, 4, 9]  # round(4.5) rounds half to even
