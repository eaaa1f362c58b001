"""What `predict`, `evaluate` and `export` score with: one recorded run, or an ensemble of several, with
optional test-time augmentation.

Each name given is a run id (or a unique prefix of one) or a configuration hash (or prefix), which stands
for all of that configuration's finished runs (its seeds and folds). One run is used as it was trained;
several are an `Ensemble` of their probabilities. `--tta` wraps either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.config import Resolved, RunConfig
from harness.data.dataset import SegmentationData
from harness.data.folds import run_split
from harness.errors import HarnessError
from harness.inference.device import eval_batch_size, pick_amp_dtype, pick_device
from harness.inference.ensemble import RAW, Ensemble, Member, multiple_of
from harness.inference.metrics import SegmentationMetrics, metrics_from_confusion
from harness.inference.scoring import Normalisation, predict_masks, score
from harness.inference.tta import describe, with_tta
from harness.store import RunNotFound, RunStore
from harness.training.prepare import load_data


def expand(names: list[str], run_store: RunStore) -> list[dict[str, Any]]:
    """The run records the names stand for: a run id (or unique prefix), else every finished run of a
    configuration hash (or prefix), oldest first; each run once."""
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            found = [run_store.get_run(name)]
        except RunNotFound as missing:
            found = [
                r
                for r in reversed(run_store.list_runs(status="finished"))
                if name and r["config_hash"].startswith(name)
            ]
            if not found:  # the store's own message, with its did-you-mean for run ids
                raise missing from None
        records.update((r["run_id"], r) for r in found)
    return list(records.values())


@dataclass
class Predictor:
    """A ready model (one run, or an ensemble; with TTA or not) and what scoring needs around it."""

    run_ids: list[str]
    model: nn.Module
    norm: Normalisation
    multiple: int
    config: RunConfig  # the first run's
    class_names: tuple[str, ...]
    tta: str
    weights: list[float] | None
    device: torch.device = torch.device("cpu")
    amp: torch.dtype | None = None
    # (record, config) of each run: which images they trained on (evaluate leaves those out)
    runs: list[tuple[dict[str, Any], RunConfig]] = field(default_factory=list)
    # the one run's own model, which may score its parts apart (`scoring_variants`); None for an ensemble
    single: nn.Module | None = None

    @property
    def scoring_variants(self) -> tuple[str, ...]:
        return tuple(getattr(self.single, "scoring_variants", ()))

    def scoring_variant(self, name: str) -> Any:
        """The context under which the model scores only its part `name` (see `scoring_variants`)."""
        return self.single.scoring_variant(name)

    def to(self, device: str) -> Predictor:
        """Move to `device` ("auto", "cpu", ...) with the first run's mixed-precision setting."""
        self.device = pick_device(device)
        self.model.to(self.device)
        self.amp = pick_amp_dtype(self.device, self.config.train.amp)
        return self

    def tta_line(self, height: int, width: int) -> str:
        return describe(self.tta, height, width)

    def _common(self) -> dict[str, Any]:
        return dict(
            norm=self.norm,
            multiple=self.multiple,
            ignore_index=self.config.data.ignore_index,
            device=self.device,
            batch_size=eval_batch_size(self.device, self.config.train.eval_batch_size),
            amp_dtype=self.amp,
        )

    def masks(self, images: torch.Tensor) -> torch.Tensor:
        """(N,H,W) uint8 images -> (N,H,W) uint8 predicted classes."""
        return predict_masks(self.model, images, **self._common())

    def score(
        self, images: torch.Tensor, masks: torch.Tensor, on_batch: Callable[[int], None] | None = None
    ) -> tuple[SegmentationMetrics, torch.Tensor]:
        """Metrics over all images and the per-image (N,K,K) confusion matrices; `on_batch(images)` after
        each batch (a progress bar's advance)."""
        metrics, _, per_image = score(
            self.model, images, masks, num_classes=self.config.data.num_classes, per_image=True,
            on_batch=on_batch, **self._common(),
        )  # fmt: skip
        return metrics, per_image

    def score_groups(self, images: list[np.ndarray], masks: list[np.ndarray]) -> SegmentationMetrics:
        """Metrics over images of several sizes: each size scored as one batch, the confusions summed."""
        total = None
        for shape in sorted({image.shape for image in images}):
            rows = [i for i, image in enumerate(images) if image.shape == shape]
            stacked = torch.from_numpy(np.stack([images[i] for i in rows]))
            target = torch.from_numpy(np.stack([masks[i] for i in rows]))
            _, per_image = self.score(stacked, target)
            total = per_image.sum(0) if total is None else total + per_image.sum(0)
        return metrics_from_confusion(total.cpu(), self.config.data.ignore_index)

    def masks_groups(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Masks for images of several sizes (padded to the multiple and cropped back), in order."""
        out: list[np.ndarray | None] = [None] * len(images)
        for shape in sorted({image.shape for image in images}):
            rows = [i for i, image in enumerate(images) if image.shape == shape]
            predicted = self.masks(torch.from_numpy(np.stack([images[i] for i in rows]))).numpy()
            for row, mask in zip(rows, predicted, strict=True):
                out[row] = mask
        return out  # type: ignore[return-value]


def handling(record: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """What runs of one ensemble must share: the classes, their names and the class never predicted."""
    return {
        "num_classes": config.data.num_classes,
        "class names": list(record.get("class_names") or []),
        "ignore_index": config.data.ignore_index,
    }


def combine(loaded: list[Any], *, tta: str = "none", weights: list[float] | None = None) -> Predictor:
    """A Predictor from loaded runs (each with .record, .resolved, .model, .norm, as `harness.load_run`
    gives): the run itself when there is one, else their ensemble; under `tta`."""
    if weights is not None and len(weights) != len(loaded):
        ids = ", ".join(run.record["run_id"] for run in loaded)
        raise HarnessError(
            f"--weights gives {len(weights)} weights for {len(loaded)} runs ({ids}); give one per run"
        )
    members = [
        Member(
            run.record["run_id"], run.model, run.norm, run.resolved.multiple,
            handling(run.record, run.resolved.config),
        )
        for run in loaded
    ]  # fmt: skip
    if len(members) == 1 and weights is None:
        model, norm, multiple = members[0].model, members[0].norm, members[0].multiple
    else:
        model, norm, multiple = Ensemble(members, weights), RAW, multiple_of(members)
    first = loaded[0]
    return Predictor(
        run_ids=[m.name for m in members],
        model=with_tta(model, tta),
        norm=norm,
        multiple=multiple,
        config=first.resolved.config,
        class_names=tuple(first.record.get("class_names") or ()),
        tta=tta,
        weights=weights,
        runs=[(run.record, run.resolved.config) for run in loaded],
        single=members[0].model if len(members) == 1 and weights is None else None,
    )


def validation_data(resolved: Resolved) -> SegmentationData:
    """The run's validation images and masks: its dataset split again with its seed (`run_split` depends
    only on the data, its settings and the seed, so this is the split or fold the run validated on)."""
    data = load_data(resolved)
    cfg = resolved.config
    _, val_idx = run_split(data, cfg.data, cfg.seed)
    return data.subset(torch.as_tensor(val_idx))
