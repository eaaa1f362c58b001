"""Mask R-CNN (He et al. 2017) in plain PyTorch, trained from scratch on instances cut from semantic masks.

The report's team used "a customized Mask R-CNN using segmented images as labels"; this is that model
with every part written here (torchvision's compiled ops do not load with the harness's CPU torch):

- targets: the connected components of each foreground class of a semantic mask are its instances
  (class, box, binary mask), cached per mask content so a training image is cut once and an augmented
  or balanced mask (new content) is cut again;
- a ResNet of basic blocks with a feature pyramid (P2..P5 at strides 4..32, P6 by subsampling P5);
- anchors fitted to the training instances when the model is built for a run (`fit_anchors`: k-means
  over the instances' (w, h) with 1 - IoU as the distance, `plugins/architectures/anchors.py`), unless
  `anchor_sizes` / `anchor_ratios` are given; the shapes live in a buffer, so the checkpoint keeps them.
  Departure from FPN (one anchor size per level), for fitted anchors only: every fitted shape sits on
  every level. An anchor centred on a cell of stride s reaches IoU 0.7 with a box only if the box's
  sides are a few strides long, and a 64-pixel-high image has few such boxes beyond P3 (stride 8): on
  the Mars training masks FPN's placement of the fitted shapes reached IoU 0.7 for 7 % of the
  instances, every shape on every level for 51 %;
- a region proposal network over those anchors, NMS on the decoded proposals of each pyramid level
  separately, then the best of all levels kept (as FPN does);
- RoIAlign from the pyramid level matching each box's size, a box head (class + class-specific box
  refinement) and a mask head (an FCN giving one 28x28 mask per class);
- with `fallback = "semantic"` only, a small semantic head on P2, trained with cross-entropy (background
  ignored), that answers for the pixels no detection covers. The default (`"none"`) is the detector
  alone, so its score is Mask R-CNN's; `evaluate` reports the hybrid's parts apart (`scoring_variants`).

In training mode `model(images, masks)` returns the weighted losses by name (the loop sums them). In
eval mode `model(images)` returns (B, K, H, W) log-scores like every other architecture: each detection's
mask is pasted into its box and weighted by its score, the per-class maximum is taken, and a pixel that
no detection covers takes the semantic head's probabilities (`fallback = "semantic"`) or a uniform
score (`"none"`: the harness then picks the first foreground class there). Inputs must be multiples of
32; the harness pads them (images by reflection, masks with the ignored label) in training too.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness import hookimpl
from harness.specs import ArchitectureSpec
from plugins.architectures import anchors as anchor_fit
from plugins.architectures.deeplab import BasicBlock
from plugins.architectures.detection import (
    Instances,
    batched_nms,
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    detections_to_scores,
    encode_boxes,
    instances_from_mask,
    match_boxes,
    multilevel_roi_align,
    roi_align,
    sample_balanced,
)
from plugins.architectures.layers import Norm, check_input_size, norm_layer

BACKGROUND = 0  # label 0 is background: never an instance, ignored by the semantic loss
FPN_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
ROI_LEVELS = 4  # RoIs pool from P2..P5; P6 only feeds the RPN, as in FPN
MULTIPLE = 32  # P5's stride: every level then tiles the image exactly
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
HEAD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Detectron's: the head's deltas are small, so scale them up
RPN_POSITIVE_IOU, RPN_NEGATIVE_IOU = 0.7, 0.3
RPN_POSITIVE_FRACTION = 0.5
ROI_POSITIVE_IOU = 0.5
BOX_ROI_SIZE, MASK_ROI_SIZE = 7, 14
MASK_SIZE = 2 * MASK_ROI_SIZE  # the mask head up-samples its RoI once
SMOOTH_L1_BETA = 1 / 9
MIN_BOX_SIDE = 1.0  # pixels: a kept instance is at least one pixel, so a thinner box is noise
# Anchors when none are given and none are fitted (a model built outside a run): sized for 64x128 images.
DEFAULT_ANCHOR_SIZES = (8.0, 16.0, 32.0, 64.0, 128.0)
DEFAULT_ANCHOR_RATIOS = (0.5, 1.0, 2.0)
FIT_MASKS = 2048  # training masks (evenly spaced) whose instances the anchors are fitted to

Size = Annotated[float, Field(ge=1.0, le=1024.0)]
Ratio = Annotated[float, Field(gt=0.0, le=8.0)]
Weight = Annotated[float, Field(ge=0.0, le=100.0)]


class MaskRCNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(
        16, ge=4, le=128, description="Channels of the backbone's first stage; doubled at each later stage."
    )
    blocks: list[Annotated[int, Field(ge=1, le=8)]] = Field(
        [1, 1, 1, 1], min_length=4, max_length=4, description="Basic residual blocks in each of the 4 stages."
    )
    norm: Norm = Field("batch", description="Normalisation layer of the backbone.")
    fpn_channels: int = Field(32, ge=8, le=256, description="Channels of every pyramid level and head.")
    # Rocks are a few to tens of pixels and terrain regions span the whole 64x128 image: rather than
    # guess, a run fits the anchors to its training instances unless these are given.
    anchor_sizes: list[Size] | None = Field(
        None,
        min_length=5,
        max_length=5,
        description="Anchor side (square root of its area) on P2..P6 (strides 4..64); None: fitted to the "
        "training instances (8..128 when nothing is fitted). Given sizes or ratios turn the fit off.",
    )
    anchor_ratios: list[Ratio] | None = Field(
        None,
        min_length=1,
        max_length=6,
        description="Anchor aspect ratios (height / width); None: fitted (0.5, 1, 2 when nothing is fitted).",
    )
    min_area: int = Field(
        8, ge=1, le=8192, description="Connected components under this many pixels are no instance."
    )
    max_instances: int = Field(
        32, ge=1, le=255, description="At most this many instances per image (the largest are kept)."
    )
    target_cache: int = Field(
        16384, ge=0, le=1_000_000, description="Masks whose instances are kept (by content); 0: no cache."
    )
    rpn_pre_nms_top_n: int = Field(
        128, ge=1, le=4096, description="Best proposals per pyramid level before NMS."
    )
    rpn_post_nms_train: int = Field(256, ge=1, le=4096, description="Proposals per image kept in training.")
    rpn_post_nms_test: int = Field(100, ge=1, le=4096, description="Proposals per image kept at inference.")
    rpn_nms_threshold: float = Field(
        0.7, gt=0.0, le=1.0, description="IoU above which a proposal is suppressed."
    )
    rpn_anchors_per_image: int = Field(
        256, ge=2, le=4096, description="Anchors sampled per image for the RPN loss."
    )
    rois_per_image: int = Field(
        64, ge=2, le=1024, description="RoIs sampled per image for the box and mask heads."
    )
    roi_positive_fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="Largest share of positive (IoU >= 0.5) RoIs in that sample."
    )
    # FPN's rule puts a 224-pixel box on P4 (stride 16), i.e. 14 cells; with 64x128 images every box is
    # under 2 x 14 x 4 = 112 pixels, so at the default every RoI pools from P2. Lower it to spread them.
    roi_cells: float = Field(
        14.0,
        gt=0.0,
        le=64.0,
        description="RoI level rule: a box side of 2^k x roi_cells x 4 pixels or more pools from P(2+k).",
    )
    sampling_ratio: int = Field(2, ge=1, le=4, description="RoIAlign samples per bin along each axis.")
    box_head_width: int = Field(128, ge=8, le=1024, description="Width of the box head's two hidden layers.")
    mask_convs: int = Field(
        4, ge=0, le=8, description="3x3 convolutions of the mask head before up-sampling."
    )
    box_nms_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="IoU above which a detection of the same class is suppressed."
    )
    # A detection overrides the fallback wherever its mask lies, so only confident ones should count.
    score_threshold: float = Field(
        0.5, ge=0.0, lt=1.0, description="Smallest class score kept as a detection."
    )
    detections_per_image: int = Field(16, ge=1, le=1024, description="Most detections kept per image.")
    mask_threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="Mask probability that makes a pixel an instance's."
    )
    fallback: Literal["none", "semantic"] = Field(
        "none",
        description="What pixels no detection covers get: a uniform score (the detector alone), or a "
        "semantic head on P2 trained beside it (a hybrid, no longer Mask R-CNN alone).",
    )
    rpn_objectness_weight: Weight = Field(1.0, description="Weight of the RPN objectness loss (BCE).")
    rpn_box_weight: Weight = Field(1.0, description="Weight of the RPN box loss (smooth L1).")
    classifier_weight: Weight = Field(1.0, description="Weight of the box head's classification loss (CE).")
    box_weight: Weight = Field(1.0, description="Weight of the box head's regression loss (smooth L1).")
    mask_weight: Weight = Field(1.0, description="Weight of the mask loss (per-pixel BCE).")
    semantic_weight: Weight = Field(
        1.0, description="Weight of the semantic head's loss (CE, background ignored)."
    )


class TargetCache:
    """`instances_from_mask` per mask content, keeping the `capacity` most recently used results.

    The key is a hash of the mask's bytes (and shape): a training image seen again unchanged is not cut
    again, while an augmented or balanced mask, having new content, is.
    """

    def __init__(self, capacity: int, *, min_area: int, max_instances: int):
        self.capacity, self.min_area, self.max_instances = capacity, min_area, max_instances
        self.entries: OrderedDict[bytes, Instances] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, mask: np.ndarray) -> Instances:
        digest = hashlib.blake2b(np.asarray(mask.shape, dtype=np.int64).tobytes(), digest_size=16)
        digest.update(mask.tobytes())
        key = digest.digest()
        found = self.entries.get(key)
        if found is not None:
            self.hits += 1
            self.entries.move_to_end(key)
            return found
        self.misses += 1
        found = instances_from_mask(
            mask, min_area=self.min_area, max_instances=self.max_instances, background=BACKGROUND
        )
        if self.capacity:
            self.entries[key] = found
            if len(self.entries) > self.capacity:
                self.entries.popitem(last=False)
        return found


@dataclass
class Truth:
    """A batch's instances, padded to the most instances in any image (at least one slot)."""

    boxes: torch.Tensor  # (B, G, 4)
    classes: torch.Tensor  # (B, G) int64, 0 on padding
    valid: torch.Tensor  # (B, G) bool
    components: torch.Tensor  # (B, H, W) int64: g + 1 on instance g's pixels, else 0


