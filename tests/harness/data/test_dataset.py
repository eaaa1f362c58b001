"""harness.data.dataset: the AN2DL npz loader's checks, the dataset id and subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.dataset import CLASS_NAMES, load_npz
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


def test_groups_are_loaded_and_follow_a_subset(tmp_path):
    for groups in (np.array([0, 0, 1, 1, 2, 2]), np.array(["a", "a", "b", "b", "c", "c"])):
        data = load_npz(_save(tmp_path, training_set=_training_set(), groups=groups))
        assert np.array_equal(data.groups, groups)
        assert np.array_equal(data.subset(torch.tensor([1, 4])).groups, groups[[1, 4]])
    assert load_npz(_save(tmp_path, training_set=_training_set())).groups is None


@pytest.mark.parametrize(
    ("groups", "found"),
    [(np.arange(5), "shape (5,)"), (np.zeros(6), "dtype float64"), (np.zeros((6, 1), dtype=int), "(6, 1)")],
)
def test_a_groups_array_of_the_wrong_length_or_dtype_is_one_line(tmp_path, groups, found):
    message = _load_error(_save(tmp_path, training_set=_training_set(), groups=groups))
    assert "key 'groups' must be (6,) integers or strings" in message and found in message
