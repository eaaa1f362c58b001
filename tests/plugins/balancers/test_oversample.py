"""oversample: k copies or a target share of rare images, copies appended and marked, the rest untouched."""

from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from plugins.balancers import oversample

SPEC = oversample.harness_balancers()[0]
RARE_ROWS = [1, 4]


def split():
    """Six 4x8 images; rows 1 and 4 hold big rock (class 4), row 2 holds sand (class 3)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 4, 8), generator=generator, dtype=torch.uint8)
    masks = torch.randint(1, 3, (6, 4, 8), generator=generator, dtype=torch.uint8)
    masks[1, 0, 0] = 4
    masks[4, 2:, 5:] = 4
    masks[2, 1, 1] = 3
    return images, masks


def run(seed=0, **params):
    images, masks = split()
    balance = SPEC.build(SPEC.parse_params(params))
    result = balance(images, masks, num_classes=5, ignore_index=0, seed=seed)
    assert torch.equal(images, split()[0]) and torch.equal(masks, split()[1])  # inputs untouched
    return images, masks, result


def test_k_copies_are_exact_duplicates_appended_and_marked():
    images, masks, result = run(k=2)
    assert len(result.images) == 6 + 2 * 2
    assert torch.equal(result.images[:6], images) and torch.equal(result.masks[:6], masks)
    sources = torch.tensor([1, 1, 4, 4])
    assert torch.equal(result.images[6:], images[sources])
    assert torch.equal(result.masks[6:], masks[sources])
    assert torch.equal(result.strong, torch.arange(10) >= 6)
    assert result.class_weights is None


def test_images_without_the_classes_are_not_copied():
    images, _, result = run(k=3)
    for row in range(6):
        appearances = sum(torch.equal(image, images[row]) for image in result.images)
        assert appearances == (4 if row in RARE_ROWS else 1)


def test_other_classes_can_be_chosen():
    images, _, result = run(classes=[3, 4], k=1)
    assert torch.equal(result.images[6:], images[[1, 2, 4]])


@pytest.mark.parametrize(("share", "copies"), [(0.5, 2), (0.6, 4), (0.55, 3), (0.2, 0)])
def test_target_share_is_reached_with_the_fewest_copies(share, copies):
    _, masks, result = run(target_share=share)
    assert len(result.images) == 6 + copies
    rare = oversample.rows_with(result.masks, [4])
    assert len(rare) / len(result.images) >= share
    if copies:
        assert (len(rare) - 1) / (len(result.images) - 1) < share  # one copy fewer falls short
        sources = [next(i for i in RARE_ROWS if torch.equal(m, masks[i])) for m in result.masks[6:]]
        assert sorted(sources.count(i) for i in RARE_ROWS) == [copies // 2, copies - copies // 2]
    else:
        assert result.strong is None


@pytest.mark.parametrize(("total", "rare", "share"), [(59, 53, 0.92), (53, 29, 0.68), (30, 2, 0.35)])
def test_copies_for_share_is_the_exact_minimum(total, rare, share):
    # The first two are cases where the closed form, in floating point, lands one above and one below.
    fewest = next(c for c in range(1000) if (rare + c) >= share * (total + c))
    assert oversample.copies_for_share(total, rare, share) == fewest


def test_odd_copies_go_to_a_seeded_choice():
    picks = {tuple(run(seed=seed, target_share=0.55)[2].masks[6:, 0, 0].tolist()) for seed in range(8)}
    assert len(picks) == 2  # copies grouped by source, the extra copy landing on either rare image


def test_no_rare_images_returns_the_split_as_given():
    images, masks = split()
    masks[masks == 4] = 1
    result = SPEC.build(SPEC.parse_params())(images, masks, num_classes=5, ignore_index=0, seed=0)
    assert result.images is images and result.masks is masks and result.strong is None


def test_bad_params():
    with pytest.raises(ConfigError, match="class 7 does not exist"):
        run(classes=[7])
    with pytest.raises(ConfigError, match="ignored class"):
        run(classes=[0])
    with pytest.raises(ConfigError, match="not both"):
        SPEC.parse_params({"k": 3, "target_share": 0.3})
