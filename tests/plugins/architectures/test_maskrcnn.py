"""Mask R-CNN: the instance-based contract (losses in training, log-scores at inference), the target cache,
the semantic output built from detections and the fallback, and the training loop's flag-driven call."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import ConfigError
from harness.inference.cost import count_params
from harness.training.loop import compute_loss
from plugins.architectures import maskrcnn

SPEC = maskrcnn.harness_architectures()[0]
TINY = {
    "width": 4,
    "fpn_channels": 8,
    "box_head_width": 16,
    "mask_convs": 1,
    "rpn_pre_nms_top_n": 32,
    "rpn_post_nms_train": 32,
    "rpn_post_nms_test": 16,
    "rpn_anchors_per_image": 64,
    "rois_per_image": 16,
}
LOSSES = {"rpn_objectness", "rpn_box", "classifier", "box", "mask", "semantic"}


def _build(**values) -> nn.Module:
    return SPEC.build(SPEC.parse_params({**TINY, **values}), in_channels=1, num_classes=5)


def _scene(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Soil with a bedrock band, a sand patch and two rocks, and an image that shows them."""
    masks = torch.ones(batch, 64, 128, dtype=torch.long)
    masks[:, :10] = 0  # unlabelled sky
    masks[:, 40:, :50] = 2
    masks[:, 15:30, 70:110] = 3
    masks[:, 20:26, 20:28] = 4
    masks[:, 45:52, 90:96] = 4
    images = (masks.float()[:, None] - 2) / 2 + 0.1 * torch.randn(batch, 1, 64, 128)
    return images, masks


def test_spec_flags_and_declared_size():
    assert SPEC.instance_based and not SPEC.deep_supervision
    assert SPEC.multiple(SPEC.parse_params()) == 32
    assert count_params(SPEC.build(SPEC.parse_params(), in_channels=1, num_classes=5)) == SPEC.params_count


def test_params_are_validated():
    for bad in ({"anchor_sizes": [8, 16, 32]}, {"max_instances": 300}, {"fallback": "crf"}, {"min_area": 0}):
        with pytest.raises(ConfigError):
            SPEC.parse_params(bad)
    parsed = SPEC.parse_params(cli={"anchor_ratios": "0.25,1,4", "fallback": "none"})
    assert parsed.anchor_ratios == [0.25, 1.0, 4.0] and parsed.fallback == "none"


def test_training_returns_named_finite_scalar_losses_with_gradients_everywhere():
    model = _build(fallback="semantic").train()
    images, masks = _scene()
    losses = model(images, masks)
    assert set(losses) == LOSSES
    assert all(value.dim() == 0 and torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("kind", ["background", "specks"])
def test_images_without_instances_still_give_finite_losses(kind):
    model = _build().train()
    masks = torch.zeros(2, 64, 128, dtype=torch.long)
    if kind == "specks":
        masks[:, ::4, ::4] = 4  # only components below min_area
    losses = model(torch.randn(2, 1, 64, 128), masks)
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["mask"] == 0 and losses["box"] == 0 and losses["rpn_box"] == 0
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_weights_scale_their_losses():
    torch.manual_seed(0)
    images, masks = _scene()
    plain = _build(fallback="semantic").train()
    weighted = _build(fallback="semantic", mask_weight=3.0, semantic_weight=0.0).train()
    weighted.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    first = plain(images, masks)
    torch.manual_seed(1)  # the same anchor and RoI samples
    second = weighted(images, masks)
    assert torch.allclose(second["mask"], 3 * first["mask"]) and second["semantic"] == 0
    assert torch.allclose(second["classifier"], first["classifier"])


def test_losses_decrease_when_fitting_one_image():
    torch.manual_seed(0)
    model = _build(norm="group", fallback="semantic").train()
    images, masks = _scene(batch=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(12):
        losses = model(images, masks)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.8 * np.mean(totals[:3])


def test_eval_returns_deterministic_log_scores_at_the_input_size():
    model = _build().eval()
    for shape in [(2, 1, 64, 128), (1, 1, 32, 96)]:
        x = torch.randn(shape)
        with torch.no_grad():
            out = model(x)
            assert torch.equal(out, model(x))
        assert out.shape == (shape[0], 5, *shape[2:]) and out.dtype == torch.float32
        assert torch.allclose(out.exp().sum(dim=1), torch.ones(shape[0], *shape[2:]), atol=1e-4)


def test_eval_under_bf16_autocast_is_float32_and_finite():
    model = _build(score_threshold=0.0).eval()  # every proposal becomes a detection: the whole path runs
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 1, 64, 128))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_training_mode_needs_the_masks():
    with pytest.raises(ValueError, match="model\\(images, masks\\)"):
        _build().train()(torch.randn(1, 1, 64, 128))


