"""Mask R-CNN: the instance-based contract (losses in training, log-scores at inference), the target cache,
the semantic output built from detections and the fallback, and the training loop's flag-driven call."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harness.errors import ConfigError
from harness.inference.cost import count_params, forward_gflops
from harness.training.loop import compute_loss
from plugins.architectures import maskrcnn
from plugins.architectures.detection import box_iou
from tests_support import run_cli

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


# --- RPN NMS per level ----------------------------------------------------------------------------------


def _greedy(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Greedy NMS written from its definition: indices kept, best first."""
    kept: list[int] = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if all(float(box_iou(boxes[i][None], boxes[k][None])[0, 0]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(3))
def test_rpn_nms_runs_per_level_then_keeps_the_best_of_all_levels(seed):
    generator = torch.Generator().manual_seed(seed)
    model = _build(rpn_pre_nms_top_n=40, rpn_nms_threshold=0.5)
    counts, batch, keep_count = (30, 25, 20), 2, 24
    anchors = []
    for count in counts:  # crowded boxes in one corner: long suppression chains, across levels too
        corner = torch.rand(count, 2, generator=generator) * 30
        anchors.append(torch.cat([corner, corner + 4 + torch.rand(count, 2, generator=generator) * 20], 1))
    objectness = [torch.rand(batch, count, generator=generator) for count in counts]
    deltas = [torch.zeros(batch, count, 4) for count in counts]  # the proposals are the anchors
    boxes, valid = model._proposals(objectness, deltas, anchors, (64, 128), keep_count)
    for image in range(batch):
        survivors = []  # (score, box) kept by NMS within each level
        for level in range(len(counts)):
            scores = objectness[level][image]
            survivors += [(float(scores[i]), anchors[level][i]) for i in _greedy(anchors[level], scores, 0.5)]
        survivors.sort(key=lambda item: -item[0])
        expected = torch.stack([box for _, box in survivors[:keep_count]])
        assert torch.allclose(boxes[image][valid[image]], expected)


def test_the_same_box_on_two_levels_survives_on_both():
    model = _build(rpn_nms_threshold=0.5)
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    objectness = [torch.tensor([[0.9]]), torch.tensor([[0.8]])]
    deltas = [torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)]
    boxes, valid = model._proposals(objectness, deltas, [box, box], (64, 128), 4)
    assert int(valid.sum()) == 2  # one NMS over the image together would have kept one


# --- anchors fitted to the data ---------------------------------------------------------------------------


def _wide_rocks(count: int = 40) -> torch.Tensor:
    """Unlabelled masks with three wide bands of bedrock each: instances 5 to 7 times wider than high."""
    generator = np.random.default_rng(0)
    masks = np.zeros((count, 64, 128), dtype=np.uint8)
    for mask in masks:
        for top in (2, 22, 42):
            height = int(generator.integers(10, 17))
            width = int(height * generator.uniform(5, 7))
            left = int(generator.integers(0, 128 - width))
            mask[top : top + height, left : left + width] = 2
    return torch.from_numpy(masks)


def test_a_run_fits_wide_anchors_to_wide_instances_and_records_their_recall():
    model = _build(min_area=8)
    before = model.anchor_shapes.clone()
    record = SPEC.fit(model, _wide_rocks())
    assert record["anchors"] == "fitted" and (record["masks"], record["instances"]) == (40, 120)
    shapes = model.anchor_shapes
    assert shapes.shape == before.shape == (5, 15, 2) and not torch.equal(shapes, before)
    assert torch.equal(shapes[0], shapes[-1])  # every fitted shape on every level
    assert bool((shapes[0, :, 0] > 3 * shapes[0, :, 1]).all())  # wide anchors for wide instances
    assert record["recall"] >= 0.9 > record["recall_before"]
    assert len(record["anchor_wh"]) == 15
    state = model.state_dict()
    rebuilt = _build(min_area=8)
    rebuilt.load_state_dict(state)  # what evaluate and predict do: the fitted anchors come back
    assert torch.equal(rebuilt.anchor_shapes, shapes)


