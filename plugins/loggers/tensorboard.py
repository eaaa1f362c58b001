"""The `tensorboard` logger (`--log tensorboard`), through `torch.utils.tensorboard` (the `tensorboard`
package, in the `log` extra).

Writes to `runs/<run_id>/tb` (or `<log.dir>/<run_id>`): per epoch the scalars train_loss, val_loss,
val_miou, val_miou_fg, val_iou/<class>, lr and img_s; at each improved epoch an overlay image
`best/overlay` (rows of image | truth | prediction, classes coloured as in the contact sheets); at the
run's end the resolved config (flattened) as hparams with the best mIoU as `hparam/best_miou`.
`tensorboard --logdir runs` shows every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import hookimpl
from harness.data.sheets import palette
from harness.specs import RunInfo
from plugins.loggers.common import RunLogger, Sessions, flatten, log_settings, numbers, run_log_dir

SCALARS = ("train_loss", "val_loss", "val_miou", "val_miou_fg", "lr", "img_s")
OVERLAY_TAG = "best/overlay"
BEST_TAG = "hparam/best_miou"
ALPHA = 0.45  # how much of a coloured mask covers the image


def log_dir(run: RunInfo):
    return run_log_dir(run) if log_settings(run).get("dir") else run.run_dir / "tb"


def overlay(images: np.ndarray, masks: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(N*H, 3*W, 3) uint8: one row per image, the image, its truth and the prediction over it."""
    count = max(num_classes, int(max(masks.max(), predictions.max())) + 1)
    colours = (palette(count) * 255).astype(np.float32)
    gray = np.repeat(images[..., None].astype(np.float32), 3, axis=-1)
    truth = (1 - ALPHA) * gray + ALPHA * colours[masks]
    predicted = (1 - ALPHA) * gray + ALPHA * colours[predictions]
    rows = np.concatenate([gray, truth, predicted], axis=2)  # (N, H, 3W, 3)
    return rows.reshape(-1, *rows.shape[2:]).round().clip(0, 255).astype(np.uint8)


def hparam_value(value: Any) -> Any:
    """TensorBoard's hparams take bool, int, float or str: anything else (None) as text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardLogger(RunLogger):
    def __init__(self, run: RunInfo):
        super().__init__(run)
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(log_dir(run)))
        self.num_classes = int(run.config.get("data", {}).get("num_classes", 5))

    def epoch(self, epoch: int, values: dict[str, Any]) -> None:
        scalars = numbers({k: v for k, v in values.items() if k in SCALARS or k == "val_iou"})
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=epoch)

    def best(self, epoch: int, sample) -> None:
        images, masks, predictions = sample()
        picture = overlay(images, masks, predictions, self.num_classes)
        self.writer.add_image(OVERLAY_TAG, picture, global_step=epoch, dataformats="HWC")

    def end(self, status: str, metrics: dict[str, Any] | None) -> None:
        from torch.utils.tensorboard.summary import hparams

        try:
            best = (metrics or {}).get("miou_an2dl")
            params = {k: hparam_value(v) for k, v in flatten(self.run.config).items()}
            params["status"] = status
            results = {BEST_TAG: float("nan") if best is None else float(best)}
            # Written into this run's own event file (SummaryWriter.add_hparams would open a second run).
            for summary in hparams(params, results):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_scalar(BEST_TAG, results[BEST_TAG])
        finally:
            self.writer.close()

    def close(self) -> None:
        self.writer.close()


SESSIONS = Sessions("tensorboard", TensorBoardLogger)


@hookimpl
def harness_run_start(run):
    SESSIONS.start(run)


@hookimpl
def harness_epoch_end(run, epoch, values):
    SESSIONS.call(run, "epoch", epoch, values)


@hookimpl
def harness_best_epoch(run, epoch, sample):
    SESSIONS.call(run, "best", epoch, sample)


@hookimpl
def harness_run_end(run, status, metrics):
    SESSIONS.end(run, status, metrics)