def _one_detection(batch: int) -> maskrcnn.Detections:
    """A big-rock detection with a full mask on the box (8, 4, 40, 20) of every image."""
    return maskrcnn.Detections(
        boxes=torch.tensor([[8.0, 4.0, 40.0, 20.0]]).repeat(batch, 1, 1),
        scores=torch.full((batch, 1), 0.9),
        classes=torch.full((batch, 1), 4),
        valid=torch.ones(batch, 1, dtype=torch.bool),
        masks=torch.ones(batch, 1, maskrcnn.MASK_SIZE, maskrcnn.MASK_SIZE),
    )


@pytest.mark.parametrize("fallback", ["semantic", "none"])
def test_detections_decide_where_their_masks_lie_and_the_fallback_elsewhere(monkeypatch, fallback):
    model = _build(fallback=fallback).eval()
    x = torch.randn(2, 1, 64, 128)
    with torch.no_grad():
        monkeypatch.setattr(model, "_detect", lambda *args: None)
        without = model(x)
        monkeypatch.setattr(model, "_detect", lambda *args: _one_detection(2))
        with_one = model(x)
    inside = torch.zeros(64, 128, dtype=torch.bool)
    inside[4:20, 8:40] = True
    assert (with_one[:, 1:].argmax(dim=1)[:, inside] == 3).all()  # class 4 = index 3 among foreground
    assert torch.equal(with_one[..., ~inside], without[..., ~inside])
    if fallback == "none":
        assert torch.allclose(without, torch.full_like(without, -np.log(5)))
    else:
        semantic = model._semantic_logits(model.backbone(x)[0], (64, 128)).log_softmax(dim=1)
        assert torch.allclose(without, semantic.clamp_min(np.log(1e-6)), atol=1e-4)


def test_the_default_is_the_detector_alone_without_a_semantic_head_or_its_loss():
    model = _build()
    assert SPEC.parse_params().fallback == "none" and model.semantic_head is None
    assert count_params(model) < count_params(_build(fallback="semantic"))
    images, masks = _scene()
    assert set(model.train()(images, masks)) == LOSSES - {"semantic"}


def test_the_target_cache_cuts_a_mask_once_and_a_changed_mask_again():
    model = _build(target_cache=3).train()
    images, masks = _scene()
    model(images, masks)
    cache = model.instance_cache
    assert (cache.misses, cache.hits) == (1, 1)  # the two images of the batch share one mask
    model(images, masks)
    assert (cache.misses, cache.hits) == (1, 3)
    flipped = masks.flip(-1)  # what augmentation does: new content, new instances
    model(images, flipped)
    assert cache.misses == 2
    for shift in range(1, 4):
        model(images[:1], masks[:1].roll(shift, dims=-1))
    assert len(cache.entries) == 3  # bounded: the oldest entries were dropped
    uncached = _build(target_cache=0).train()
    uncached(images, masks)
    assert uncached.instance_cache.misses == 2 and not uncached.instance_cache.entries


def test_truth_pads_the_batch_instances():
    model = _build()
    masks = torch.zeros(2, 64, 128, dtype=torch.long)
    masks[0, 10:20, 10:30] = 4
    masks[0, 40:50, 60:64] = 2
    truth = model._truth(masks)
    assert truth.boxes.shape == (2, 2, 4) and truth.valid.tolist() == [[True, True], [False, False]]
    assert sorted(truth.classes[0].tolist()) == [2, 4]
    rock = truth.classes[0].tolist().index(4)
    assert truth.boxes[0, rock].tolist() == [10, 10, 30, 20]
    assert (truth.components[0] == rock + 1).sum() == 200 and not truth.components[1].any()
    with pytest.raises(ValueError, match="label 7"):
        model._truth(torch.full((1, 64, 128), 7))


def test_roi_levels_follow_the_fpn_rule():
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 64.0, 128.0]]])
    assert _build().roi_levels(boxes).tolist() == [[0, 0]]  # every box of a 64x128 image pools from P2
    spread = _build(roi_cells=1.0).roi_levels(
        torch.tensor([[[0.0, 0, 4, 4], [0, 0, 8, 8], [0, 0, 16, 16], [0, 0, 90, 90]]])
    )
    assert spread.tolist() == [[0, 1, 2, 3]]


def test_the_training_loop_takes_the_loss_path_through_the_flag():
    model = _build().train()
    images, masks = _scene()
    resolved = SimpleNamespace(arch=SPEC, config=SimpleNamespace(data=SimpleNamespace(ignore_index=0)))
    torch.manual_seed(0)
    total = compute_loss(resolved, model, None, images, masks, multiple=32)
    torch.manual_seed(0)
    assert torch.allclose(total, sum(model(images, masks).values()))


def test_no_module_of_the_project_imports_torchvision():
    root = Path(__file__).resolve().parents[3]
    sources = [
        path
        for folder in ("harness", "plugins", "leaderboard", "tests", "examples")
        for path in (root / folder).rglob("*.py")
    ]
    pattern = re.compile(r"^\s*(import|from)\s+torchvision\b", re.MULTILINE)
    assert sources and not [str(path) for path in sources if pattern.search(path.read_text())]
