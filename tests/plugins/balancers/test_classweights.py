"""classweights: hand-computed weights on a tiny split, normalisation, cap, ignored and absent classes."""

from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from plugins.balancers import classweights

SPEC = classweights.harness_balancers()[0]

# Image A: one ignored pixel, 5 soil, 2 bedrock (7 counted). Image B: 4 soil, 3 sand, 1 big rock (8).
# Totals over the 15 counted pixels: soil 9, bedrock 2, sand 3, big rock 1.
MASKS = torch.tensor(
    [[[0, 1, 1, 1], [1, 1, 2, 2]], [[1, 1, 1, 1], [3, 3, 3, 4]]],
    dtype=torch.uint8,
)
IMAGES = torch.arange(16, dtype=torch.uint8).reshape(2, 2, 4)


def weights(masks=MASKS, ignore_index=0, **params) -> torch.Tensor:
    balance = SPEC.build(SPEC.parse_params(params))
    result = balance(IMAGES, masks, num_classes=5, ignore_index=ignore_index, seed=0)
    assert result.images is IMAGES and result.masks is masks
    assert result.class_weights.dtype == torch.float32
    return result.class_weights


def normalised(raw: list[float]) -> torch.Tensor:
    """[0, raw...] with the raw foreground weights scaled to mean 1."""
    mean = sum(raw) / len(raw)
    return torch.tensor([0.0] + [value / mean for value in raw])


def test_inverse_frequency():
    # 1/freq is proportional to 1/n: (1/9, 1/2, 1/3, 1) with mean 35/72.
    expected = torch.tensor([0.0, 72 / 315, 72 / 70, 72 / 105, 72 / 35])
    assert torch.allclose(weights(method="inverse"), expected)


def test_median_frequency_uses_the_pixels_of_images_containing_the_class():
    # freq: soil 9/15, bedrock 2/7 (image A only), sand 3/8 and big rock 1/8 (image B only).
    assert torch.allclose(weights(method="median"), normalised([15 / 9, 7 / 2, 8 / 3, 8 / 1]))
    assert not torch.allclose(weights(method="median"), weights(method="inverse"))


def test_effective_number_of_samples():
    # (1 - beta) / (1 - beta^n) with beta 1/2 and n = 9, 2, 3, 1.
    expected = normalised([256 / 511, 2 / 3, 4 / 7, 1.0])
    assert torch.allclose(weights(method="effective", beta=0.5), expected)


def test_cap_clips_after_normalising():
    capped = weights(method="inverse", cap=1.5)
    expected = torch.tensor([0.0, 72 / 315, 72 / 70, 72 / 105, 1.5])
    assert torch.allclose(capped, expected)
    assert torch.allclose(weights(method="inverse", cap=None)[4], torch.tensor(72 / 35))


def test_ignored_class_gets_zero_and_without_ignore_index_it_is_counted():
    assert weights()[0] == 0
    assert weights(method="manual", weights=[3.0, 1.0, 1.0, 1.0, 2.0])[0] == 0
    # Counting the background pixel too: n = 1, 9, 2, 3, 1 over five classes.
    uncounted = weights(method="inverse", ignore_index=None)
    inverse = [1.0, 1 / 9, 1 / 2, 1 / 3, 1.0]
    assert torch.allclose(uncounted, torch.tensor(inverse) / (sum(inverse) / 5))


def test_absent_class_gets_the_cap_or_the_largest_weight():
    without_rock = MASKS.clone()
    without_rock[1, 1, 3] = 3  # sand: 4 pixels, big rock: none
    capped = weights(without_rock, method="inverse", cap=4.0)
    assert capped[4] == 4.0
    uncapped = weights(without_rock, method="inverse", cap=None)
    assert uncapped[4] == uncapped[1:4].max()


def test_manual_weights_are_used_as_given():
    given = [0.5, 1.0, 2.0, 3.0, 20.0]
    assert torch.equal(weights(method="manual", weights=given), torch.tensor([0.0, 1.0, 2.0, 3.0, 20.0]))


def test_manual_weights_of_the_wrong_length_fail_with_one_line():
    with pytest.raises(ConfigError, match="weights has 3 values; expected 5"):
        weights(method="manual", weights=[1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "params", [{"method": "manual"}, {"method": "inverse", "weights": [1, 1, 1, 1, 1]}, {"cap": 0.5}]
)
def test_inconsistent_params_are_config_errors(params):
    with pytest.raises(ConfigError):
        SPEC.parse_params(params)
