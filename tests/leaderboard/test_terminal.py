"""The terminal table (leaderboard/terminal.py) at the width it has: at 80, 120 and 200 columns the rank,
the id, the label, mIoU ± std, n and the data stay whole; per-class IoU, params, GFLOPs, time and img/s
make way from the right, and a footnote names them."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from leaderboard.table import group_rows, leaderboard_rows, render
from leaderboard.terminal import Column, fit, table_width

CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]
OPTIONAL = ["soil", "bedrock", "sand", "big rock", "params (M)", "GFLOPs", "time", "img/s"]


def run(run_id, score, seed, label, config_hash, dataset_id="986ec910574c") -> dict:
    iou = {"background": None, "soil": 0.71, "bedrock": 0.62, "sand": 0.53, "big rock": score}
    return {
        "run_id": run_id,
        "created": f"2026-01-0{seed + 1}T00:00:00+00:00",
        "status": "finished",
        "arch": "unet",
        "loss": "ce",
        "balancer": "none",
        "seed": seed,
        "config_hash": config_hash,
        "config": {"data": {"source": "synthetic"}},
        "dataset_id": dataset_id,
        "params": 1_940_000,
        "gflops": 0.75,
        "wall_time": 125.0,
        "train_img_s": 61.2,
        "epochs": 3,
        "metrics": {"miou_an2dl": score, "miou_fg": score, "iou": iou},
        "class_names": CLASSES,
        "label": label,
    }


def rows(by_run: bool = False):
    runs = [
        run("20261201-135746-unet-8963b5", 0.61, 0, "unet[bottleneck=se+gc]", "a" * 16),
        run("20261201-135804-unet-10145f", 0.55, 1, "unet[bottleneck=se+gc]", "a" * 16),
        run("20261201-135824-unet-1dbd7f", 0.52, 0, "unet", "b" * 16),
    ]
    ranked = leaderboard_rows(runs)
    for row, source in zip(ranked, sorted(runs, key=lambda r: -r["metrics"]["miou_an2dl"]), strict=True):
        row["label"] = source["label"]  # as a registry-backed labeller would name them
    return ranked if by_run else group_rows(ranked)


def printed(table_rows, width: int, wide: bool = False) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    render(table_rows, "table", CLASSES, console=console, wide=wide)
    return console.file.getvalue()


def cells(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")
    ]


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_identity_columns_stay_whole_at_every_width(width):
    text = printed(rows(), width)
    assert max(len(line) for line in text.splitlines() if line.startswith(("│", "┃"))) <= width
    first, second = cells(text)[:2]
    assert first[:6] == ["1", "aaaaaaaa", "unet[bottleneck=se+gc]", "synthetic@986ec9", "0.580 ± 0.042", "2"]
    assert second[:6] == ["2", "bbbbbbbb", "unet", "synthetic@986ec9", "0.520", "1"]


def test_optional_columns_make_way_from_the_right_with_a_footnote():
    narrow, middle, wide = printed(rows(), 80), printed(rows(), 120), printed(rows(), 200)
    assert "soil" not in narrow.splitlines()[1]
    assert "not shown at 80 columns: " + ", ".join(OPTIONAL) in " ".join(narrow.split())  # the footnote wraps
    assert max(len(line) for line in narrow.splitlines()) <= 80
    header = middle.splitlines()[1]
    assert "big rock" in header and "img/s" not in header
    assert "not shown at 120 columns: params (M), GFLOPs, time, img/s (--wide" in middle
    assert "img/s" in wide.splitlines()[1] and "not shown" not in wide
    assert "img/s" in printed(rows(), 80, wide=True).splitlines()[1]  # --wide: every column, however narrow


def test_run_ids_stay_whole_at_80_columns_and_a_long_label_wraps_without_losing_a_character():
    text = printed(rows(by_run=True), 80)
    table = cells(text)
    assert table[0][1] == "20261201-135746-unet-8963b5" and table[0][4] == "0.610"
    label_lines = []
    for row in table:
        if row[0] == "2":
            break
        label_lines.append(row[2])
    assert "".join(label_lines).replace(" ", "") == "unet[bottleneck=se+gc]"


def test_the_fit_keeps_kept_columns_even_when_nothing_fits():
    columns = [
        Column("#", ["1"], right=True),
        Column("label", ["x" * 50], wrap=True),
        Column("soil", ["0.5"], False),
    ]
    shown, dropped = fit(columns, 20)
    assert [c.header for c in shown] == ["#", "label"] and dropped == ["soil"]
    assert table_width(columns) == 1 + (1 + 3) + (50 + 3) + (4 + 3)
    assert fit(columns, None) == (columns, [])


def test_a_label_with_brackets_is_text_not_markup():
    text = printed(rows(), 200)
    assert "unet[bottleneck=se+gc]" in text
