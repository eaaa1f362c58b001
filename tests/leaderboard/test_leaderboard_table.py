"""Leaderboard ranking and the four output formats."""

import csv
import io
import json
import math

import pytest
from rich.console import Console

from leaderboard.table import (
    best_per_arch,
    format_duration,
    group_rows,
    leaderboard_frame,
    leaderboard_rows,
    render,
)

CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]


def run(run_id: str, an2dl, fg, *, status="finished", created="2025-01-01T00:00:00+00:00", **extra) -> dict:
    iou = {"background": None, "soil": 0.7, "bedrock": 0.6, "sand": 0.5, "big rock": an2dl}
    metrics = None if an2dl is None and fg is None else {"miou_an2dl": an2dl, "miou_fg": fg, "iou": iou}
    base = {
        "run_id": run_id,
        "created": created,
        "status": status,
        "arch": "unet",
        "loss": "ce",
        "balancer": "none",
        "seed": 0,
        "device": "cpu",
        "params": 31_040_000,
        "gflops": 12.345,
        "wall_time": 252.0,
        "train_img_s": 88.25,
        "epochs": 10,
        "metrics": metrics,
        "class_names": CLASSES,
    }
    return {**base, **extra}


RUNS = [
    run("low-an2dl-high-fg", 0.40, 0.90),
    run("high-an2dl-low-fg", 0.80, 0.30, arch="deeplab"),
    run("mid", 0.60, 0.50, loss="dice"),
]


def ids(rows):
    return [r["run_id"] for r in rows]


def test_ranking_follows_the_chosen_metric() -> None:
    by_an2dl = leaderboard_rows(RUNS)
    assert ids(by_an2dl) == ["high-an2dl-low-fg", "mid", "low-an2dl-high-fg"]
    assert [r["rank"] for r in by_an2dl] == [1, 2, 3]
    assert [r["miou"] for r in by_an2dl] == [0.80, 0.60, 0.40]
    by_fg = leaderboard_rows(RUNS, metric="fg")
    assert ids(by_fg) == ["low-an2dl-high-fg", "mid", "high-an2dl-low-fg"]
    assert [r["miou"] for r in by_fg] == [0.90, 0.50, 0.30]
    assert by_fg[0]["miou_an2dl"] == 0.40


def test_row_fields() -> None:
    row = leaderboard_rows(RUNS)[0]
    keys = {"rank", "run_id", "arch", "loss", "balancer", "seed", "status", "miou", "miou_an2dl", "miou_fg"}
    keys |= {"iou", "params", "gflops", "wall_time", "train_img_s", "epochs", "device", "created"}
    assert keys <= set(row)
    assert row["iou"]["soil"] == 0.7
    assert (row["arch"], row["params"], row["wall_time"]) == ("deeplab", 31_040_000, 252.0)


def test_runs_without_metric_rank_last_and_ties_keep_older_first() -> None:
    runs = [
        run("failed", None, None, status="failed"),
        run("nan", float("nan"), float("nan")),
        run("newer", 0.5, 0.5, created="2025-02-01T00:00:00+00:00"),
        run("older", 0.5, 0.5, created="2025-01-01T00:00:00+00:00"),
    ]
    rows = leaderboard_rows(runs)
    assert ids(rows)[:2] == ["older", "newer"]
    assert set(ids(rows)[2:]) == {"failed", "nan"}
    assert all(r["miou"] is None for r in rows[2:])


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        leaderboard_rows(RUNS, metric="accuracy")


def test_markdown_columns_and_numbers() -> None:
    text = render(leaderboard_rows(RUNS), "markdown", CLASSES)
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "#",
        "run",
        "label",
        "data",
        "mIoU",
        "soil",
        "bedrock",
        "sand",
        "big rock",
        "params (M)",
        "GFLOPs",
        "time",
        "img/s",
    ]
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    first = [c.strip() for c in lines[2].strip("|").split("|")]
    assert first == [
        "1",
        "high-an2dl-low-fg",
        "deeplab · ce · none",  # no registry nor run defaults given: every plugin by name
        "–",
        "0.800",
        "0.700",
        "0.600",
        "0.500",
        "0.800",
        "31.04",
        "12.35",
        "4m12s",
        "88.2",
    ]
    assert len(lines) == 2 + len(RUNS)


def test_none_renders_as_dash() -> None:
    rows = leaderboard_rows([run("failed", None, None, status="failed", params=None, wall_time=None)])
    cells = [c.strip() for c in render(rows, "markdown", CLASSES).splitlines()[2].strip("|").split("|")]
    assert cells[4] == "–" and cells[5:7] == ["failed", ""]  # a run that did not finish shows its status
    assert cells[7:12] == ["–"] * 5
    assert cells[13] == "–"


def test_markdown_escapes_pipes() -> None:
    text = render(leaderboard_rows([run("a|b", 0.5, 0.5)]), "markdown", CLASSES)
    assert "a\\|b" in text.splitlines()[2]


def test_per_class_columns_come_from_iou_keys() -> None:
    rows = leaderboard_rows([run("r", 0.5, 0.5)])
    rows[0]["iou"] = {"soil": 0.1, "crater": 0.2}
    header = render(rows, "markdown", CLASSES).splitlines()[0]
    assert "| soil | crater |" in header
    assert "bedrock" not in header
    assert "background" not in header


def test_csv_header_and_values() -> None:
    text = render(leaderboard_rows(RUNS), "csv", CLASSES)
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["run_id"] for r in records] == ["high-an2dl-low-fg", "mid", "low-an2dl-high-fg"]
    fields = text.splitlines()[0].split(",")
    assert fields[:9] == ["rank", "run_id", "config", "arch", "loss", "balancer", "seed", "status", "miou"]
    assert {"iou_soil", "iou_bedrock", "iou_sand", "iou_big rock"} <= set(fields)
    assert "iou_background" not in fields
    assert float(records[0]["iou_soil"]) == 0.7
    assert float(records[0]["miou"]) == 0.8
    assert "\r" not in text


