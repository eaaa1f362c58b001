"""plugins.loggers.tensorboard: a 3-epoch run read back with TensorBoard's own EventAccumulator (scalars per
step, the overlay image at the best epoch, the hparams), and the overlay's colours."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from PIL import Image  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

from harness import api  # noqa: E402
from harness.data.sheets import palette  # noqa: E402
from plugins.loggers.common import flatten  # noqa: E402
from plugins.loggers.tensorboard import ALPHA, BEST_TAG, OVERLAY_TAG, SCALARS, overlay  # noqa: E402
from tests_support import tiny  # noqa: E402


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    store = tmp_path_factory.mktemp("tb") / "runs" / "harness.sqlite"
    result = api.run(tiny(epochs=3) | {"log": {"loggers": ["tensorboard"]}}, store=store)
    assert result.status == "finished"
    accumulator = EventAccumulator(str(store.parent / result.run_id / "tb"), size_guidance={"images": 0})
    accumulator.Reload()
    return result, accumulator


def test_every_scalar_is_logged_once_per_epoch(events):
    result, accumulator = events
    tags = set(accumulator.Tags()["scalars"])
    per_class = {f"val_iou/{name}" for name in ("soil", "bedrock", "sand", "big rock")}
    assert set(SCALARS) | per_class | {BEST_TAG} <= tags
    assert "val_iou/background" not in tags  # the ignored class has no IoU
    for tag in (*SCALARS, *per_class):
        assert [e.step for e in accumulator.Scalars(tag)] == [1, 2, 3], tag
    for event, epoch in zip(accumulator.Scalars("val_miou"), result.history, strict=True):
        assert event.value == pytest.approx(epoch["val_miou"])


def test_the_overlay_is_written_at_each_improved_epoch(events):
    result, accumulator = events
    images = accumulator.Images(OVERLAY_TAG)
    improved, best = [], -1.0
    for epoch in result.history:  # the epochs that raised the best mIoU
        if epoch["val_miou"] > best:
            improved, best = [*improved, epoch["epoch"]], epoch["val_miou"]
    assert result.best_epoch == images[-1].step and [i.step for i in images] == improved
    rows = min(8, 24 - int(24 * 0.8))  # the fixed sample: up to 8 validation images of 64x128
    assert (images[-1].width, images[-1].height) == (3 * 128, rows * 64)
    decoded = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert decoded.shape == (rows * 64, 3 * 128, 3)


def test_the_resolved_config_is_the_hparams_with_the_best_miou(events):
    result, accumulator = events
    content = accumulator.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = data.session_start_info.hparams
    assert hparams["arch.name"].string_value == "unet"
    assert hparams["arch.params.width"].number_value == 4
    assert set(hparams) == set(flatten(result.config)) | {"status"}
    assert hparams["status"].string_value == "finished"
    (best,) = accumulator.Scalars(BEST_TAG)
    assert best.value == pytest.approx(result.miou)


def test_the_overlay_colours_truth_and_prediction_with_the_sheet_palette():
    images = np.full((2, 4, 6), 100, np.uint8)
    masks = np.zeros((2, 4, 6), np.uint8)
    masks[:, :, 3:] = 2
    predictions = np.ones((2, 4, 6), np.uint8)
    picture = overlay(images, masks, predictions, 5)
    assert picture.shape == (8, 18, 3) and picture.dtype == np.uint8
    colours = palette(5) * 255
    assert (picture[:, :6] == 100).all()  # the image, as it is
    expected_truth = np.round((1 - ALPHA) * 100 + ALPHA * colours[2])
    assert (picture[0, 6 + 4] == expected_truth).all()
    assert (picture[5, 12 + 1] == np.round((1 - ALPHA) * 100 + ALPHA * colours[1])).all()
