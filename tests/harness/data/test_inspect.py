"""harness.data.inspect: shared-mask groups, the "alien" outlier rule, class statistics, cleaning, counts."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from harness.data import inspect as inspection
from harness.data.dataset import CLASS_NAMES, SegmentationData
from harness.data.inspect import check_report, class_histogram, clean, describe, inspect, row_hashes
from harness.data.synthetic import synthetic
from harness.errors import ConfigError, DataError

N, H, W = 40, 64, 128
ALIENS = [3, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35]  # 12 rows, spread out on purpose


def _base() -> SegmentationData:
    return synthetic(n=N, test_n=2, seed=7)


def _with(data: SegmentationData, images: np.ndarray, masks: np.ndarray) -> SegmentationData:
    changed = dataclasses.replace(data, images=torch.from_numpy(images), masks=torch.from_numpy(masks))
    # subset() recomputes dataset_id, which replace() would leave describing the old rows.
    return changed.subset(np.arange(len(changed)))


def _structured_mask() -> np.ndarray:
    """Three labelled classes and some background: a mask no two real frames would share by chance."""
    mask = np.ones((H, W), np.uint8)
    mask[:, W // 2 :] = 2
    mask[40:, 10:50] = 3
    mask[:8] = 0
    return mask


def _plant(data: SegmentationData, rows: list[int], mask: np.ndarray) -> SegmentationData:
    masks = data.masks.numpy().copy()
    masks[rows] = mask
    return _with(data, data.images.numpy().copy(), masks)


def test_synthetic_base_has_no_duplicates():
    # The other tests rely on every group coming from what they planted.
    report = inspect(_base())
    assert report["duplicate_mask_groups"] == [] and report["outliers"] == []


def test_different_images_sharing_a_structured_mask_are_outliers():
    report = inspect(_plant(_base(), ALIENS, _structured_mask()))
    assert report["outliers"] == ALIENS
    [group] = report["duplicate_mask_groups"]
    assert group["size"] == 12 and group["indices"] == ALIENS
    assert group["outlier"] and not group["uniform"] and group["distinct_images"] == 12
    assert group["classes"] == [0, 1, 2, 3]
    assert report["summary"]["duplicate_groups"] == 1 and report["summary"]["outliers"] == 12


def test_uniform_mask_shared_by_many_images_is_not_flagged():
    all_soil = np.ones((H, W), np.uint8)
    report = inspect(_plant(_base(), ALIENS, all_soil))
    [group] = report["duplicate_mask_groups"]
    assert group["size"] == 12 and group["uniform"] and not group["outlier"]
    assert report["outliers"] == [] and report["summary"]["outliers"] == 0


def test_single_terrain_with_an_unlabelled_border_is_not_flagged():
    # The real AI4Mars file holds groups of 10-30 all-bedrock or all-soil frames with background corners.
    soil = np.ones((H, W), np.uint8)
    soil[0, 0] = soil[0, -1] = 0
    data = _plant(_base(), ALIENS, soil)
    report = inspect(data)
    assert report["duplicate_mask_groups"][0]["size"] == 12 and report["outliers"] == []
    # Counting background as a class gives the strict rule, which flags them.
    assert inspect(data, background=None)["outliers"] == ALIENS


def test_exact_duplicates_are_reported_not_flagged():
    images, masks = _base().images.numpy().copy(), _base().masks.numpy().copy()
    images[[5, 9]] = images[0]
    masks[[5, 9]] = masks[0]
    report = inspect(_with(_base(), images, masks), min_group=2)
    [group] = report["duplicate_mask_groups"]
    assert group["indices"] == [0, 5, 9] and group["distinct_images"] == 1
    assert not group["outlier"] and report["outliers"] == []


def test_min_group_is_respected():
    data = _plant(_base(), ALIENS, _structured_mask())
    assert inspect(data, min_group=12)["outliers"] == ALIENS
    too_big = inspect(data, min_group=13)
    assert too_big["outliers"] == [] and too_big["duplicate_mask_groups"][0]["size"] == 12
    small = _plant(_base(), [1, 2, 4], _structured_mask())
    assert inspect(small)["outliers"] == [] and inspect(small, min_group=3)["outliers"] == [1, 2, 4]
    with pytest.raises(ConfigError, match="min_group"):
        inspect(data, min_group=1)


def test_groups_are_sorted_by_size_descending():
    data = _plant(_plant(_base(), [0, 1, 2], np.full((H, W), 2, np.uint8)), ALIENS, _structured_mask())
    sizes = [group["size"] for group in inspect(data)["duplicate_mask_groups"]]
    assert sizes == [12, 3]


def test_hashes_are_stable_and_content_only():
    masks = np.zeros((2, H, W), np.uint8)
    masks[1] = np.arange(H * W).reshape(H, W) % 5
    # Literal digests: reports written by one run must compare with those of later runs and versions.
    assert row_hashes(masks) == ["2421fd9e42cf02ca", "63eb79a14aa7a9cc"]
    assert row_hashes(masks)[1] == hashlib.blake2b(masks[1].tobytes(), digest_size=8).hexdigest()
    assert row_hashes(masks[::-1]) == row_hashes(masks)[::-1]
    data = _plant(_base(), ALIENS, _structured_mask())
    first = inspect(data)["duplicate_mask_groups"][0]["hash"]
    assert first == row_hashes(_structured_mask()[None])[0]


def test_class_statistics_match_describe():
    data = _base()
    stats, summary = inspect(data)["classes"], describe(data)
    assert list(stats) == list(data.class_names)
    for name in data.class_names:
        assert stats[name]["pixel_share"] == pytest.approx(summary["pixel_share"][name])
        assert stats[name]["images"] == summary["images_with_class"][name]
    assert sum(s["pixel_share"] for s in stats.values()) == pytest.approx(1.0)


def test_class_histogram_across_chunks(monkeypatch):
    monkeypatch.setattr(inspection, "_HISTOGRAM_CHUNK", 7)  # 40 rows: several chunks and a ragged last one
    masks = _base().masks.numpy()
    expected = np.stack([(masks == c).sum(axis=(1, 2)) for c in range(5)], axis=1)
    np.testing.assert_array_equal(class_histogram(masks, 5), expected)


def test_report_is_json_safe_and_summarises():
    report = inspect(_plant(_base(), ALIENS, _structured_mask()))
    assert json.loads(json.dumps(report)) == report
    assert report["summary"] == {
        "images": N,
        "test_images": 2,
        "height": H,
        "width": W,
        "duplicate_groups": 1,
        "outliers": 12,
    }


def test_masks_beyond_num_classes_are_refused():
    data = _plant(_base(), [0], np.full((H, W), 7, np.uint8))
    with pytest.raises(DataError, match="class id 7"):
        inspect(data)


def test_clean_drops_exactly_the_outliers():
    data = _plant(_base(), ALIENS, _structured_mask())
    cleaned = clean(data, inspect(data))
    kept = [i for i in range(N) if i not in ALIENS]
    assert len(cleaned) == N - 12
    assert torch.equal(cleaned.images, data.images[kept]) and torch.equal(cleaned.masks, data.masks[kept])
    assert cleaned.test_images is data.test_images
    assert inspect(cleaned)["duplicate_mask_groups"] == []


def test_clean_without_outliers_keeps_everything():
    data = _plant(_base(), ALIENS, np.ones((H, W), np.uint8))
    cleaned = clean(data, inspect(data))
    assert torch.equal(cleaned.images, data.images) and torch.equal(cleaned.masks, data.masks)
    assert cleaned.dataset_id == data.dataset_id


def test_clean_refuses_a_report_of_other_data():
    report = inspect(_plant(_base(), ALIENS, _structured_mask()))
    other = synthetic(n=10, test_n=0)
    with pytest.raises(DataError, match="covers 40 images but the dataset has 10") as caught:
        clean(other, report)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError):
        check_report(other, report)


def test_clean_refuses_to_drop_everything():
    data = _plant(synthetic(n=12, test_n=0), list(range(12)), _structured_mask())
    with pytest.raises(DataError, match="all 12 images are outliers"):
        clean(data, inspect(data))


def test_empty_dataset():
    empty = _base().subset(np.zeros(N, dtype=bool))
    report = inspect(empty)
    assert report["summary"]["images"] == 0 and report["duplicate_mask_groups"] == []


def test_describe_counts():
    masks = torch.zeros((2, 2, 4), dtype=torch.uint8)
    masks[0, 0, :2] = 4
    masks[1, 1, :] = 1
    data = SegmentationData(
        images=torch.zeros((2, 2, 4), dtype=torch.uint8),
        masks=masks,
        test_images=torch.zeros((3, 2, 4), dtype=torch.uint8),
        num_classes=5,
        class_names=CLASS_NAMES,
        source="inline",
        dataset_id="abc",
    )
    summary = describe(data)
    assert (summary["images"], summary["test_images"], summary["height"], summary["width"]) == (2, 3, 2, 4)
    assert summary["pixel_share"] == {
        "background": 0.625,
        "soil": 0.25,
        "bedrock": 0,
        "sand": 0,
        "big rock": 0.125,
    }
    assert summary["images_with_class"] == {
        "background": 2,
        "soil": 1,
        "bedrock": 0,
        "sand": 0,
        "big rock": 1,
    }
