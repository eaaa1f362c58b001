"""Dataset inspection: summary counts, class statistics, masks shared by several images and the "alien"
outliers among them.

The AN2DL Mars set is known to hold about a hundred unrelated images that all carry one and the same
non-uniform mask: labels pasted onto the wrong pictures. Masks shared by many images are otherwise
legitimate (a frame that is all soil), and an image stored twice with its mask is a plain duplicate.

Background (class 0) is unlabelled and ignored by the metric, so it does not count towards a mask's
structure: the AI4Mars-derived file holds groups of 10-30 different frames whose masks are all bedrock
(or all soil) save an unlabelled border or corner, and those are genuine single-terrain frames.
"""

from __future__ import annotations

import hashlib

import numpy as np

from harness.data.dataset import SegmentationData
from harness.data.splits import class_presence
from harness.errors import ConfigError, DataError

# Eight bytes keep the hash short enough for a terminal table; a collision among ~10^4 masks has
# a probability near 10^-12.
HASH_BYTES = 8

# Images per chunk of the per-image class histogram: bounds its int64 temporary to a few tens of MB.
_HISTOGRAM_CHUNK = 512


def row_hashes(array: np.ndarray) -> list[str]:
    """A blake2b hex digest of each row's bytes: equal rows, and only those, share a hash.

    The digest depends on the row's content alone (not its index or dtype), so it is stable across runs.
    """
    rows = _flat_rows(np.ascontiguousarray(array))
    # Hashing each row's buffer in C costs ~10 µs per 8 KB mask: cheaper than sorting rows with np.unique.
    return [hashlib.blake2b(row.data, digest_size=HASH_BYTES).hexdigest() for row in rows]


def class_histogram(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) int64: how many pixels of each class every mask holds, in one pass over the data."""
    flat = _flat_rows(masks)
    counts = np.empty((len(masks), num_classes), dtype=np.int64)
    for start in range(0, len(flat), _HISTOGRAM_CHUNK):
        chunk = flat[start : start + _HISTOGRAM_CHUNK]
        # Offsetting each row by row*K turns N small histograms into one bincount call.
        keys = chunk + (np.arange(len(chunk), dtype=np.int64) * num_classes)[:, None]
        binned = np.bincount(keys.ravel(), minlength=len(chunk) * num_classes)
        counts[start : start + len(chunk)] = binned.reshape(len(chunk), num_classes)
    return counts


def _flat_rows(array: np.ndarray) -> np.ndarray:
    # An explicit row length, since reshape cannot infer -1 when there are no rows.
    return array.reshape(len(array), int(np.prod(array.shape[1:])))


def inspect(data: SegmentationData, *, min_group: int = 10, background: int | None = 0) -> dict:
    """A JSON-safe report: per-class statistics, duplicate-mask groups, outlier indices and a summary.

    A group of images sharing one mask is flagged as outliers when it has at least `min_group` members,
    the mask holds two or more classes other than `background` (None: two or more classes of any kind),
    and the images are not all the same picture. Groups come largest first, each with its mask `hash`,
    `size`, `uniform` (one class covers the whole mask), `classes` (ids in the mask), `distinct_images`,
    `outlier` and the sorted `indices`.
    """
    if min_group < 2:
        raise ConfigError(
            f"min_group must be at least 2 (a group is a mask shared by 2+ images), got {min_group}"
        )
    masks, images = data.masks.numpy(), data.images.numpy()
    if masks.size and int(masks.max()) >= data.num_classes:
        raise DataError(
            f"{data.source}: masks hold class id {int(masks.max())}, beyond the {data.num_classes} classes"
        )
    histogram = class_histogram(masks, data.num_classes)
    groups = []
    for digest, members in _shared(row_hashes(masks)):
        classes = np.flatnonzero(histogram[members[0]]).tolist()
        # Image hashes are needed only inside groups, which keeps the second hashing pass small.
        distinct = len(set(row_hashes(images[members])))
        structured = len([c for c in classes if c != background]) >= 2
        groups.append(
            {
                "hash": digest,
                "size": len(members),
                "uniform": len(classes) == 1,
                "classes": classes,
                "distinct_images": distinct,
                "outlier": len(members) >= min_group and structured and distinct > 1,
                "indices": members,
            }
        )
    outliers = sorted(i for group in groups if group["outlier"] for i in group["indices"])
    return {
        "classes": _class_stats(histogram, data.class_names),
        "duplicate_mask_groups": groups,
        "outliers": outliers,
        "summary": {
            "images": len(data),
            "test_images": 0 if data.test_images is None else int(data.test_images.shape[0]),
            "height": int(masks.shape[1]),
            "width": int(masks.shape[2]),
            "duplicate_groups": len(groups),
            "outliers": len(outliers),
        },
    }


def _shared(hashes: list[str]) -> list[tuple[str, list[int]]]:
    """(hash, row indices) for each hash held by two or more rows, largest group first."""
    members: dict[str, list[int]] = {}
    for index, digest in enumerate(hashes):
        members.setdefault(digest, []).append(index)
    groups = [(digest, indices) for digest, indices in members.items() if len(indices) >= 2]
    # The first index breaks ties so the order depends on the data alone.
    return sorted(groups, key=lambda group: (-len(group[1]), group[1][0]))


def _class_stats(histogram: np.ndarray, class_names: tuple[str, ...]) -> dict[str, dict]:
    pixels = max(1, int(histogram.sum()))
    totals = histogram.sum(axis=0)
    present = (histogram > 0).sum(axis=0)
    return {
        name: {"pixel_share": int(totals[c]) / pixels, "images": int(present[c])}
        for c, name in enumerate(class_names)
    }


def check_report(data: SegmentationData, report: dict) -> None:
    """Refuse a report made from other data: its indices would pick the wrong rows, or none at all."""
    expected = report["summary"]["images"]
    if expected != len(data):
        raise DataError(
            f"the inspection report covers {expected} images but the dataset has {len(data)}; "
            "inspect the same data you use it on"
        )


def clean(data: SegmentationData, report: dict) -> SegmentationData:
    """`data` without the outliers listed in `report` (an `inspect` result for this very dataset)."""
    check_report(data, report)
    keep = np.ones(len(data), dtype=bool)
    keep[np.asarray(report["outliers"], dtype=np.int64)] = False
    if not keep.any():
        raise DataError(f"all {len(data)} images are outliers; nothing would be left to train on")
    return data.subset(keep)


def describe(data: SegmentationData) -> dict:
    """Counts: images, test images, H, W, per-class pixel share and images holding each class."""
    masks = data.masks.numpy()
    pixels = max(1, masks.size)
    presence = class_presence(masks, data.num_classes)
    return {
        "source": data.source,
        "dataset_id": data.dataset_id,
        "images": len(data),
        "test_images": 0 if data.test_images is None else int(data.test_images.shape[0]),
        "height": int(masks.shape[1]),
        "width": int(masks.shape[2]),
        "num_classes": data.num_classes,
        "pixel_share": {
            name: int(np.count_nonzero(masks == c)) / pixels for c, name in enumerate(data.class_names)
        },
        "images_with_class": {name: int(presence[:, c].sum()) for c, name in enumerate(data.class_names)},
    }