@dataclass
class SampledRois:
    """The RoIs sampled per image for the heads, positives first (see `sample_balanced`)."""

    boxes: torch.Tensor  # (B, R, 4)
    valid: torch.Tensor  # (B, R) bool
    positive: torch.Tensor  # (B, R) bool: overlaps an instance with IoU >= 0.5
    classes: torch.Tensor  # (B, R) int64: the matched instance's class on positives, else 0
    matched: torch.Tensor  # (B, R) int64: index of the matched instance
    deltas: torch.Tensor  # (B, R, 4): regression targets to the matched instance's box


@dataclass
class Detections:
    """The kept detections per image, best first, with their mask probabilities."""

    boxes: torch.Tensor  # (B, D, 4)
    scores: torch.Tensor  # (B, D)
    classes: torch.Tensor  # (B, D) int64
    valid: torch.Tensor  # (B, D) bool
    masks: torch.Tensor  # (B, D, MASK_SIZE, MASK_SIZE) probabilities of the detected class


def _conv(in_channels: int, out_channels: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=norm == "none"),
        norm_layer(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class ResNetFPN(nn.Module):
    """A ResNet of basic blocks (stride 2 stem, then four stages each halving the size) and its FPN.

    Returns P2..P5 (strides 4..32, `fpn_channels` each: lateral 1x1, top-down nearest up-sampling and
    sum, 3x3 smoothing) and P6, P5 subsampled by 2, which only the RPN uses (for the largest anchors).
    """

    def __init__(self, params: MaskRCNNParams, in_channels: int):
        super().__init__()
        width, norm, channels = params.width, params.norm, params.fpn_channels
        self.stem = nn.Sequential(_conv(in_channels, width, norm), _conv(width, width, norm, stride=2))
        widths = [width * 2**stage for stage in range(4)]
        self.stages = nn.ModuleList()
        previous = width
        for stage_width, count in zip(widths, params.blocks, strict=True):
            blocks = [BasicBlock(previous, stage_width, norm, stride=2, dilation=1)]
            blocks += [
                BasicBlock(stage_width, stage_width, norm, stride=1, dilation=1) for _ in range(count - 1)
            ]
            self.stages.append(nn.Sequential(*blocks))
            previous = stage_width
        self.lateral = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in widths)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        laterals = [conv(out) for conv, out in zip(self.lateral, stage_outputs, strict=True)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + F.interpolate(merged[0], size=lateral.shape[-2:], mode="nearest"))
        pyramid = [conv(level) for conv, level in zip(self.smooth, merged, strict=True)]
        return [*pyramid, F.max_pool2d(pyramid[-1], kernel_size=1, stride=2)]