def test_given_anchor_sizes_or_ratios_win_over_the_fit():
    for given in ({"anchor_sizes": [8, 16, 32, 64, 128]}, {"anchor_ratios": [0.25, 1.0]}):
        model = _build(**given)
        before = model.anchor_shapes.clone()
        record = SPEC.fit(model, _wide_rocks(4))
        assert record["anchors"] == "given" and torch.equal(model.anchor_shapes, before)
    assert _build(anchor_ratios=[0.25, 1.0]).anchor_shapes.shape == (5, 2, 2)  # FPN: one size per level


def test_a_checkpoint_from_before_the_anchor_buffer_still_loads():
    model = _build(anchor_sizes=[8, 16, 32, 64, 128], anchor_ratios=[0.5, 1.0, 2.0])
    old = {key: value for key, value in model.state_dict().items() if key != "anchor_shapes"}
    model.load_state_dict(old)  # strict: the missing buffer is filled from the params
    assert model.anchor_shapes.shape == (5, 3, 2)


# --- cost, variants, training at another size ------------------------------------------------------------


def test_the_cost_probe_makes_every_proposal_a_detection_so_the_mask_head_counts():
    model = _build(detections_per_image=8).eval()
    x = torch.zeros(1, 1, 64, 128)
    with torch.no_grad():
        assert model._detect(*_eval_inputs(model, x)) is None  # untrained: nothing scores 0.5
        with model.cost_probe():
            found = model._detect(*_eval_inputs(model, x))
    assert found is not None and int(found.valid.sum()) == 8
    assert not model.probing_cost
    probed = forward_gflops(model)
    model.cost_probe = None  # the harness then measures the bare eval forward
    assert probed > 1.5 * forward_gflops(model)


def _eval_inputs(model, x):
    levels = model.backbone(x)
    objectness, deltas = model.rpn(levels)
    proposals, valid = model._proposals(objectness, deltas, model._anchors(levels), (64, 128), 16)
    return levels, proposals, valid, (64, 128)


def test_the_hybrids_parts_are_scored_apart():
    hybrid = _build(fallback="semantic").eval()
    assert hybrid.scoring_variants == ("detections", "semantic", "combined")
    assert _build().scoring_variants == ("detections",)
    x = torch.randn(1, 1, 64, 128)
    with torch.no_grad():
        combined = hybrid(x)
        with hybrid.scoring_variant("semantic"):
            semantic = hybrid(x)
        with hybrid.scoring_variant("detections"):
            detections = hybrid(x)
        head = hybrid._semantic_logits(hybrid.backbone(x)[0], (64, 128)).log_softmax(dim=1)
    assert torch.allclose(semantic, head)
    assert torch.allclose(detections, torch.full_like(detections, -np.log(5)))  # untrained: no detection
    assert torch.allclose(combined, head.clamp_min(np.log(1e-6)), atol=1e-4)
    with pytest.raises(ValueError, match="no output 'semantic'"), _build().scoring_variant("semantic"):
        pass


def test_maskrcnn_trains_at_80x120_and_evaluate_reports_its_parts(capsys, store_path):
    args = [
        "--arch",
        "maskrcnn",
        "--data-param",
        "n=24",
        "--data-param",
        "height=80",
        "--data-param",
        "width=120",
    ]
    tiny = [f"--arch-param={key}={value}" for key, value in TINY.items()]
    code, out, err = run_cli(
        capsys, "run", *args, *tiny, "--arch-param", "fallback=semantic", "--epochs", "1",
        "--set", "train.batch_size=8", "--store", str(store_path), "--format", "json", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "finished"
    assert (
        result["metrics"]["fitted"]["anchors"] == "fitted" and 0 <= result["metrics"]["fitted"]["recall"] <= 1
    )
    code, out, err = run_cli(
        capsys, "evaluate", result["run_id"][:20], "--data", "synthetic", "--store", str(store_path),
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    variants = json.loads(out)["variants"]
    assert set(variants) == {"detections", "semantic", "combined"}
    assert all(set(scores) == {"miou_an2dl", "miou_fg", "iou"} for scores in variants.values())
