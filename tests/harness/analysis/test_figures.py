"""The report's figures: what each one draws (read back from the matplotlib figure it saved) and that it
comes back as PNG bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from harness.analysis.figures import (
    HISTORY_KEYS,
    class_iou_bars,
    confusion_figure,
    learning_curves,
    overlay_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["background", "soil", "bedrock", "sand", "big rock"]


@pytest.fixture
def drawn(monkeypatch):
    """The figures saved during the test, in order (each is still saved to PNG as usual)."""
    figures: list[Figure] = []
    savefig = Figure.savefig

    def spy(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def _ticks(labels) -> list[str]:
    return [label.get_text() for label in labels]


def _rows():
    return [
        {"rank": 1, "run_id": "aaa", "miou": 0.6, "iou": {"soil": 0.7, "bedrock": 0.5}},
        {"rank": 2, "run_id": "bbb", "miou": 0.4, "iou": {"soil": 0.3, "bedrock": None}},
    ]


def test_learning_curves_plot_train_and_validation_per_run(drawn):
    histories = {
        "aaa": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "val_miou": 0.2, "val_miou_fg": 0.3},
            {"epoch": 2, "train_loss": 0.5, "val_loss": None, "val_miou": 0.4, "val_miou_fg": 0.5},
        ],
        "bbb": [],  # a run with no history still gets its (empty) lines
    }
    png = learning_curves(_rows(), histories, "fg")
    assert png.startswith(PNG_MAGIC)
    loss_ax, miou_ax = drawn[-1].axes
    assert len(loss_ax.lines) == 4 and len(miou_ax.lines) == 2  # train + validation loss per run
    assert list(miou_ax.lines[0].get_ydata()) == [0.3, 0.5]  # fg reads val_miou_fg
    assert math.isnan(loss_ax.lines[1].get_ydata()[1])  # a missing value is a gap, not a crash
    assert _ticks(drawn[-1].legends[0].get_texts()) == [
        "#1 aaa",
        "#2 bbb",
    ]  # outside the axes: covers no curve
    assert miou_ax.get_legend() is None and loss_ax.get_legend() is None
    assert "fg" in miou_ax.get_title()


def test_losses_of_different_kinds_are_drawn_relative_to_their_first_epoch(drawn):
    rows = [
        {**row, "loss": loss, "legend": f"#{row['rank']} {loss}"}
        for row, loss in zip(_rows(), ("ce", "dice"), strict=True)
    ]
    history = [
        {"epoch": 1, "train_loss": 4.0, "val_loss": 2.0},
        {"epoch": 2, "train_loss": 2.0, "val_loss": 1.0},
    ]
    learning_curves(rows, {"aaa": history, "bbb": history}, "an2dl")
    loss_ax = drawn[-1].axes[0]
    assert list(loss_ax.lines[0].get_ydata()) == [1.0, 0.5] and list(loss_ax.lines[1].get_ydata()) == [
        0.5,
        0.25,
    ]
    assert "first train loss" in loss_ax.get_title()
    assert _ticks(drawn[-1].legends[0].get_texts()) == ["#1 ce", "#2 dice"]  # the rows' own legend text
    learning_curves([{**row, "loss": "ce"} for row in rows], {"aaa": history}, "an2dl")
    assert list(drawn[-1].axes[0].lines[0].get_ydata()) == [4.0, 2.0]  # one kind of loss: as it is


def test_every_metric_has_a_history_key():
    assert HISTORY_KEYS == {"an2dl": "val_miou", "fg": "val_miou_fg"}


def test_class_iou_bars_one_group_per_class_plus_miou(drawn):
    png = class_iou_bars(_rows(), ["soil", "bedrock"])
    assert png.startswith(PNG_MAGIC)
    ax = drawn[-1].axes[0]
    assert _ticks(ax.get_xticklabels()) == ["soil", "bedrock", "mIoU"]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights[:3] == [0.7, 0.5, 0.6] and heights[3] == 0.3 and math.isnan(heights[4])


def _confusion(predicted_background: int = 0) -> np.ndarray:
    matrix = np.zeros((5, 5), dtype=np.int64)
    matrix[1, 1], matrix[1, 2] = 30, 10  # soil: 75 % right, 25 % called bedrock
    matrix[2, 2], matrix[3, 3], matrix[4, 4] = 20, 5, 1
    matrix[3, 0] = predicted_background
    return matrix


def test_confusion_drops_the_ignored_row_and_column_and_normalises_rows(drawn):
    png = confusion_figure(_confusion(), NAMES, 0, "the title")
    assert png.startswith(PNG_MAGIC)
    ax = drawn[-1].axes[0]
    assert _ticks(ax.get_xticklabels()) == NAMES[1:]
    assert _ticks(ax.get_yticklabels()) == [
        "soil (40 px)",
        "bedrock (20 px)",
        "sand (5 px)",
        "big rock (1 px)",
    ]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:2] == ["75%", "25%"] and ax.get_title() == "the title"


def test_confusion_keeps_the_ignored_column_when_it_is_predicted(drawn):
    confusion_figure(_confusion(predicted_background=5), NAMES, 0, "t")
    ax = drawn[-1].axes[0]
    assert _ticks(ax.get_xticklabels()) == NAMES  # the sand row's 50 % at background stays visible
    assert "50%" in [t.get_text() for t in ax.texts]


def test_confusion_without_an_ignored_class_shows_every_row_and_names_unknown_classes(drawn):
    confusion_figure(_confusion(), NAMES[:4], None, "t")
    ax = drawn[-1].axes[0]
    assert _ticks(ax.get_xticklabels()) == [*NAMES[:4], "class 4"]
    assert _ticks(ax.get_yticklabels())[0] == "background (0 px)"


def test_overlay_has_image_truth_and_prediction_per_row(drawn):
    images = np.zeros((2, 4, 8), dtype=np.uint8)
    truth = np.ones((2, 4, 8), dtype=np.uint8)
    preds = np.full((2, 4, 8), 6, dtype=np.uint8)  # a class beyond the names still gets a colour
    png = overlay_figure(images, truth, preds, ["#3", "#9"], NAMES)
    assert png.startswith(PNG_MAGIC)
    figure = drawn[-1]
    assert len(figure.axes) == 6
    assert [figure.axes[i].get_title(loc="left") for i in (0, 3)] == ["#3", "#9"]
    legend = _ticks(figure.legends[0].get_texts())
    assert legend == [*NAMES, "class 5", "class 6"]


def test_overlay_of_a_single_image():
    one = np.zeros((1, 4, 8), dtype=np.uint8)
    assert overlay_figure(one, one, one, ["#0"], NAMES).startswith(PNG_MAGIC)
