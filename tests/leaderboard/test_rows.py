"""Leaderboard rows (leaderboard/rows.py): ranks count within a dataset, groups never mix datasets, the best
variant of each architecture is kept per dataset, and failed rows carry the first line of their error."""

from __future__ import annotations

import json

from leaderboard.rows import best_per_arch, by_dataset, filter_data, first_line, group_rows, leaderboard_rows
from leaderboard.table import render

CLASSES = ["background", "soil", "bedrock", "sand", "big rock"]
MARS, SYNTH = "f9bafd000000", "986ec9100000"


def run(run_id, score, *, data=SYNTH, source="synthetic", arch="unet", config_hash="c" * 16, seed=0, **extra):
    metrics = None if score is None else {"miou_an2dl": score, "miou_fg": score, "iou": {"soil": score}}
    return {
        "run_id": run_id,
        "created": f"2026-01-01T00:00:0{seed}+00:00",
        "status": "finished",
        "arch": arch,
        "loss": "ce",
        "balancer": "none",
        "seed": seed,
        "config_hash": config_hash,
        "config": {"data": {"source": source}},
        "dataset_id": data,
        "metrics": metrics,
        "class_names": CLASSES,
        **extra,
    }


RUNS = [
    run("synth-good", 0.80),
    run("mars-a", 0.40, data=MARS, source="data/ai4mars-an2dl.npz"),
    run("synth-bad", 0.30, arch="segnet", config_hash="d" * 16),
    run("mars-b", 0.60, data=MARS, source="data/ai4mars-an2dl.npz", arch="segnet", config_hash="d" * 16),
]


def test_ranks_count_within_each_dataset_and_datasets_never_interleave():
    rows = leaderboard_rows(RUNS)
    assert [(r["data"], r["rank"], r["run_id"]) for r in rows] == [
        ("synthetic@986ec9", 1, "synth-good"),
        ("synthetic@986ec9", 2, "synth-bad"),
        ("ai4mars-an2dl.npz@f9bafd", 1, "mars-b"),
        ("ai4mars-an2dl.npz@f9bafd", 2, "mars-a"),
    ]
    assert list(by_dataset(rows)) == ["synthetic@986ec9", "ai4mars-an2dl.npz@f9bafd"]


def test_one_config_on_two_datasets_is_two_groups_and_two_bests():
    same = [run("s0", 0.8), run("m0", 0.4, data=MARS, source="m.npz")]  # one config hash, two datasets
    groups = group_rows(leaderboard_rows(same))
    assert [(g["data"], g["n"], g["rank"]) for g in groups] == [
        ("synthetic@986ec9", 1, 1),
        ("m.npz@f9bafd", 1, 1),
    ]
    best = best_per_arch(group_rows(leaderboard_rows(RUNS)))
    assert [(g["data"], g["arch"], g["rank"]) for g in best] == [
        ("synthetic@986ec9", "unet", 1),
        ("synthetic@986ec9", "segnet", 2),
        ("ai4mars-an2dl.npz@f9bafd", "segnet", 1),
        ("ai4mars-an2dl.npz@f9bafd", "unet", 2),
    ]


def test_the_table_and_markdown_split_per_dataset():
    text = render(group_rows(leaderboard_rows(RUNS)), "markdown", CLASSES)
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == [
        "### data synthetic@986ec9: 2 rows, ranked on this data only",
        "### data ai4mars-an2dl.npz@f9bafd: 2 rows, ranked on this data only",
    ]
    single = render(group_rows(leaderboard_rows(RUNS[:1])), "markdown", CLASSES)
    assert "###" not in single  # one dataset: one plain table
    data = json.loads(render(group_rows(leaderboard_rows(RUNS)), "json", CLASSES))
    assert [(d["data"], d["rank"]) for d in data] == [
        ("synthetic@986ec9", 1),
        ("synthetic@986ec9", 2),
        ("ai4mars-an2dl.npz@f9bafd", 1),
        ("ai4mars-an2dl.npz@f9bafd", 2),
    ]


def test_the_data_filter_picks_by_name_file_or_hash():
    assert [r["run_id"] for r in filter_data(RUNS, "ai4mars-an2dl.npz")] == ["mars-a", "mars-b"]
    assert [r["run_id"] for r in filter_data(RUNS, "986ec9")] == ["synth-good", "synth-bad"]
    assert filter_data(RUNS, "nothing.npz") == []


def test_failed_rows_show_their_status_and_the_first_line_of_their_error():
    error = "ValueError: Expected more than 1 value\n  at line 3"
    failed = run("broken", None, status="failed", error=error, config_hash="e" * 16)
    rows = leaderboard_rows([RUNS[0], failed])
    assert rows[1]["error"] == "ValueError: Expected more than 1 value"
    lines = render(rows, "markdown", CLASSES).splitlines()
    assert "| status | error |" in lines[0]
    assert "| failed | ValueError: Expected more than 1 value |" in lines[3]
    assert "| status |" not in render(rows[:1], "markdown", CLASSES)  # all finished: no status columns
    group = group_rows(rows)[1]
    assert (group["status"], group["error"]) == ("failed", "ValueError: Expected more than 1 value")
    assert first_line("\n\n  boom  \nmore") == "boom" and first_line(None) is None