class RPNHead(nn.Module):
    """A shared 3x3 conv, then per anchor an objectness logit and 4 box deltas, on every level."""

    def __init__(self, channels: int, anchors_per_cell: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, anchors_per_cell, 1)
        self.deltas = nn.Conv2d(channels, 4 * anchors_per_cell, 1)
        for layer in (self.conv, self.objectness, self.deltas):  # Detectron's init: tiny initial outputs
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, levels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level, (B, h * w * A) logits and (B, h * w * A, 4) deltas, in `make_anchors` order."""
        objectness, deltas = [], []
        for level in levels:
            hidden = F.relu(self.conv(level))
            batch = level.shape[0]
            objectness.append(self.objectness(hidden).permute(0, 2, 3, 1).reshape(batch, -1).float())
            deltas.append(self.deltas(hidden).permute(0, 2, 3, 1).reshape(batch, -1, 4).float())
        return objectness, deltas


class BoxHead(nn.Module):
    """Two hidden fully connected layers, then class logits (background = 0) and class-specific deltas."""

    def __init__(self, channels: int, hidden: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * BOX_ROI_SIZE**2, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        self.regressor = nn.Linear(hidden, 4 * num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.normal_(self.regressor.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        nn.init.zeros_(self.regressor.bias)

    def forward(self, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, 7, 7) RoI features -> (N, K) logits and (N, K, 4) deltas, in float32."""
        hidden = self.hidden(rois)
        deltas = self.regressor(hidden).float().view(-1, self.num_classes, 4)
        return self.classifier(hidden).float(), deltas


