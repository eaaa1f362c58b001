"""harness.augment.batched: batched torch steps that match the albumentations pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.augment.batched import BatchAugmenter, batched_support, first_unsupported
from harness.augment.vocabulary import PRESETS, AugmentPipeline, TransformSpec, build_augmenter
from harness.data.dataset import synthetic
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
        BatchAugmenter(_one("elastic"), seed=0)


def test_bad_seed_params_and_inputs_fail_clearly(batch):
    images, masks = batch
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        BatchAugmenter(PRESETS["flips"], seed=-1)
    with pytest.raises(ConfigError, match=r"augment.steps\[0\] \(affine\): with keep_ratio"):
        BatchAugmenter(_one("affine", keep_ratio=True, scale={"x": (0.9, 1.1), "y": (1.0, 1.2)}), seed=0)
    augment = BatchAugmenter(PRESETS["flips"], seed=0)
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
    out_images, out_masks = BatchAugmenter(_one(name), seed=0, device=device)(images, masks)
    assert out_images.shape == out_masks.shape == images.shape
    assert out_images.dtype == out_masks.dtype == torch.uint8 and out_images.device == images.device
    assert set(out_masks.unique().tolist()) <= {0, 1, 4}
    assert not torch.equal(out_images, images)  # p=1: a step that changes nothing is broken
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])
    if name in IMAGE_ONLY:
        assert torch.equal(out_masks, masks)
    same_images, same_masks = BatchAugmenter(_one(name, p=0.0), seed=0, device=device)(images, masks)
    assert torch.equal(same_images, images) and torch.equal(same_masks, masks)


def test_hflip_with_p1_is_torch_flip(batch):
    images, masks = batch
    out_images, out_masks = BatchAugmenter(_one("hflip"), seed=3)(images, masks)
    assert torch.equal(out_images, images.flip(-1)) and torch.equal(out_masks, masks.flip(-1))


def test_rot90_turns_non_square_frames_0_or_180_and_square_ones_any_quarter():
    images = torch.arange(512 * 4 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).view(512, 4, 8)
    out, out_masks = BatchAugmenter(_one("rot90"), seed=0)(images, images.clone())
    half_turned = (out == images.flip(-2, -1)).flatten(1).all(1)
    upright = (out == images).flatten(1).all(1)
    assert torch.equal(out, out_masks) and bool((half_turned | upright).all())
    assert 200 < int(half_turned.sum()) < 312  # half of them: a quarter-turn draw becomes a half turn
    square = images[:64, :4, :4].contiguous()
    out = BatchAugmenter(_one("rot90"), seed=0)(square, square.clone())[0]
    turns = [(out == square.rot90(k, (-2, -1))).flatten(1).all(1) for k in range(4)]
    assert all(int(t.sum()) > 4 for t in turns) and bool(torch.stack(turns).any(0).all())


def test_affine_with_identity_params_is_exact(batch):
    images, masks = batch
    pipeline = _one("affine", scale=1.0, translate_percent=0.0, rotate=0.0, shear=0.0, fill=90)
    out_images, out_masks = BatchAugmenter(pipeline, seed=0)(images, masks)
    assert torch.equal(out_images, images) and torch.equal(out_masks, masks)


@pytest.mark.parametrize("fill", [0, 77])
def test_affine_fills_exposed_pixels_with_background_and_the_image_fill(batch, fill):
    images, _ = batch
    masks = torch.ones_like(images)
    pipeline = _one("affine", translate_percent={"x": 0.25}, scale=1.0, rotate=0.0, fill=fill)
    out_images, out_masks = BatchAugmenter(pipeline, seed=0)(images, masks)
    shift = images.shape[-1] // 4  # a whole-pixel shift samples pixel centres: no blending at all
    assert bool((out_masks[..., :shift] == 0).all()) and bool((out_masks[..., shift:] == 1).all())
    assert bool((out_images[..., :shift] == fill).all())
    assert torch.equal(out_images[..., shift:], images[..., :-shift])


def test_affine_warps_image_and_mask_with_the_same_matrix(batch):
    _, masks = batch
    images = (masks.int() * 50 + 20).to(torch.uint8)  # the class is readable back from the image
    pipeline = _one("affine", scale=(0.7, 1.3), translate_percent=(-0.2, 0.2), rotate=(-30, 30), shear=10.0)
    out_images, out_masks = BatchAugmenter(pipeline, seed=1)(images, masks)
    read_back = ((out_images.float() - 20) / 50).round().clamp(min=0)
    # Only pixels on a class boundary may disagree, where bilinear blends two levels.
    assert (read_back == out_masks).float().mean() > 0.97
    assert (out_masks != masks).float().mean() > 0.2


def test_geometry_and_pixel_values_match_albumentations_for_fixed_params(batch):
    images, masks = batch
    cases = [
        _one("affine", scale={"x": 0.9, "y": 1.2}, rotate=-12.0, translate_percent={"x": 0.1, "y": -0.07}),
        _one("affine", scale=1.1, rotate=25.0, translate_px=3, shear={"x": 8.0}, fill=200),
        _one("brightness_contrast", brightness_limit=(0.1, 0.1), contrast_limit=(-0.3, -0.3)),
        _one(
            "brightness_contrast",
            brightness_limit=(-0.2, -0.2),
            contrast_limit=(0.2, 0.2),
            brightness_by_max=False,
        ),
        _one("solarize", threshold_range=(0.4, 0.4)),
    ]
    for pipeline in cases:
        want_images, want_masks = build_augmenter(pipeline, seed=0)(images.numpy(), masks.numpy())
        got_images, got_masks = BatchAugmenter(pipeline, seed=0)(images, masks)
        difference = np.abs(want_images.astype(int) - got_images.numpy().astype(int))
        assert difference.max() <= 1, pipeline  # cv2 blends in fixed point
        assert (want_masks == got_masks.numpy()).mean() > 0.999, pipeline


def test_noise_matches_gauss_noise_statistics():
    images = torch.full((32, 32, 64), 128, dtype=torch.uint8)
    for params in ({"std_range": (0.04, 0.04)}, {"std_range": (0.04, 0.04), "noise_scale_factor": 0.5}):
        want = build_augmenter(_one("noise", **params), seed=0)(images.numpy(), images.numpy())[0]
        got = BatchAugmenter(_one("noise", **params), seed=0)(images, images)[0]
        want, got = want.astype(float) - 128, got.numpy().astype(float) - 128
        assert abs(got.mean()) < 0.2 and abs(got.std() - want.std()) < 0.3, params


# --------------------------------------------------------------------------------------------------------
# Randomness and strong rows


def test_same_seed_replays_calls_and_calls_advance(batch):
    images, masks = batch
    first, second = BatchAugmenter(PRESETS["standard"], seed=5), BatchAugmenter(PRESETS["standard"], seed=5)
    runs = [[first(images, masks) for _ in range(2)], [second(images, masks) for _ in range(2)]]
    for (a_images, a_masks), (b_images, b_masks) in zip(*runs, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_masks, b_masks)
    assert not torch.equal(runs[0][0][0], runs[0][1][0])
    other = BatchAugmenter(PRESETS["standard"], seed=6)(images, masks)[0]
    assert not torch.equal(other, runs[0][0][0])


def test_per_row_probability_is_honoured():
    images = torch.arange(8, dtype=torch.uint8).expand(4000, 4, 8).contiguous()
    for p in (0.3, 0.8):
        out = BatchAugmenter(_one("hflip", p=p), seed=0)(images, images.clone())[0]
        flipped = (out[:, 0, 0] == 7).float().mean().item()
        assert abs(flipped - p) < 0.03, (p, flipped)  # about 4 standard deviations


def test_strong_rows_take_the_strong_steps(batch):
    images, masks = batch
    strong = torch.tensor([True, False] * 4)
    shared = _pipeline([{"name": "hflip", "p": 0.0}], [{"name": "hflip", "p": 1.0}])
    out, _ = BatchAugmenter(shared, seed=0)(images, masks, strong)
    assert torch.equal(out[strong], images[strong].flip(-1)) and torch.equal(out[~strong], images[~strong])
    brightness = {"brightness_limit": (0.2, 0.2), "contrast_limit": 0.0}
    separate = _pipeline(
        [{"name": "brightness_contrast", "p": 1.0, "params": brightness}], [{"name": "hflip", "p": 1.0}]
    )
    out, _ = BatchAugmenter(separate, seed=0)(images, masks, strong)
    assert torch.equal(out[strong], images[strong].flip(-1))
    assert torch.equal(out[~strong], (images[~strong].int() + 51).clamp(max=255).to(torch.uint8))
    # Default strong steps: the same steps made likelier plus an affine, which p=0 rows never get.
    out, _ = BatchAugmenter(_pipeline([{"name": "hflip", "p": 0.0}]), seed=0)(images, masks, strong)
    assert torch.equal(out[~strong], images[~strong]) and not torch.equal(out[strong], images[strong])


def test_editing_strong_steps_leaves_ordinary_rows_alone(batch):
    images, masks = batch
    strong = torch.tensor([True, False] * 4)
    outputs = [
        BatchAugmenter(_pipeline(PRESETS["standard"].model_dump()["steps"], strong_steps), seed=0)(
            images, masks, strong
        )[0][~strong]
        for strong_steps in (None, [{"name": "solarize", "p": 1.0}])
    ]
    assert torch.equal(outputs[0], outputs[1])
