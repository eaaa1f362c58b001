"""harness.data: contact-sheet PNGs of (image | colour mask) pairs and which rows the inspection shows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from matplotlib import colors, image

from harness.data.inspect import inspect
from harness.data.sheets import CLASS_COLOURS, MAX_PAIRS, contact_sheet, outlier_sheet, palette, sheet_rows
from harness.data.synthetic import synthetic
from harness.errors import DataError, HarnessError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
H, W = 64, 128


def _pairs(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, H, W), dtype=np.uint8)
    masks = np.ones((n, H, W), np.uint8)  # soil, with a big rock in the first mask
    masks[0, 20:40, 30:70] = 4
    return images, masks


def _read_png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return image.imread(path)


def _pixels_near(picture: np.ndarray, hex_colour: str, tolerance: float = 0.02) -> int:
    target = np.array(colors.to_rgb(hex_colour))
    return int(np.count_nonzero(np.abs(picture[..., :3] - target).max(axis=-1) < tolerance))


def test_contact_sheet_is_a_png_of_the_expected_size(tmp_path):
    images, masks = _pairs(5)
    out = contact_sheet(images, masks, tmp_path / "sheet.png", titles=[f"#{i}" for i in range(5)], columns=2)
    assert out == tmp_path / "sheet.png"
    picture = _read_png(out)
    height, width = picture.shape[:2]
    # Two pairs of 2:1 panels across (about 200x100 px each), three rows, margins, titles and a legend.
    assert 800 <= width <= 950 and 330 <= height <= 500


def test_columns_shape_the_grid(tmp_path):
    images, masks = _pairs(4)
    wide = _read_png(contact_sheet(images, masks, tmp_path / "wide.png", columns=4))
    tall = _read_png(contact_sheet(images, masks, tmp_path / "tall.png", columns=1))
    assert wide.shape[1] > 3 * tall.shape[1] and tall.shape[0] > 2 * wide.shape[0]
    # More columns than pairs leaves no empty band on the right.
    two = _read_png(contact_sheet(images[:2], masks[:2], tmp_path / "two.png", columns=4))
    assert two.shape[1] < 0.6 * wide.shape[1]


def test_masks_are_drawn_in_class_colours(tmp_path):
    images, masks = _pairs(2)
    picture = _read_png(contact_sheet(torch.from_numpy(images), torch.from_numpy(masks), tmp_path / "s.png"))
    soil, big_rock, sand = CLASS_COLOURS[1], CLASS_COLOURS[4], CLASS_COLOURS[3]
    # Each mask panel is about 200x100 px: most is soil, the rock is a fifth of a panel's area.
    assert _pixels_near(picture, soil) > 20_000
    assert _pixels_near(picture, big_rock) > 1_000
    # Sand appears only as its legend swatch, not in any mask.
    assert 20 < _pixels_near(picture, sand) < 300


def test_class_colours_are_distinct_and_extendable():
    rgb = palette(5)
    assert rgb.shape == (5, 3)
    gaps = np.abs(rgb[:, None] - rgb[None]).max(axis=-1)
    assert gaps[~np.eye(5, dtype=bool)].min() > 0.2
    assert len({tuple(row) for row in palette(9)}) == 9


def test_missing_folder_is_a_one_line_error(tmp_path):
    images, masks = _pairs(2)
    out = tmp_path / "nowhere" / "sheet.png"
    with pytest.raises(HarnessError) as caught:
        contact_sheet(images, masks, out)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and "does not exist" in message
    assert not out.parent.exists()


def test_directory_as_output_is_refused(tmp_path):
    images, masks = _pairs(1)
    with pytest.raises(HarnessError, match="is a directory"):
        contact_sheet(images, masks, tmp_path)


@pytest.mark.parametrize(
    ("n", "kwargs", "message"),
    [
        (MAX_PAIRS + 1, {}, f"1 to {MAX_PAIRS} pairs"),
        (3, {"titles": ["a", "b"]}, "2 titles for 3 pairs"),
        (2, {"columns": 0}, "at least 1 column"),
    ],
)
def test_bad_requests_are_refused(tmp_path, n, kwargs, message):
    images = np.zeros((n, 8, 16), np.uint8)
    with pytest.raises(HarnessError, match=message):
        contact_sheet(images, images.copy(), tmp_path / "s.png", **kwargs)
    assert not (tmp_path / "s.png").exists()


def test_mismatched_images_and_masks_are_refused(tmp_path):
    with pytest.raises(HarnessError, match="images and masks alike"):
        contact_sheet(np.zeros((2, 8, 16), np.uint8), np.zeros((2, 8, 8), np.uint8), tmp_path / "s.png")


def _planted(rows: list[int], mask: np.ndarray):
    data = synthetic(n=20, test_n=0, seed=3)
    masks = data.masks.numpy().copy()
    masks[rows] = mask
    return dataclasses.replace(data, masks=torch.from_numpy(masks))


def test_sheet_rows_show_outliers_first():
    mask = np.ones((H, W), np.uint8)
    mask[:, W // 2 :] = 2
    report = inspect(_planted([2, 4, 6, 8], mask), min_group=4)
    rows, titles = sheet_rows(report)
    assert rows == [2, 4, 6, 8] and titles[0] == "#2 outlier"


def test_sheet_rows_fall_back_to_duplicate_groups_then_a_sample():
    report = inspect(_planted([1, 3, 5, 7, 9, 11], np.ones((H, W), np.uint8)))
    rows, titles = sheet_rows(report, per_group=4)
    assert rows == [1, 3, 5, 7] and titles[0] == "#1 group 1 (6x)"
    assert sheet_rows(report, limit=2)[0] == [1, 3]
    clean_report = inspect(synthetic(n=20, test_n=0, seed=3))
    assert sheet_rows(clean_report, limit=3) == ([0, 1, 2], ["#0", "#1", "#2"])


def test_outlier_sheet_writes_a_png(tmp_path):
    mask = np.ones((H, W), np.uint8)
    mask[:, W // 2 :] = 3
    data = _planted([0, 1, 2], mask)
    report = inspect(data, min_group=3)
    picture = _read_png(outlier_sheet(data, report, tmp_path / "outliers.png"))
    assert picture.shape[1] > picture.shape[0]
    assert _pixels_near(picture, CLASS_COLOURS[3]) > 10_000  # the shared mask's sand half, three times


def test_outlier_sheet_refuses_a_report_of_other_data(tmp_path):
    report = inspect(synthetic(n=20, test_n=0))
    with pytest.raises(DataError, match="covers 20 images"):
        outlier_sheet(synthetic(n=5, test_n=0), report, tmp_path / "s.png")
