"""Every hook a harness plugin can implement. This file and `harness/specs.py` are the whole plugin API.

A plugin is a module (or object) with functions decorated by `harness.hookimpl` whose names match the
hooks below. Built-in plugins are listed in `harness.plugins.DEFAULT_PLUGINS`; a third-party package
declares its module under the entry-point group "harness" in its own pyproject.toml:

    [project.entry-points.harness]
    my_blocks = "my_package.blocks"

Spec hooks return lists of specs; all plugins' lists are gathered, validated when plugins load, and a
duplicate name is reported naming both providers. Lifecycle hooks observe a run (logging to CSV,
TensorBoard, MLflow...) and must not change it; their return values are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from harness.specs import ArchitectureSpec, BalancerSpec, BlockSpec, DatasetSpec, LossSpec, RunInfo

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def harness_architectures() -> list[ArchitectureSpec]:
    """Return the segmentation architectures this plugin provides (may be empty).

    Called once when plugins load. Each `ArchitectureSpec.build(params, *, in_channels, num_classes)`
    returns an `nn.Module` mapping (B, in_channels, H, W) to (B, num_classes, H, W) logits. An optional
    `ArchitectureSpec.fit(model, masks)` adapts a model built for a run to its training masks (maskrcnn's
    anchors); `ArchitectureSpec`'s docstring says when it is called and what it may change.
    """


@hookspec
def harness_blocks() -> list[BlockSpec]:
    """Return the building blocks (encoder / bottleneck / decoder / skip) this plugin provides.

    Called once when plugins load. `BlockSpec.build(params, in_channels, out_channels, *, norm)` returns
    an `nn.Module` that keeps the spatial size; down- and up-sampling stay the architecture's job. A
    skip-fusion block (role "skip") is built with (skip_channels, gating_channels) and called as
    `module(skip, gating)`; `BlockSpec`'s docstring defines both signatures. Architectures that compose
    blocks (unet, unetpp) use any registered block by name: `--arch-param encoder_block=NAME`.
    A block is a "stage" (it stands alone in a stage) or an "attachment" (`BlockSpec.placement`: it
    must follow a stage in a '+' chain, e.g. `conv+gc`).
    """


@hookspec
def harness_losses() -> list[LossSpec]:
    """Return the losses this plugin provides.

    Called once when plugins load. `LossSpec.build(params, *, num_classes, ignore_index, class_weights)`
    returns an `nn.Module` whose forward is `(logits, target) -> scalar` and ignores `ignore_index`.
    """


@hookspec
def harness_balancers() -> list[BalancerSpec]:
    """Return the class-balancing strategies this plugin provides.

    Called once when plugins load. `BalancerSpec.build(params)` returns a callable
    `(images, masks, *, num_classes, ignore_index, seed) -> BalancedSplit` that sees only the
    training split.
    """


@hookspec
def harness_datasets() -> list[DatasetSpec]:
    """Return named datasets (usable as `--data NAME`) this plugin provides.

    Called once when plugins load. `DatasetSpec.build(params)` returns a
    `harness.data.dataset.SegmentationData`.
    """


@hookspec
def harness_run_start(run: RunInfo) -> None:
    """Called once a run is recorded in the store as 'running', before the first epoch.

    `run` carries run_id, the resolved config (dict), the run directory and the device.
    """


@hookspec
def harness_epoch_end(run: RunInfo, epoch: int, values: dict[str, Any]) -> None:
    """Called after each epoch's validation with that epoch's numbers.

    `run` is the run (as in harness_run_start); `epoch` counts from 1.
    `values` holds train_loss, val_loss, val_miou (an2dl), val_miou_fg, val_iou, lr, seconds and img_s.
    val_iou is a dict: class name -> that class's IoU (None where undefined, as for the ignored class).
    The one way a lifecycle hook may change a run: raising `harness.training.state.Pruned` here stops it
    after this epoch, recorded 'pruned' with its best epoch and checkpoints (how `harness tune` prunes).
    """


@hookspec
def harness_best_epoch(run: RunInfo, epoch: int, sample: Callable[[], tuple[Any, Any, Any]]) -> None:
    """Called after an epoch that improved the best validation mIoU (the one `best.pt` now holds).

    `run` is the run (as in harness_run_start); `epoch` counts from 1. `sample()` returns
    `(images, masks, predictions)`: uint8 numpy arrays of shape (N, H, W) for a fixed sample of up to 8
    validation images (the same rows every epoch), their true masks and the model's predicted classes.
    The predictions are computed on the first call of `sample()` and shared by every plugin, so a plugin
    that does not want them costs nothing; call it within this hook (training goes on after it). The loop
    calls this hook only when some plugin implements it.
    """


@hookspec
def harness_run_end(run: RunInfo, status: str, metrics: dict[str, Any] | None) -> None:
    """Called once when a run ends, whatever its status (finished, failed, interrupted, diverged, pruned).

    `metrics` is the best epoch's validation metrics (None when the run failed before any).
    """
