"""Datasets: the AN2DL npz loader and its checks, the synthetic generator, splits, inspection, contact sheets.

`from harness.data import SegmentationData, load_npz, CLASS_NAMES` reaches the names most callers need.
"""

from harness.data.dataset import CLASS_NAMES, SegmentationData, load_npz

__all__ = ["CLASS_NAMES", "SegmentationData", "load_npz"]
