"""Folders of images: PNG/JPEG/TIFF read as uint8 grayscale (colour converted and counted, 16-bit scaled),
PNG masks that round-trip exactly, and one line naming an unreadable file or a missing mask."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import io

from harness.data.images import (
    PALETTE,
    image_paths,
    is_image_source,
    read_images,
    read_masks,
    to_gray,
    write_masks,
)
from harness.errors import DataError

RNG = np.random.default_rng(0)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    io.imsave(root / "b.png", RNG.integers(0, 256, (16, 24)).astype(np.uint8), check_contrast=False)
    io.imsave(root / "a.tif", (RNG.integers(0, 256, (8, 8)) * 257).astype(np.uint16), check_contrast=False)
    io.imsave(root / "c.jpg", RNG.integers(0, 256, (10, 12, 3)).astype(np.uint8))
    (root / "notes.txt").write_text("not an image, not listed")
    return root


def test_a_folder_or_a_glob_lists_its_images_sorted(folder):
    assert [p.name for p in image_paths(str(folder))] == ["a.tif", "b.png", "c.jpg"]
    assert [p.name for p in image_paths(str(folder / "*.png"))] == ["b.png"]
    assert is_image_source(str(folder)) and is_image_source("x/*.png") and not is_image_source("a.npz")
    with pytest.raises(DataError, match="no PNG, JPEG or TIFF images found"):
        image_paths(str(folder / "*.bmp"))


def test_images_are_read_as_uint8_gray_and_colour_is_noticed(folder):
    read = read_images(str(folder))
    assert [image.shape for image in read.images] == [(8, 8), (16, 24), (10, 12)]
    assert all(image.dtype == np.uint8 for image in read.images)
    assert read.converted == 1
    assert read.notice() == "note: 1 of 3 images were colour; converted to grayscale"
    original = io.imread(folder / "b.png")
    assert np.array_equal(read.images[1], original)  # gray uint8 is read as it is


def test_colour_becomes_luminance():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    gray, colour = to_gray(rgb, "x.png")
    assert colour and np.all(gray == round(0.2125 * 255))
    assert np.array_equal(to_gray(rgb.astype(np.uint16) * 257, "x.tif")[0], gray)  # 16-bit colour
    assert np.array_equal(to_gray(rgb / 255.0, "x.tif")[0], gray)  # float colour in [0, 1]
    assert not to_gray(np.full((2, 2), 65535, dtype=np.uint16), "x.tif")[1]
    assert np.all(to_gray(np.full((2, 2), 65535, dtype=np.uint16), "x.tif")[0] == 255)


def test_an_unreadable_file_is_refused_naming_it(folder):
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        read_images(str(folder))


def test_png_masks_round_trip(tmp_path):
    masks = [RNG.integers(0, 5, (16, 24)).astype(np.uint8), RNG.integers(0, 5, (7, 9)).astype(np.uint8)]
    written = write_masks(masks, ["one.jpg", "two.tif"], tmp_path / "out", palette=True)
    assert [p.name for p in written] == ["one.png", "two.png"]
    assert (tmp_path / "out" / "one.palette.png").is_file()
    assert np.array_equal(io.imread(tmp_path / "out" / "one.palette.png"), PALETTE[masks[0]])
    back = read_masks(str(tmp_path / "out"), ["one.jpg", "two.tif"], [(16, 24), (7, 9)], 5)
    assert all(np.array_equal(a, b) for a, b in zip(back, masks, strict=True))


def test_masks_must_exist_fit_the_image_and_the_classes(tmp_path):
    write_masks([np.full((4, 4), 7, dtype=np.uint8)], ["m.png"], tmp_path)
    with pytest.raises(DataError, match="no mask for image other.png"):
        read_masks(str(tmp_path), ["other.png"], [(4, 4)], 5)
    with pytest.raises(DataError, match=r"mask of shape \(4, 4\) for an image of shape \(4, 5\)"):
        read_masks(str(tmp_path), ["m.png"], [(4, 5)], 5)
    with pytest.raises(DataError, match="values outside the classes 0..4"):
        read_masks(str(tmp_path), ["m.png"], [(4, 4)], 5)
    with pytest.raises(DataError, match="must be a folder"):
        read_masks(str(tmp_path / "missing"), ["m.png"], [(4, 4)], 5)
