"""harness.data: the AN2DL npz loader's checks, the synthetic generator, the split and the augmenters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.augment.vocabulary import PRESETS, build_augmenter, pipeline_from_config
from harness.data.dataset import (
    CLASS_NAMES,
    SegmentationData,
    class_presence,
    describe,
    load_npz,
    split,
    synthetic,
)
from harness.errors import ConfigError, DataError

H, W = 8, 16


def _training_set(n: int = 6, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.empty((n, 2, H, W), dtype=dtype)
    data[:, 0] = rng.integers(0, 256, (n, H, W))
    data[:, 1] = rng.integers(0, 5, (n, H, W))
    return data


def _save(tmp_path, name: str = "mars.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _load_error(path, num_classes: int = 5) -> str:
    with pytest.raises(DataError) as caught:
        load_npz(path, num_classes=num_classes)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --------------------------------------------------------------------------------------------------------
# Loader errors


def test_missing_file(tmp_path):
    message = _load_error(tmp_path / "nowhere.npz")
    assert "not found" in message


def test_directory_is_refused(tmp_path):
    assert "directory" in _load_error(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"just some text, not a zip file" * 4, "zip header"),
        (b"PK\x03\x04broken", "readable"),
    ],
)
def test_corrupt_file(tmp_path, content, expected):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(content)
    assert expected in _load_error(path)


@pytest.mark.parametrize("where", [0.02, 0.5])
def test_corrupt_member_inside_a_valid_zip(tmp_path, where):
    path = tmp_path / "damaged.npz"
    np.savez_compressed(path, training_set=_training_set(n=40))
    raw = bytearray(path.read_bytes())
    start = max(80, int(len(raw) * where))
    raw[start : start + 60] = b"x" * 60
    path.write_bytes(bytes(raw))
    message = _load_error(path)
    assert "'training_set'" in message and "corrupt" in message


def test_single_npy_array_is_not_an_npz(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, _training_set())
    assert "(6, 2, 8, 16)" in _load_error(path)


@pytest.mark.parametrize("key", ["training_set", "test_set"])
def test_object_arrays_are_refused(tmp_path, key):
    arrays = {"training_set": _training_set(), key: np.array([{"x": 1}, None], dtype=object)}
    message = _load_error(_save(tmp_path, **arrays))
    assert f"'{key}'" in message and "dtype object" in message


def test_missing_training_set_lists_the_keys(tmp_path):
    message = _load_error(_save(tmp_path, images=np.zeros((2, H, W)), labels=np.zeros((2, H, W))))
    assert "'training_set'" in message and "'images'" in message and "'labels'" in message


@pytest.mark.parametrize("shape", [(10, 3, H, W), (10, H, W), (10, 2, H, W, 1), (2,)])
def test_training_set_with_the_wrong_shape(tmp_path, shape):
    message = _load_error(_save(tmp_path, training_set=np.zeros(shape, np.uint8)))
    assert "'training_set'" in message and str(shape) in message and "(N, 2, H, W)" in message


@pytest.mark.parametrize("shape", [(0, 2, H, W), (3, 2, 0, W)])
def test_empty_training_set(tmp_path, shape):
    message = _load_error(_save(tmp_path, training_set=np.zeros(shape, np.uint8)))
    assert "'training_set'" in message and "empty" in message and str(shape) in message


def test_test_set_with_other_image_size(tmp_path):
    path = _save(tmp_path, training_set=_training_set(), test_set=np.zeros((4, H, W + 2), np.uint8))
    message = _load_error(path)
    assert "'test_set'" in message and f"{H}x{W + 2}" in message and f"expected {H}x{W}" in message


@pytest.mark.parametrize(("shape", "expected"), [((4, 1, H, W), "(M, H, W)"), ((0, H, W), "empty")])
def test_test_set_with_the_wrong_shape_or_empty(tmp_path, shape, expected):
    message = _load_error(_save(tmp_path, training_set=_training_set(), test_set=np.zeros(shape, np.uint8)))
    assert "'test_set'" in message and str(shape) in message and expected in message


@pytest.mark.parametrize("dtype", ["<U3", "bool", "complex128", "S2"])
def test_non_numeric_dtypes(tmp_path, dtype):
    message = _load_error(_save(tmp_path, training_set=np.zeros((2, 2, H, W), dtype=dtype)))
    assert "'training_set'" in message and str(np.dtype(dtype)) in message


def test_non_numeric_test_set(tmp_path):
    path = _save(tmp_path, training_set=_training_set(), test_set=np.zeros((2, H, W), bool))
    message = _load_error(path)
    assert "'test_set'" in message and "bool" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(tmp_path, bad):
    data = _training_set(dtype=np.float64)
    data[1, 0, 2, 3] = bad
    data[2, 1, 0, 0] = bad
    message = _load_error(_save(tmp_path, training_set=data))
    assert "'training_set'" in message and "2 NaN/inf" in message


def test_non_finite_test_set(tmp_path):
    test = np.zeros((2, H, W))
    test[0, 0, 0] = np.nan
    message = _load_error(_save(tmp_path, training_set=_training_set(), test_set=test))
    assert "'test_set'" in message and "1 NaN/inf" in message


@pytest.mark.parametrize(("dtype", "bad"), [(np.int16, 300), (np.float64, -1.5), (np.float32, 255.5)])
def test_image_values_outside_0_255(tmp_path, dtype, bad):
    data = _training_set(dtype=dtype)
    data[0, 0, 0, :3] = bad
    message = _load_error(_save(tmp_path, training_set=data))
    assert (
        "'training_set'" in message and "image" in message and f"{bad:g}" in message and "3 pixels" in message
    )


def test_test_image_values_outside_0_255(tmp_path):
    test = np.full((2, H, W), 10, np.int32)
    test[1, 1, 1] = 1000
    message = _load_error(_save(tmp_path, training_set=_training_set(), test_set=test))
    assert "'test_set'" in message and "1000" in message and "1 pixels" in message


def test_mask_values_outside_the_classes(tmp_path):
    data = _training_set()
    data[0, 1, 0, :7] = 7
    data[3, 1, 2, :2] = 200
    message = _load_error(_save(tmp_path, training_set=data))
    assert "'training_set'" in message and "0..4" in message
    assert "7 (7 pixels)" in message and "200 (2 pixels)" in message


def test_mask_range_follows_num_classes(tmp_path):
    data = _training_set()
    message = _load_error(_save(tmp_path, training_set=data), num_classes=3)
    assert "0..2" in message and f"4 ({int((data[:, 1] == 4).sum())} pixels)" in message


def test_negative_mask_values(tmp_path):
    data = _training_set(dtype=np.int64)
    data[0, 1, 0, 0] = -1
    assert "-1 (1 pixels)" in _load_error(_save(tmp_path, training_set=data))


def test_non_integral_mask_values(tmp_path):
    data = _training_set(dtype=np.float64)
    data[2, 1, 3, 4:6] = 1.5
    message = _load_error(_save(tmp_path, training_set=data))
    assert "'training_set'" in message and "non-integral" in message and "1.5" in message
    assert "2 pixels" in message


def test_bad_num_classes_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_npz(_save(tmp_path, training_set=_training_set()), num_classes=1)


# --------------------------------------------------------------------------------------------------------
# Loading valid files


def test_uint8_and_float64_files_load_the_same(tmp_path):
    data = _training_set(n=5)
    test = np.random.default_rng(1).integers(0, 256, (3, H, W)).astype(np.uint8)
    as_uint8 = load_npz(_save(tmp_path, "u8.npz", training_set=data, test_set=test))
    as_float = load_npz(_save(tmp_path, "f64.npz", training_set=data.astype(np.float64), test_set=test * 1.0))
    for loaded in (as_uint8, as_float):
        assert loaded.images.dtype == loaded.masks.dtype == torch.uint8
        assert loaded.images.shape == (5, H, W) and loaded.images.is_contiguous()
        assert loaded.masks.is_contiguous()
    assert torch.equal(as_uint8.images, torch.from_numpy(data[:, 0]))
    assert torch.equal(as_uint8.masks, torch.from_numpy(data[:, 1]))
    assert torch.equal(as_uint8.test_images, torch.from_numpy(test))
    assert torch.equal(as_float.images, as_uint8.images) and torch.equal(as_float.masks, as_uint8.masks)
    assert torch.equal(as_float.test_images, as_uint8.test_images)
    assert as_float.dataset_id == as_uint8.dataset_id and len(as_uint8.dataset_id) == 12
    assert as_uint8.class_names == CLASS_NAMES and as_uint8.num_classes == 5
    assert as_uint8.source.endswith("u8.npz") and len(as_uint8) == 5


def test_float_images_are_rounded(tmp_path):
    data = _training_set(n=2, dtype=np.float64)
    data[0, 0, 0, :4] = [12.4, 12.6, 0.2, 254.7]
    loaded = load_npz(_save(tmp_path, training_set=data))
    assert loaded.images[0, 0, :4].tolist() == [12, 13, 0, 255]


def test_other_integer_types_and_no_test_set(tmp_path):
    data = _training_set(n=3)
    loaded = load_npz(_save(tmp_path, training_set=data.astype(np.int32)))
    assert loaded.test_images is None
    assert torch.equal(loaded.images, torch.from_numpy(data[:, 0]))


def test_dataset_id_depends_on_the_content(tmp_path):
    data = _training_set()
    first = load_npz(_save(tmp_path, "a.npz", training_set=data)).dataset_id
    data[0, 1, 0, 0] = (data[0, 1, 0, 0] + 1) % 5
    assert load_npz(_save(tmp_path, "b.npz", training_set=data)).dataset_id != first


def test_subset_keeps_test_images_and_reidentifies(tmp_path):
    test = np.zeros((2, H, W), np.uint8)
    full = load_npz(_save(tmp_path, training_set=_training_set(n=6), test_set=test))
    for index in (torch.tensor([4, 1]), np.array([4, 1])):
        part = full.subset(index)
        assert len(part) == 2 and torch.equal(part.images[0], full.images[4])
        assert torch.equal(part.masks[1], full.masks[1])
        assert part.test_images is full.test_images
        assert part.dataset_id != full.dataset_id
    assert full.subset(np.arange(6)).dataset_id == full.dataset_id


# --------------------------------------------------------------------------------------------------------
# Synthetic data


@pytest.fixture(scope="module")
def synth64() -> SegmentationData:
    return synthetic(n=64, test_n=8, seed=0)


def test_synthetic_shapes_and_types(synth64):
    assert synth64.images.shape == synth64.masks.shape == (64, 64, 128)
    assert synth64.test_images.shape == (8, 64, 128)
    assert synth64.images.dtype == synth64.masks.dtype == synth64.test_images.dtype == torch.uint8
    assert synth64.class_names == CLASS_NAMES and synth64.num_classes == 5
    assert "seed=0" in synth64.source and len(synth64.dataset_id) == 12


def test_synthetic_is_deterministic_per_seed(synth64):
    again = synthetic(n=64, test_n=8, seed=0)
    assert torch.equal(again.images, synth64.images) and torch.equal(again.masks, synth64.masks)
    assert torch.equal(again.test_images, synth64.test_images)
    assert again.dataset_id == synth64.dataset_id
    other = synthetic(n=64, test_n=8, seed=1)
    assert not torch.equal(other.images, synth64.images) and other.dataset_id != synth64.dataset_id


def test_synthetic_has_every_class_and_rare_big_rocks(synth64):
    summary = describe(synth64)
    assert all(summary["images_with_class"][name] > 0 for name in CLASS_NAMES)
    assert 0 < summary["pixel_share"]["big rock"] < 0.02
    assert 0.1 * 64 <= summary["images_with_class"]["big rock"] <= 0.5 * 64


def test_synthetic_classes_look_different(synth64):
    images, masks = synth64.images.numpy().astype(float), synth64.masks.numpy()
    mean = {c: images[masks == c].mean() for c in range(5)}
    # Bedrock is bright, soil mid-grey, sand dark: a learnable brightness order on top of texture.
    assert mean[2] > mean[1] + 20 and mean[1] > mean[3] + 15


def test_synthetic_other_sizes_and_class_counts():
    small = synthetic(n=3, test_n=0, height=16, width=24, seed=5, num_classes=3)
    assert small.images.shape == (3, 16, 24) and small.test_images is None
    assert int(small.masks.max()) <= 2 and small.class_names == CLASS_NAMES[:3]
    with pytest.raises(ConfigError):
        synthetic(n=2, num_classes=6)
    with pytest.raises(ConfigError):
        synthetic(n=0)


# --------------------------------------------------------------------------------------------------------
# Split


def _masks_with_rare_class(total: int = 100, rare_rows=range(10)) -> torch.Tensor:
    masks = torch.zeros((total, 4, 4), dtype=torch.uint8)
    masks[:, 0, 0] = 1
    masks[::2, 1, 1] = 2
    masks[::3, 2, 2] = 3
    masks[list(rare_rows), 3, 3] = 4
    return masks


def test_split_is_disjoint_covering_sorted_and_sized():
    train, val = split(_masks_with_rare_class(), 0.2, seed=0, num_classes=5)
    assert train.dtype == val.dtype == torch.int64
    assert len(val) == 20 and len(train) == 80
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(100))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_is_deterministic_per_seed():
    masks = _masks_with_rare_class()
    first = split(masks, 0.2, seed=3, num_classes=5)
    again = split(masks, 0.2, seed=3, num_classes=5)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], split(masks, 0.2, seed=4, num_classes=5)[1])


@pytest.mark.parametrize("seed", range(5))
def test_split_stratifies_the_rarest_class(seed):
    train, val = split(_masks_with_rare_class(rare_rows=range(50, 60)), 0.2, seed=seed, num_classes=5)
    rare = set(range(50, 60))
    assert len(rare & set(val.tolist())) == 2 and len(rare & set(train.tolist())) == 8


@pytest.mark.parametrize("seed", range(5))
def test_split_puts_two_rare_images_on_both_sides(seed):
    train, val = split(_masks_with_rare_class(total=30, rare_rows=[7, 21]), 0.1, seed=seed, num_classes=5)
    assert len({7, 21} & set(val.tolist())) == 1 and len({7, 21} & set(train.tolist())) == 1


def test_split_finds_the_rarest_class_from_the_masks():
    masks = _masks_with_rare_class(rare_rows=range(40))
    masks[:, 2, 2] = 1
    masks[[5, 60, 90], 2, 2] = 3  # sand is now rarer than big rock
    for seed in range(5):
        train, val = split(masks, 0.3, seed=seed, num_classes=5)
        assert len({5, 60, 90} & set(val.tolist())) == 1
        assert len({5, 60, 90} & set(train.tolist())) == 2


def test_split_of_tiny_sets():
    train, val = split(_masks_with_rare_class(total=2, rare_rows=[0, 1]), 0.9, seed=0, num_classes=5)
    assert len(train) == len(val) == 1


@pytest.mark.parametrize(
    ("total", "fraction"), [(1, 0.2), (10, 0.0), (10, 1.0), (10, -0.1), (10, float("nan"))]
)
def test_split_refuses_bad_inputs(total, fraction):
    with pytest.raises(DataError):
        split(torch.zeros((total, 4, 4), dtype=torch.uint8), fraction, seed=0, num_classes=5)


def test_class_presence():
    masks = torch.zeros((2, 3, 3), dtype=torch.uint8)
    masks[1, 0, 0] = 2
    assert class_presence(masks, 3).tolist() == [[True, False, False], [True, False, True]]


# --------------------------------------------------------------------------------------------------------
# Augmentation presets, as the training loop builds them (harness.augment.vocabulary)

AUGMENT_PRESETS = tuple(PRESETS)


def augmenter(preset, seed):
    return build_augmenter(pipeline_from_config(preset), seed)


@pytest.fixture(scope="module")
def epoch(synth64) -> tuple[np.ndarray, np.ndarray]:
    return synth64.images.numpy()[:24].copy(), synth64.masks.numpy()[:24].copy()


def test_none_preset_and_unknown_preset():
    assert augmenter("none", seed=0) is None
    with pytest.raises(ConfigError) as caught:
        augmenter("rotate90", seed=0)
    assert all(name in str(caught.value) for name in AUGMENT_PRESETS)


@pytest.mark.parametrize("preset", ["flips", "standard"])
def test_augmenter_keeps_shapes_labels_and_input(epoch, preset):
    images, masks = epoch
    # Labels {0, 1, 4} only: any interpolation between 1 and 4 would invent a 2 or a 3.
    masks = np.where(masks >= 2, 4, masks).astype(np.uint8)
    before = images.copy(), masks.copy()
    out_images, out_masks = augmenter(preset, seed=0)(images, masks)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.dtype == out_masks.dtype == np.uint8
    assert set(np.unique(out_masks).tolist()) <= {0, 1, 4}
    assert np.array_equal(images, before[0]) and np.array_equal(masks, before[1])


@pytest.mark.parametrize("preset", ["flips", "standard"])
def test_augmenter_is_deterministic_per_seed_and_advances(epoch, preset):
    images, masks = epoch
    first, again = augmenter(preset, seed=7), augmenter(preset, seed=7)
    epoch1, replay1 = first(images, masks), again(images, masks)
    assert np.array_equal(epoch1[0], replay1[0]) and np.array_equal(epoch1[1], replay1[1])
    epoch2, replay2 = first(images, masks), again(images, masks)
    assert np.array_equal(epoch2[0], replay2[0])
    assert not np.array_equal(epoch1[0], epoch2[0])
    assert not np.array_equal(epoch1[0], augmenter(preset, seed=8)(images, masks)[0])


def test_flips_flip_some_images_horizontally_and_their_masks_with_them(epoch):
    images, masks = epoch
    out_images, out_masks = augmenter("flips", seed=0)(images, masks)
    flipped = 0
    for i in range(len(images)):
        if np.array_equal(out_images[i], images[i, :, ::-1]):
            flipped += 1
            assert np.array_equal(out_masks[i], masks[i, :, ::-1])
        else:
            assert np.array_equal(out_images[i], images[i]) and np.array_equal(out_masks[i], masks[i])
    assert 0 < flipped < len(images)


def test_standard_changes_images_and_pads_masks_with_background(epoch):
    images, masks = epoch
    masks = np.where(masks == 0, 1, masks).astype(np.uint8)
    out_images, out_masks = augmenter("standard", seed=1)(images, masks)
    assert not np.array_equal(out_images, images)
    assert (out_masks == 0).any()


# --------------------------------------------------------------------------------------------------------
# Summary


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
