"""copypaste: only a component's own pixels are pasted, with its values and class, onto copies of targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from plugins.balancers import copypaste

SPEC = copypaste.harness_balancers()[0]
# An L of big rock (area 5) with distinct values; its bounding box also holds 4 non-rock pixels.
L_FOOTPRINT = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=bool)
L_VALUES = np.where(L_FOOTPRINT, [[200, 0, 0], [201, 0, 0], [202, 203, 204]], 0)
EVERYWHERE = {"probability": 1.0, "per_image": 1}


def split(n=6, size=(16, 32), footprint=L_FOOTPRINT, values=L_VALUES):
    """n soil images of value 10; row 0 (value 50 around it) holds the component at (2, 3)."""
    images = torch.full((n, *size), 10, dtype=torch.uint8)
    masks = torch.ones((n, *size), dtype=torch.uint8)
    images[0] = 50  # surroundings that would show if the bounding box were pasted
    height, width = footprint.shape
    window = np.s_[2 : 2 + height, 3 : 3 + width]
    images[0][window] = torch.where(torch.from_numpy(footprint), torch.from_numpy(values), 50).to(torch.uint8)
    masks[0][window][torch.from_numpy(footprint)] = 4
    return images, masks


def run(images, masks, seed=0, **params):
    before = images.clone(), masks.clone()
    result = SPEC.build(SPEC.parse_params(params))(images, masks, num_classes=5, ignore_index=0, seed=seed)
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])  # inputs untouched
    return result


def pasted_patch(image: torch.Tensor, mask: torch.Tensor, original_mask: torch.Tensor):
    """The newly big-rock pixels' bounding box: (footprint, values there) as numpy arrays."""
    new = ((mask == 4) & (original_mask != 4)).numpy()
    rows, cols = np.nonzero(new)
    box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return new[box], np.where(new[box], image.numpy()[box], 0)


def dihedral(array: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(flipped, turn) for flipped in (array, array[:, ::-1]) for turn in range(4)]


def test_unturned_paste_writes_exactly_the_component_pixels():
    images, masks = split()
    result = run(images, masks, rotate=False, flip=False, **EVERYWHERE)
    assert len(result.images) == 12
    assert torch.equal(result.images[:6], images) and torch.equal(result.masks[:6], masks)
    for row in range(1, 6):  # targets without big rock of their own
        image, mask = result.images[6 + row], result.masks[6 + row]
        assert int((mask == 4).sum()) == 5
        changed = (image != images[row]) | (mask != masks[row])
        assert torch.equal(changed, mask == 4)  # no bounding-box pixel came along
        footprint, values = pasted_patch(image, mask, masks[row])
        assert np.array_equal(footprint, L_FOOTPRINT) and np.array_equal(values, L_VALUES)
    own = result.masks[6] == 4  # the source image pasted onto itself
    assert 5 < int(own.sum()) <= 10
    assert set(result.images[6][own].tolist()) == {200, 201, 202, 203, 204}


def test_turns_and_flips_keep_the_component_and_vary_its_orientation():
    images, masks = split(n=16)
    result = run(images, masks, **EVERYWHERE)
    seen = set()
    for row in range(1, 16):
        footprint, values = pasted_patch(result.images[16 + row], result.masks[16 + row], masks[row])
        assert any(np.array_equal(values, variant) for variant in dihedral(L_VALUES))
        seen.add(values.tobytes())
    assert len(seen) >= 3


@pytest.mark.parametrize(
    ("rotate", "flip", "orders"),
    [(True, True, {200, 209}), (True, False, {200, 209}), (False, True, {200, 209}), (False, False, {200})],
)
def test_turns_only_where_the_crop_fits_and_flips(rotate, flip, orders):
    bar = np.ones((2, 10), dtype=bool)  # turned by 90 degrees it would be 10 tall, in 8-pixel-tall images
    gradient = np.tile(np.arange(200, 210), (2, 1))
    images, masks = split(n=12, size=(8, 32), footprint=bar, values=gradient)
    result = run(images, masks, rotate=rotate, flip=flip, **EVERYWHERE)
    seen = set()
    for row in range(1, 12):
        footprint, values = pasted_patch(result.images[12 + row], result.masks[12 + row], masks[row])
        assert footprint.shape == (2, 10)
        seen.add(int(values[0, 0]))  # 209 first: reversed by a flip or a half turn
    assert seen == orders


def test_scaling_uses_nearest_for_the_mask_and_bilinear_values_inside():
    images, masks = split()
    result = run(images, masks, scale_range=[2.0, 2.0], rotate=False, flip=False, **EVERYWHERE)
    doubled = np.kron(L_FOOTPRINT, np.ones((2, 2), dtype=bool))
    for row in range(1, 6):
        footprint, _ = pasted_patch(result.images[6 + row], result.masks[6 + row], masks[row])
        assert np.array_equal(footprint, doubled)
    block = np.ones((2, 2), dtype=bool)
    images, masks = split(footprint=block, values=np.full((2, 2), 200))
    result = run(images, masks, scale_range=[2.0, 2.0], **EVERYWHERE)
    for row in range(1, 6):
        footprint, values = pasted_patch(result.images[6 + row], result.masks[6 + row], masks[row])
        assert footprint.all() and footprint.shape == (4, 4) and (values == 200).all()


def test_replacing_targets_matches_the_appended_rows():
    images, masks = split(n=10)
    kept = run(images, masks, seed=5)
    replaced = run(images, masks, seed=5, keep_originals=False)
    assert len(replaced.images) == 10 and len(kept.images) > 10
    changed = [row for row in range(10) if not torch.equal(replaced.masks[row], masks[row])]
    assert 0 < len(changed) < 10  # probability 0.5 picks some targets, not all
    assert torch.equal(replaced.images[changed], kept.images[10:])
    assert torch.equal(replaced.masks[changed], kept.masks[10:])
    unchanged = [row for row in range(10) if row not in changed]
    assert torch.equal(replaced.images[unchanged], images[unchanged])


def test_deterministic_for_a_seed_and_different_across_seeds():
    images, masks = split(n=10)
    first, again, other = run(images, masks, seed=1), run(images, masks, seed=1), run(images, masks, seed=2)
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert first.images.shape != other.images.shape or not torch.equal(first.masks, other.masks)


def test_without_a_rare_class_the_split_comes_back_unchanged():
    images, masks = split()
    masks[masks == 4] = 2
    result = run(images, masks, **EVERYWHERE)
    assert torch.equal(result.images, images) and torch.equal(result.masks, masks)
    assert result.strong is None and result.class_weights is None


def test_min_area_filters_small_components():
    dash = np.ones((1, 3), dtype=bool)
    images, masks = split(footprint=dash, values=np.full((1, 3), 200))
    assert len(run(images, masks, **EVERYWHERE).images) == 6  # area 3 < default min_area 4
    assert len(run(images, masks, min_area=3, **EVERYWHERE).images) == 12


def test_bad_params():
    images, masks = split()
    with pytest.raises(ConfigError, match="class 5 does not exist"):
        run(images, masks, classes=[5])
    with pytest.raises(ConfigError, match="scale_range"):
        SPEC.parse_params({"scale_range": [1.25, 0.75]})
