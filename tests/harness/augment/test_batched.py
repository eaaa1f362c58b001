"""harness.augment.batched: batched torch steps that match the albumentations pipelines."""

from __future__ import annotations

import pytest
import torch

from harness.augment.batched import BatchedAugmenter, batched_support, first_unsupported
from harness.augment.vocabulary import PRESETS, AugmentPipeline, TransformSpec
from harness.data.synthetic import synthetic
from harness.errors import ConfigError

SUPPORTED = ("hflip", "rot90", "affine", "brightness_contrast", "solarize", "noise")
IMAGE_ONLY = ("brightness_contrast", "solarize", "noise")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = synthetic(n=8, test_n=0, seed=0)
    # Labels {0, 1, 4} only: any blend of 1 and 4 would invent a 2 or a 3.
    return data.images.clone(), torch.where(data.masks >= 2, 4, data.masks).to(torch.uint8)


def _one(name: str, p: float = 1.0, **params) -> AugmentPipeline:
    return AugmentPipeline(steps=[TransformSpec(name=name, p=p, params=params)])


def _pipeline(steps: list[dict], strong_steps: list[dict] | None = None) -> AugmentPipeline:
    return AugmentPipeline.model_validate({"steps": steps, "strong_steps": strong_steps})


# --------------------------------------------------------------------------------------------------------
# Support


def test_support_covers_every_preset_but_the_distorting_steps():
    assert all(batched_support(PRESETS[name]) for name in ("none", "flips", "standard"))
    assert first_unsupported(PRESETS["strong"]) == "augment.steps[2] (grid_distortion)"
    elastic_strong = _pipeline([{"name": "hflip"}], [{"name": "elastic"}])
    assert first_unsupported(elastic_strong) == "augment.strong_steps[0] (elastic)"
    assert not batched_support(_one("grid_distortion")) and not batched_support(elastic_strong)
    with pytest.raises(ConfigError, match=r"augment.steps\[0\] \(elastic\) has no batched version"):
        BatchedAugmenter(_one("elastic"), seed=0)


def test_bad_seed_params_and_inputs_fail_clearly(batch):
    images, masks = batch
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        BatchedAugmenter(PRESETS["flips"], seed=-1)
    with pytest.raises(ConfigError, match=r"augment.steps\[0\] \(affine\): with keep_ratio"):
        BatchedAugmenter(_one("affine", keep_ratio=True, scale={"x": (0.9, 1.1), "y": (1.0, 1.2)}), seed=0)
    augment = BatchedAugmenter(PRESETS["flips"], seed=0)
    with pytest.raises(ValueError, match="uint8"):
        augment(images.float(), masks)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        augment(images, masks[:, :, :-1])
    with pytest.raises(ValueError, match="bool tensor of shape"):
        augment(images, masks, torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------------------
# Each step


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SUPPORTED)
def test_every_step_keeps_shapes_labels_and_inputs_and_p0_is_identity(batch, name, device):
    images, masks = (t.to(device) for t in batch)
    before = images.clone(), masks.clone()
    out_images, out_masks = BatchedAugmenter(_one(name), seed=0, device=device)(images, masks)
    assert out_images.shape == out_masks.shape == images.shape
    assert out_images.dtype == out_masks.dtype == torch.uint8 and out_images.device == images.device
    assert set(out_masks.unique().tolist()) <= {0, 1, 4}
    assert not torch.equal(out_images, images)  # p=1: a step that changes nothing is broken
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])
    if name in IMAGE_ONLY:
        assert torch.equal(out_masks, masks)
    same_images, same_masks = BatchedAugmenter(_one(name, p=0.0), seed=0, device=device)(images, masks)
    assert torch.equal(same_images, images) and torch.equal(same_masks, masks)


# --------------------------------------------------------------------------------------------------------
# Randomness and strong rows


def test_same_seed_replays_calls_and_calls_advance(batch):
    images, masks = batch
    first, second = (
        BatchedAugmenter(PRESETS["standard"], seed=5),
        BatchedAugmenter(PRESETS["standard"], seed=5),
    )
    runs = [[first(images, masks) for _ in range(2)], [second(images, masks) for _ in range(2)]]
    for (a_images, a_masks), (b_images, b_masks) in zip(*runs, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_masks, b_masks)
    assert not torch.equal(runs[0][0][0], runs[0][1][0])
    other = BatchedAugmenter(PRESETS["standard"], seed=6)(images, masks)[0]
    assert not torch.equal(other, runs[0][0][0])


def test_per_row_probability_is_honoured():
    images = torch.arange(8, dtype=torch.uint8).expand(4000, 4, 8).contiguous()
    for p in (0.3, 0.8):
        out = BatchedAugmenter(_one("hflip", p=p), seed=0)(images, images.clone())[0]
        flipped = (out[:, 0, 0] == 7).float().mean().item()
        assert abs(flipped - p) < 0.03, (p, flipped)  # about 4 standard deviations


def test_strong_rows_take_the_strong_steps(batch):
    images, masks = batch
    strong = torch.tensor([True, False] * 4)
    shared = _pipeline([{"name": "hflip", "p": 0.0}], [{"name": "hflip", "p": 1.0}])
    out, _ = BatchedAugmenter(shared, seed=0)(images, masks, strong)
    assert torch.equal(out[strong], images[strong].flip(-1)) and torch.equal(out[~strong], images[~strong])
    brightness = {"brightness_limit": (0.2, 0.2), "contrast_limit": 0.0}
    separate = _pipeline(
        [{"name": "brightness_contrast", "p": 1.0, "params": brightness}], [{"name": "hflip", "p": 1.0}]
    )
    out, _ = BatchedAugmenter(separate, seed=0)(images, masks, strong)
    assert torch.equal(out[strong], images[strong].flip(-1))
    assert torch.equal(out[~strong], (images[~strong].int() + 51).clamp(max=255).to(torch.uint8))
    # Default strong steps: the same steps made likelier plus an affine, which p=0 rows never get.
    out, _ = BatchedAugmenter(_pipeline([{"name": "hflip", "p": 0.0}]), seed=0)(images, masks, strong)
    assert torch.equal(out[~strong], images[~strong]) and not torch.equal(out[strong], images[strong])


def test_editing_strong_steps_leaves_ordinary_rows_alone(batch):
    images, masks = batch
    strong = torch.tensor([True, False] * 4)
    outputs = [
        BatchedAugmenter(_pipeline(PRESETS["standard"].model_dump()["steps"], strong_steps), seed=0)(
            images, masks, strong
        )[0][~strong]
        for strong_steps in (None, [{"name": "solarize", "p": 1.0}])
    ]
    assert torch.equal(outputs[0], outputs[1])