def test_csv_none_is_empty() -> None:
    text = render(leaderboard_rows([run("f", None, None, status="failed")]), "csv", CLASSES)
    record = next(csv.DictReader(io.StringIO(text)))
    assert record["miou"] == ""
    assert record["status"] == "failed"


def test_json_keys_and_nulls() -> None:
    rows = leaderboard_rows([*RUNS, run("nan", float("nan"), None, gflops=float("nan"))])
    data = json.loads(render(rows, "json", CLASSES))
    assert len(data) == 4
    for key in ("run_id", "arch", "loss", "balancer", "seed", "miou", "iou", "params", "status"):
        assert key in data[0], key
    assert data[0]["run_id"] == "high-an2dl-low-fg"
    assert data[0]["iou"]["soil"] == 0.7
    assert data[0]["iou"]["background"] is None
    assert data[-1]["miou"] is None
    assert data[-1]["gflops"] is None
    assert data[-1]["iou"]["big rock"] is None


def test_rich_table_prints_to_console() -> None:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    assert render(leaderboard_rows(RUNS), "table", CLASSES, console=console) is None
    out = console.file.getvalue()
    for text in ("mIoU", "big rock", "high-an2dl-low-fg", "0.800", "31.04", "4m12s", "img/s"):
        assert text in out, text
    assert "background" not in out
    assert out.index("high-an2dl-low-fg") < out.index("mid") < out.index("low-an2dl-high-fg")


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        render(leaderboard_rows(RUNS), "xml", CLASSES)


def test_empty_rows_render() -> None:
    assert render([], "markdown", CLASSES).count("\n") == 2
    assert render([], "csv", CLASSES).startswith("rank,run_id")
    assert json.loads(render([], "json", CLASSES)) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (0, "0s"), (42.4, "42s"), (252, "4m12s"), (3599, "59m59s"), (3900, "1h05m")],
)
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_frame_has_scalar_and_iou_columns() -> None:
    frame = leaderboard_frame(leaderboard_rows(RUNS))
    assert list(frame["run_id"]) == ["high-an2dl-low-fg", "mid", "low-an2dl-high-fg"]
    for column in ("rank", "miou", "params", "iou_soil", "iou_big rock", "wall_time"):
        assert column in frame.columns, column
    assert frame.loc[0, "iou_soil"] == 0.7
    assert math.isnan(frame.loc[0, "iou_background"])
    assert "iou" not in frame.columns
    assert str(frame["params"].dtype) == "Int64"


def test_frame_of_no_rows() -> None:
    frame = leaderboard_frame([])
    assert frame.empty
    assert "miou" in frame.columns


def seeded(config: str, seed: int, score, **extra) -> dict:
    return run(f"{config}-s{seed}", score, score, config_hash=config * 8, seed=seed, **extra)


GROUPED = [
    seeded("a", 0, 0.50),
    seeded("a", 1, 0.60),
    seeded("a", 2, 0.70),
    seeded("b", 0, 0.64, arch="deeplab"),
    seeded("c", 0, 0.40, arch="deeplab", loss="dice"),
    seeded("c", 1, None, arch="deeplab", loss="dice", status="failed"),
]


def test_groups_summarise_seeds_with_mean_std_and_n() -> None:
    groups = group_rows(leaderboard_rows(GROUPED))
    assert [g["config"] for g in groups] == ["bbbbbbbb", "aaaaaaaa", "cccccccc"]
    b, a, c = groups
    assert (a["n"], a["runs"], a["seeds"]) == (3, 3, [0, 1, 2])
    assert a["miou_mean"] == pytest.approx(0.60)
    assert a["miou_std"] == pytest.approx(0.10)  # sample std of 0.5, 0.6, 0.7
    assert b["n"] == 1 and b["miou_std"] is None
    assert (c["n"], c["runs"]) == (1, 2)  # the failed run counts as a run, not as a score
    assert a["iou"]["big rock"] == pytest.approx(0.60)
    assert [g["rank"] for g in groups] == [1, 2, 3]


def test_group_json_rows_carry_mean_std_n() -> None:
    data = json.loads(render(group_rows(leaderboard_rows(GROUPED)), "json", CLASSES))
    assert {"miou_mean", "miou_std", "n", "config", "run_ids"} <= set(data[0])
    assert data[1]["n"] == 3 and data[1]["miou_std"] == pytest.approx(0.1)


def test_group_markdown_shows_plus_minus_and_n() -> None:
    text = render(group_rows(leaderboard_rows(GROUPED)), "markdown", CLASSES)
    header = text.splitlines()[0]
    assert header.startswith("| # | config | label | data | mIoU | n |") and "| run |" not in header
    assert "0.600 ± 0.100" in text


def test_best_per_arch_keeps_one_row_per_architecture() -> None:
    best = best_per_arch(group_rows(leaderboard_rows(GROUPED)))
    assert [(g["arch"], g["config"]) for g in best] == [("deeplab", "bbbbbbbb"), ("unet", "aaaaaaaa")]
    assert [g["rank"] for g in best] == [1, 2]


def test_group_frame_and_csv() -> None:
    groups = group_rows(leaderboard_rows(GROUPED))
    frame = leaderboard_frame(groups)
    assert {"miou_mean", "miou_std", "n", "iou_soil"} <= set(frame.columns)
    assert str(frame["n"].dtype) == "Int64"
    assert render(groups, "csv", CLASSES).startswith("rank,config,config_hash,arch")
