"""The sections of a run config (data, augment, log, train) and the strictness they all share.

`harness.config` assembles them into RunConfig and re-exports them; they live here so that each
section can grow without the assembly (settings paths, `--set`, plugin resolution) growing with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness.augment.vocabulary import AugmentPipeline, pipeline_from_config
from harness.parsing import did_you_mean, takes_bool


class Strict(BaseModel):
    # inf and NaN pass every bound check pydantic makes (inf > 0), so a run would start with lr=inf.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _bools_are_not_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads `epochs = true` as 1; a boolean where a number belongs is a mistake, not a count.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and not takes_bool(field.annotation):
            raise PydanticCustomError("bool_number", "Input should be a number, not true/false")
        return value


class PluginChoice(Strict):
    name: str = Field(description="Registered plugin name (see `harness list`).")
    params: dict[str, Any] = Field(default_factory=dict, description="The plugin's own parameters.")


class DataConfig(Strict):
    source: str = Field("synthetic", description="A dataset name (see `harness list`) or an AN2DL .npz path.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of a named dataset.")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of images held out for validation.")
    limit: int | None = Field(None, ge=2, description="Use only the first N training images.")
    ignore_index: int | None = Field(
        0, ge=0, description="Class ignored by loss and metric, never predicted."
    )
    num_classes: int = Field(5, ge=2, le=255, description="Number of classes including background.")
    clean: Literal["none", "outliers"] = Field(
        "none", description="outliers: drop images that `harness data inspect` flags (shared alien masks)."
    )
    folds: int | None = Field(
        None,
        ge=2,
        le=100,
        description="K-fold cross-validation instead of val_fraction (stratified, group-aware).",
    )
    fold: int | None = Field(
        None,
        ge=0,
        description="Which fold (0..folds-1) this run validates on; a run's, not the config hash's.",
    )
    groups: Literal["none", "file", "auto"] = Field(
        "file",
        description="Groups no split straddles: file (the npz's `groups` array, if any), auto (also the "
        "neighbour pairs `harness data inspect` finds) or none.",
    )

    @model_validator(mode="after")
    def _ignored_class_exists(self) -> DataConfig:
        if self.ignore_index is not None and self.ignore_index >= self.num_classes:
            top = self.num_classes - 1
            raise ValueError(f"ignore_index {self.ignore_index} is not a class of 0..{top} (num_classes)")
        if self.fold is not None and self.folds is None:
            raise ValueError(f"fold {self.fold} needs folds (--folds K) to say how many folds there are")
        if self.fold is not None and self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is not one of 0..{self.folds - 1} (folds = {self.folds})")
        return self


class AugmentConfig(Strict):
    preset: str = Field("flips", description="Preset: none, flips, standard or strong (see README).")
    steps: list[dict[str, Any]] | None = Field(
        None,
        description='Custom pipeline instead of the preset: [{name="affine", p=0.7, params={...}}, ...].',
    )
    strong_steps: list[dict[str, Any]] | None = Field(
        None,
        description="Pipeline for rows a balancer marks (oversampled copies); default: a stronger preset.",
    )

    @model_validator(mode="after")
    def _valid_pipeline(self) -> AugmentConfig:
        self.pipeline()  # a typo in a transform fails here, before anything runs
        return self

    def pipeline(self) -> AugmentPipeline:
        return pipeline_from_config(self.preset, self.steps, self.strong_steps)


# The built-in loggers (plugins/loggers/): `--log` and log.loggers accept these names.
LOGGERS = ("csv", "mlflow", "tensorboard")


class LogConfig(Strict):
    """Where a run is logged besides the store. Not part of the config hash: logging never changes a run."""

    loggers: list[str] = Field(
        default_factory=list, description="Loggers to write to: csv, mlflow, tensorboard (none by default)."
    )
    dir: str | None = Field(
        None,
        description="Log directory: DIR/<run_id>/ (csv, tensorboard) and DIR/mlruns; default the run's "
        "directory and the store's.",
    )
    experiment: str | None = Field(None, description="MLflow experiment name; default harness.")

    @field_validator("loggers")
    @classmethod
    def _known_loggers(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in LOGGERS:
                raise PydanticCustomError(
                    "logger",
                    "unknown logger '{name}'{hint} (choices: {choices})",
                    {"name": name, "hint": did_you_mean(name, LOGGERS), "choices": ", ".join(LOGGERS)},
                )
        return list(dict.fromkeys(names))  # each logger once, in the order given


class TrainConfig(Strict):
    epochs: int = Field(40, ge=1, description="Maximum number of epochs.")
    max_minutes: float | None = Field(None, gt=0, description="Time budget; stops cleanly and still records.")
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    eval_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Batch size for validation and prediction; auto: 32 on CPU (cache-sized batches run "
        "fastest there), 512 on CUDA.",
    )
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    plateau_patience: int = Field(3, ge=0, description="Epochs without mIoU gain before the LR is cut.")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="LR multiplier on a plateau.")
    min_lr: float = Field(1e-5, ge=0, description="LR floor for the plateau schedule.")
    schedule: Literal["plateau", "onecycle"] = Field(
        "plateau",
        description="plateau: warm-up then reduce-on-plateau. onecycle: warm up to lr, then cosine to ~0 "
        "by the end of the run: the epoch limit or --max-minutes, whichever comes first.",
    )
    onecycle_pct: float = Field(0.25, gt=0, lt=1, description="onecycle: share of the run spent warming up.")
    val_tta: Literal["none", "flips", "d4"] = Field(
        "none",
        description="Test-time augmentation for validation (and so for the best epoch and early stopping): "
        "flips or d4 (90° turns on square frames only), softmax probabilities averaged; none by default.",
    )
    early_stop_patience: int = Field(8, ge=1, description="Epochs without mIoU gain before stopping.")
    ema: bool = Field(
        False,
        description="Keep an exponential moving average of the weights; validation, checkpoints and "
        "predict use it (decay per step min(ema_decay, (1+t)/(10+t)), BatchNorm statistics averaged too).",
    )
    ema_decay: float = Field(0.999, gt=0, lt=1, description="train.ema: the largest decay per step.")
    deep_supervision_weights: list[float] | None = Field(
        None, description="Loss weight per deep-supervision output, coarse to final (None: equal)."
    )
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm (None: no clipping).")
    amp: bool = Field(True, description="Mixed precision (bf16) where the device supports it.")
    channels_last: bool = Field(True, description="Use the channels-last memory format.")
    compile: bool = Field(False, description="torch.compile the model.")
    sync_bn: bool = Field(
        False,
        description="Under torchrun on CUDA: SyncBatchNorm (statistics over every rank's share of the "
        "batch, as in one process); no effect in a single process.",
    )
    device: str = Field("auto", description="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps.")

    @field_validator("device")
    @classmethod
    def _device_name(cls, name: str) -> str:
        # Only the spelling is checked here (a sweep plans on one machine and may run on another);
        # whether the device exists is checked when a run starts.
        if name != "auto":
            try:
                device = torch.device(name)
            except RuntimeError:
                raise PydanticCustomError(
                    "device", "not a device name; choose auto, cpu, cuda, cuda:N or mps"
                ) from None
            # Devices torch can name but the harness cannot train on: meta (no data), cpu:1 (one CPU).
            if device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
                raise PydanticCustomError(
                    "device", "not a device a run can train on; choose auto, cpu, cuda, cuda:N or mps"
                )
        return name
