"""Datasets: the AN2DL npz loader and its checks, splits, inspection and contact sheets."""

from harness.data.dataset import CLASS_NAMES, SegmentationData, load_npz

__all__ = ["CLASS_NAMES", "SegmentationData", "load_npz"]