def _mask_head(channels: int, convs: int, num_classes: int) -> nn.Sequential:
    """Mask R-CNN's FCN: 3x3 convs on the 14x14 RoI, a 2x transposed conv, one mask logit map per class."""
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    layers += [nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(channels, num_classes, 1))
    return nn.Sequential(*layers)


def _semantic_head(channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, num_classes, 1),
    )


def _gather_boxes(boxes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, N, 4) boxes at (B, M) indices -> (B, M, 4)."""
    return boxes.gather(1, index[..., None].expand(-1, -1, 4))


def _best(scores: torch.Tensor, keep: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the (at most) `count` best kept entries per row, and whether each is kept."""
    index = scores.masked_fill(~keep, -math.inf).topk(min(count, scores.shape[1]), dim=1).indices
    return index, keep.gather(1, index)


def _wide_enough(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0] >= MIN_BOX_SIDE) & (boxes[..., 3] - boxes[..., 1] >= MIN_BOX_SIDE)


class MaskRCNN(nn.Module):
    """Mask R-CNN with an FPN (and, with fallback=semantic, a semantic head); see the module docstring."""

    def __init__(self, params: MaskRCNNParams, in_channels: int, num_classes: int):
        super().__init__()
        self.params, self.num_classes = params, num_classes
        channels = params.fpn_channels
        sizes = params.anchor_sizes or DEFAULT_ANCHOR_SIZES
        ratios = params.anchor_ratios or DEFAULT_ANCHOR_RATIOS
        shapes = anchor_fit.from_sizes_and_ratios(sizes, ratios)
        if self.fits_anchors:  # every shape on every level (see the module docstring); fitted per run
            shapes = shapes.reshape(1, -1, 2).repeat(len(FPN_STRIDES), 1, 1)
        # (levels, A, 2) anchor (w, h): a buffer, so a fitted model's checkpoint carries its anchors.
        self.register_buffer("anchor_shapes", shapes)
        self.register_load_state_dict_pre_hook(_keep_anchors_of_older_checkpoints)
        self.output = "combined"  # what eval mode returns; see `scoring_variant`
        self.probing_cost = False  # see `cost_probe`
        self.backbone = ResNetFPN(params, in_channels)
        self.rpn = RPNHead(channels, shapes.shape[1])
        self.box_head = BoxHead(channels, params.box_head_width, num_classes)
        self.mask_head = _mask_head(channels, params.mask_convs, num_classes)
        self.semantic_head = _semantic_head(channels, num_classes) if params.fallback == "semantic" else None
        self.instance_cache = TargetCache(
            params.target_cache, min_area=params.min_area, max_instances=params.max_instances
        )

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None):
        check_input_size(images, MULTIPLE, "maskrcnn")
        if masks is not None:
            return self.losses(images, masks)
        if self.training:
            raise ValueError(
                "maskrcnn is instance-based: in training mode call model(images, masks) for the losses"
            )
        return self.predict(images)

    # Training -------------------------------------------------------------------------------------------

    def losses(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted losses by name for (B, C, H, W) images and their (B, H, W) semantic masks."""
        p = self.params
        truth = self._truth(masks)
        levels = self.backbone(images)
        objectness, deltas = self.rpn(levels)
        anchors = self._anchors(levels)
        rpn_objectness, rpn_box = self._rpn_losses(
            torch.cat(objectness, 1), torch.cat(deltas, 1), torch.cat(anchors), truth
        )
        with torch.no_grad():
            proposals, valid = self._proposals(
                objectness, deltas, anchors, images.shape[-2:], p.rpn_post_nms_train
            )
        rois = self._sample_rois(proposals, valid, truth)
        classifier, box = self._box_losses(levels, rois)
        losses = {
            "rpn_objectness": p.rpn_objectness_weight * rpn_objectness,
            "rpn_box": p.rpn_box_weight * rpn_box,
            "classifier": p.classifier_weight * classifier,
            "box": p.box_weight * box,
            "mask": p.mask_weight * self._mask_loss(levels, rois, truth),
        }
        if self.semantic_head is not None:
            losses["semantic"] = p.semantic_weight * self._semantic_loss(levels[0], masks)
        return losses

    def _truth(self, masks: torch.Tensor) -> Truth:
        """Instances of each mask (through the cache), padded into batch tensors on the masks' device."""
        arrays = masks.detach().to("cpu", torch.uint8).numpy()
        if int(arrays.max(initial=0)) >= self.num_classes:
            raise ValueError(
                f"maskrcnn: a mask holds label {int(arrays.max())}; classes are 0..{self.num_classes - 1}"
            )
        found = [self.instance_cache(np.ascontiguousarray(mask)) for mask in arrays]
        slots = max(1, max(len(item.classes) for item in found))
        boxes = np.zeros((len(found), slots, 4), dtype=np.float32)
        classes = np.zeros((len(found), slots), dtype=np.int64)
        for row, item in enumerate(found):
            boxes[row, : len(item.classes)] = item.boxes
            classes[row, : len(item.classes)] = item.classes
        components = np.stack([item.components for item in found])
        device = masks.device
        classes_t = torch.from_numpy(classes).to(device)
        return Truth(
            boxes=torch.from_numpy(boxes).to(device),
            classes=classes_t,
            valid=classes_t != BACKGROUND,
            components=torch.from_numpy(components).to(device, torch.long),
        )

    def _anchors(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [tuple(level.shape[-2:]) for level in levels]
        return anchor_fit.place(sizes, FPN_STRIDES, self.anchor_shapes)

    # Anchors fitted to the data -------------------------------------------------------------------------

    @property
    def fits_anchors(self) -> bool:
        """Whether a run fits the anchors: neither anchor_sizes nor anchor_ratios was given."""
        return self.params.anchor_sizes is None and self.params.anchor_ratios is None

    @torch.no_grad()
    def fit_anchors(self, masks: torch.Tensor) -> dict:
        """Fit the anchor shapes to the instances of (N, H, W) training masks; what was done, as JSON data.

        Up to FIT_MASKS masks (evenly spaced) are cut into instances (through the target cache, which
        training then reuses). Unless anchor_sizes or anchor_ratios were given, k-means with 1 - IoU
        (`anchors.fit_shapes`) picks as many shapes as the default has (5 sizes x 3 ratios), each placed
        on every level. The record holds the anchors and their recall: the share of instances whose best
        anchor, placed on the pyramid of the (padded) image, overlaps them at IoU >= 0.7, the RPN's
        positive threshold; before fitting (the defaults, one size per level as FPN places them) and
        after.
        """
        rows = np.unique(np.linspace(0, len(masks) - 1, min(len(masks), FIT_MASKS)).round().astype(int))
        arrays = masks[torch.as_tensor(rows)].to("cpu", torch.uint8).numpy() if len(masks) else []
        found = [self.instance_cache(np.ascontiguousarray(mask)) for mask in arrays]
        boxes = np.concatenate([item.boxes for item in found]) if found else np.zeros((0, 4), np.float32)
        height, width = (-(-side // MULTIPLE) * MULTIPLE for side in masks.shape[-2:])
        placed = anchor_fit.feature_sizes(height, width, FPN_STRIDES)

        def recall(shapes: torch.Tensor) -> float:
            grid = torch.cat(anchor_fit.place(placed, FPN_STRIDES, shapes.cpu()))
            return anchor_fit.recall(torch.from_numpy(boxes), grid, RPN_POSITIVE_IOU)

        record = {"masks": len(arrays), "instances": len(boxes), "iou": RPN_POSITIVE_IOU}
        if not self.fits_anchors:
            return {**record, "anchors": "given", "recall": recall(self.anchor_shapes)}
        before = recall(anchor_fit.from_sizes_and_ratios(DEFAULT_ANCHOR_SIZES, DEFAULT_ANCHOR_RATIOS))
        fitted = anchor_fit.fit_shapes(boxes, self.anchor_shapes.shape[1])
        if fitted is None:
            reason = "default (too few distinct instances to fit)"
            return {
                **record,
                "anchors": reason,
                "recall_before": before,
                "recall": recall(self.anchor_shapes),
            }
        self.anchor_shapes.copy_(fitted.expand_as(self.anchor_shapes))
        shapes = [[round(float(side), 1) for side in wh] for wh in fitted]
        return {
            **record,
            "anchors": "fitted",
            "anchor_wh": shapes,
            "recall_before": before,
            "recall": recall(self.anchor_shapes),
        }

    def _rpn_losses(self, objectness, deltas, anchors, truth: Truth) -> tuple[torch.Tensor, torch.Tensor]:
        """Objectness BCE over a balanced anchor sample and smooth L1 on its positives, per sampled anchor."""
        batch = objectness.shape[0]
        iou = box_iou(anchors.expand(batch, -1, -1), truth.boxes)
        matched, labels = match_boxes(
            iou, truth.valid, high=RPN_POSITIVE_IOU, low=RPN_NEGATIVE_IOU, keep_best=True
        )
        index, valid = sample_balanced(labels, self.params.rpn_anchors_per_image, RPN_POSITIVE_FRACTION)
        positive = valid & (labels.gather(1, index) == 1)
        count = valid.sum().clamp_min(1)
        bce = F.binary_cross_entropy_with_logits(
            objectness.gather(1, index), positive.float(), reduction="none"
        )
        targets = encode_boxes(
            anchors[index], _gather_boxes(truth.boxes, matched.gather(1, index)), RPN_BOX_WEIGHTS
        )
        box = F.smooth_l1_loss(_gather_boxes(deltas, index), targets, beta=SMOOTH_L1_BETA, reduction="none")
        return (bce * valid).sum() / count, (box.sum(-1) * positive).sum() / count

    def _sample_rois(self, proposals, proposal_valid, truth: Truth) -> SampledRois:
        """Proposals plus the true boxes, labelled at IoU 0.5 and sampled with a positive fraction."""
        candidates = torch.cat([proposals, truth.boxes], dim=1)
        candidate_valid = torch.cat([proposal_valid, truth.valid], dim=1)
        matched, labels = match_boxes(
            box_iou(candidates, truth.boxes),
            truth.valid,
            high=ROI_POSITIVE_IOU,
            low=ROI_POSITIVE_IOU,
            keep_best=False,
        )
        labels = labels.masked_fill(~candidate_valid, -1)
        p = self.params
        index, valid = sample_balanced(labels, p.rois_per_image, p.roi_positive_fraction)
        boxes, matched = _gather_boxes(candidates, index), matched.gather(1, index)
        positive = valid & (labels.gather(1, index) == 1)
        classes = torch.where(positive, truth.classes.gather(1, matched), BACKGROUND)
        deltas = encode_boxes(boxes, _gather_boxes(truth.boxes, matched), HEAD_BOX_WEIGHTS)
        return SampledRois(boxes, valid, positive, classes, matched, deltas)

    def _box_losses(self, levels, rois: SampledRois) -> tuple[torch.Tensor, torch.Tensor]:
        """Classification CE over the sampled RoIs, smooth L1 on the positives' class-specific deltas."""
        batch, count = rois.valid.shape
        logits, deltas = self.box_head(self._roi_features(levels, rois.boxes, BOX_ROI_SIZE).flatten(0, 1))
        valid, classes = rois.valid.flatten(), rois.classes.flatten()
        denominator = valid.sum().clamp_min(1)
        classifier = (F.cross_entropy(logits, classes, reduction="none") * valid).sum() / denominator
        predicted = deltas.gather(1, classes[:, None, None].expand(-1, 1, 4))[:, 0]
        box = F.smooth_l1_loss(predicted, rois.deltas.flatten(0, 1), beta=SMOOTH_L1_BETA, reduction="none")
        return classifier, (box.sum(-1) * rois.positive.flatten()).sum() / denominator

    def _mask_loss(self, levels, rois: SampledRois, truth: Truth) -> torch.Tensor:
        """Per-pixel BCE of the true class's mask on positive RoIs, against the instance cut to the RoI."""
        # Positives come first, so the image with the most positives bounds the slots to pool.
        slots = max(1, int(rois.positive.sum(1).max()))
        positive = rois.positive[:, :slots].flatten()
        rows = positive.nonzero()[:, 0]
        if len(rows) == 0:
            # One (ignored) row keeps every mask-head weight in the graph when the batch has no positive.
            rows = torch.zeros(1, dtype=torch.long, device=positive.device)
        boxes = rois.boxes[:, :slots].flatten(0, 1)[rows]
        features = self._roi_features(levels, rois.boxes[:, :slots], MASK_ROI_SIZE).flatten(0, 1)[rows]
        logits = self.mask_head(features).float()
        classes = rois.classes[:, :slots].flatten()[rows]
        logits = logits.gather(1, classes[:, None, None, None].expand(-1, 1, MASK_SIZE, MASK_SIZE))[:, 0]
        with torch.no_grad():
            matched = rois.matched[:, :slots].flatten()[rows]
            targets = self._mask_targets(truth.components[rows // slots], boxes, matched)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=(1, 2))
        return (bce * positive[rows]).sum() / positive.sum().clamp_min(1)

    def _mask_targets(self, components, boxes, matched) -> torch.Tensor:
        """(N, 28, 28) binary targets: instance `matched[n]` of `components[n]` RoIAligned over `boxes[n]`."""
        instance = (components == (matched + 1)[:, None, None]).float()  # (N, H, W)
        cut = roi_align(instance[:, None], boxes[:, None], MASK_SIZE, 1.0, self.params.sampling_ratio)
        return (cut[:, 0, 0] >= 0.5).float()

    def _semantic_loss(self, finest: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the semantic head over labelled pixels (0 when a batch has none)."""
        logits = self._semantic_logits(finest, masks.shape[-2:])
        total = F.cross_entropy(logits, masks, ignore_index=BACKGROUND, reduction="sum")
        return total / (masks != BACKGROUND).sum().clamp_min(1)

    # Shared by training and inference ------------------------------------------------------------------

    def _proposals(self, objectness, deltas, anchors, size, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded RPN boxes: the best per level, clipped, NMS within each level (FPN's per-level NMS, one
        batched call: boxes of different levels never suppress each other), then the best `count` of all
        levels kept."""
        boxes, scores, level_ids = [], [], []
        for level, (level_scores, level_deltas, level_anchors) in enumerate(
            zip(objectness, deltas, anchors, strict=True)
        ):
            top, index = level_scores.topk(min(self.params.rpn_pre_nms_top_n, level_scores.shape[1]), dim=1)
            decoded = decode_boxes(level_anchors[index], _gather_boxes(level_deltas, index), RPN_BOX_WEIGHTS)
            boxes.append(decoded)
            scores.append(top)
            level_ids.append(torch.full_like(index, level))
        boxes, scores = clip_boxes(torch.cat(boxes, 1), *size), torch.cat(scores, 1)
        levels = torch.cat(level_ids, 1)
        keep = batched_nms(boxes, scores, levels, self.params.rpn_nms_threshold, _wide_enough(boxes))
        index, valid = _best(scores, keep, count)
        return _gather_boxes(boxes, index), valid

    def _roi_features(self, levels, boxes: torch.Tensor, size: int) -> torch.Tensor:
        """(B, R, C, size, size) RoIAlign features, each box from its FPN level."""
        scales = [1 / stride for stride in FPN_STRIDES[:ROI_LEVELS]]
        return multilevel_roi_align(
            levels[:ROI_LEVELS], boxes, self.roi_levels(boxes), scales, size, self.params.sampling_ratio
        )

    def roi_levels(self, boxes: torch.Tensor) -> torch.Tensor:
        """Pyramid index 0..3 (P2..P5) of each box by FPN's rule: floor(log2(side / (roi_cells x 4)))."""
        side = box_area(boxes).sqrt().clamp_min(1e-6)
        level = torch.floor(torch.log2(side / (self.params.roi_cells * FPN_STRIDES[0])))
        return level.clamp(0, ROI_LEVELS - 1).long()

    def _semantic_logits(self, finest: torch.Tensor, size) -> torch.Tensor:
        logits = self.semantic_head(finest).float()
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    # Inference -----------------------------------------------------------------------------------------

    @property
    def scoring_variants(self) -> tuple[str, ...]:
        """The eval outputs `evaluate` scores apart: the detections alone, and with a semantic head, the
        head alone and both combined (the default output)."""
        return ("detections", "semantic", "combined") if self.semantic_head is not None else ("detections",)

    @contextmanager
    def scoring_variant(self, name: str) -> Iterator[None]:
        """Eval mode returns the named variant inside the block: 'detections' (uniform where none lies),
        'semantic' (the head's log-probabilities) or 'combined' (detections, the head elsewhere)."""
        if name not in self.scoring_variants:
            raise ValueError(f"maskrcnn has no output '{name}' (has: {', '.join(self.scoring_variants)})")
        previous, self.output = self.output, name
        try:
            yield
        finally:
            self.output = previous

    @contextmanager
    def cost_probe(self) -> Iterator[None]:
        """Inside the block every proposal scores as a detection (score threshold 0), so a cost measured on
        an untrained model counts the full set of detections and their masks, as a trained model's."""
        previous, self.probing_cost = self.probing_cost, True
        try:
            yield
        finally:
            self.probing_cost = previous

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) log-scores: detections where their masks lie, the fallback elsewhere."""
        size = tuple(images.shape[-2:])
        levels = self.backbone(images)
        if self.output == "semantic":
            return self._semantic_logits(levels[0], size).log_softmax(dim=1)
        objectness, deltas = self.rpn(levels)
        proposals, valid = self._proposals(
            objectness, deltas, self._anchors(levels), size, self.params.rpn_post_nms_test
        )
        detections = self._detect(levels, proposals, valid, size)
        batch = images.shape[0]
        scores = torch.zeros(batch, self.num_classes, *size, device=images.device)
        if detections is not None:
            scores = detections_to_scores(
                detections.boxes,
                detections.masks,
                detections.scores,
                detections.classes,
                detections.valid,
                num_classes=self.num_classes,
                size=size,
                mask_threshold=self.params.mask_threshold,
            )
        if self.semantic_head is not None and self.output == "combined":
            fallback = self._semantic_logits(levels[0], size).softmax(dim=1)
        else:
            fallback = torch.full_like(scores, 1 / self.num_classes)
        covered = scores.amax(dim=1, keepdim=True) > 0
        shares = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.where(covered, shares, fallback).clamp_min(1e-6).log()

    def _detect(self, levels, proposals, proposal_valid, size) -> Detections | None:
        """Class scores and refined boxes for the proposals, per-class NMS, the best kept, their masks."""
        batch, count = proposals.shape[:2]
        classes = self.num_classes - 1  # foreground classes: the box head's class 0 is "no object"
        logits, deltas = self.box_head(self._roi_features(levels, proposals, BOX_ROI_SIZE).flatten(0, 1))
        scores = logits.softmax(dim=-1).view(batch, count, -1)[..., 1:].reshape(batch, -1)
        deltas = deltas.view(batch, count, -1, 4)[:, :, 1:]
        boxes = decode_boxes(proposals[:, :, None].expand_as(deltas), deltas, HEAD_BOX_WEIGHTS)
        boxes = clip_boxes(boxes.reshape(batch, -1, 4), *size)
        labels = torch.arange(1, classes + 1, device=boxes.device).repeat(batch, count)
        valid = proposal_valid.repeat_interleave(classes, dim=1)
        threshold = 0.0 if self.probing_cost else self.params.score_threshold
        valid = valid & (scores >= threshold) & _wide_enough(boxes)
        if not bool(valid.any()):
            return None
        keep = batched_nms(boxes, scores, labels, self.params.box_nms_threshold, valid)
        index, kept = _best(scores, keep, self.params.detections_per_image)
        slots = int(kept.sum(1).max())  # kept detections come first: drop the empty tail
        index, kept = index[:, :slots], kept[:, :slots]
        boxes, labels = _gather_boxes(boxes, index), labels.gather(1, index)
        mask_logits = self.mask_head(self._roi_features(levels, boxes, MASK_ROI_SIZE).flatten(0, 1)).float()
        picked = labels.flatten()[:, None, None, None].expand(-1, 1, MASK_SIZE, MASK_SIZE)
        masks = mask_logits.gather(1, picked)[:, 0].sigmoid().view(batch, slots, MASK_SIZE, MASK_SIZE)
        return Detections(boxes, scores.gather(1, index), labels, kept, masks)


def _keep_anchors_of_older_checkpoints(module, state_dict, prefix, *_args) -> None:
    """A checkpoint written before anchors were a buffer has none: it keeps the ones its params give."""
    state_dict.setdefault(prefix + "anchor_shapes", module.anchor_shapes)


def build(params: MaskRCNNParams, *, in_channels: int, num_classes: int) -> nn.Module:
    return MaskRCNN(params, in_channels, num_classes)


def fit(model: nn.Module, masks: torch.Tensor) -> dict:
    """The spec's fit step: the anchors fitted to the training masks (see `MaskRCNN.fit_anchors`)."""
    return model.fit_anchors(masks)


@hookimpl
def harness_architectures() -> list[ArchitectureSpec]:
    return [
        ArchitectureSpec(
            name="maskrcnn",
            summary="Mask R-CNN (He 2017) with an FPN, trained on instances cut from the semantic masks; "
            "anchors fitted to them; fallback=semantic adds a semantic head",
            params=MaskRCNNParams,
            revision=1,  # 1: fitted anchors, RPN NMS per level, padded instance path
            build=build,
            fit=fit,
            input_multiple=MULTIPLE,
            instance_based=True,
            compiles=True,
            params_count=628_249,
        )
    ]
