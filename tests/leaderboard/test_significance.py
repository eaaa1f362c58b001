"""leaderboard.significance: the oof and Δ best cells, the tie mark and the footnotes, in every format."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from leaderboard.significance import NOTE_MARK, TIE_MARK, delta_cell, footnotes
from leaderboard.table import render

NOTE = "cannot be paired: no shared seed"


def _rows() -> list[dict]:
    base = {"label": "unet", "data": "mars", "n": 5, "runs": 5, "miou_std": 0.01, "iou": {"soil": 0.5}}
    base |= {"params": 1e6, "gflops": 1.0, "wall_time": 10.0, "train_img_s": 5.0, "status": "finished"}
    return [
        {**base, "rank": 1, "config": "aaaa", "miou": 0.60, "miou_oof": 0.61, "delta_vs_best": 0.0,
         "ci_low": None, "ci_high": None, "tied_with_best": True, "pair_note": None},
        {**base, "rank": 2, "config": "bbbb", "miou": 0.59, "miou_oof": 0.58, "delta_vs_best": -0.01,
         "ci_low": -0.03, "ci_high": 0.01, "tied_with_best": True, "pair_note": None},
        {**base, "rank": 3, "config": "cccc", "miou": 0.50, "miou_oof": None, "delta_vs_best": -0.1,
         "ci_low": -0.12, "ci_high": -0.08, "tied_with_best": False, "pair_note": None},
        {**base, "rank": 4, "config": "dddd", "miou": 0.40, "miou_oof": None, "delta_vs_best": None,
         "ci_low": None, "ci_high": None, "tied_with_best": None, "pair_note": NOTE},
    ]  # fmt: skip


def test_cells_mark_the_top_the_ties_and_the_unpaired():
    rows = _rows()
    assert [delta_cell(r, rows) for r in rows] == [
        "best",
        f"-0.010 [-0.030, +0.010] {TIE_MARK}",
        "-0.100 [-0.120, -0.080]",
        f"– {NOTE_MARK}1",
    ]
    notes = footnotes(rows)
    assert TIE_MARK in notes[0] and notes[1] == f"{NOTE_MARK}1 row 4: cannot be paired: no shared seed"
    assert footnotes([{k: v for k, v in r.items() if k != "delta_vs_best"} for r in rows]) == []


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_every_table_format_shows_oof_delta_and_the_footnote(fmt):
    console = Console(width=250, record=True)
    text = render(_rows(), fmt, ["background", "soil"], console=console) or console.export_text()
    for needle in ("oof", "Δ best", "0.610", f"{TIE_MARK}", "no shared seed"):
        assert needle in text, (fmt, needle)


def test_json_and_csv_carry_the_fields():
    records = json.loads(render(_rows(), "json", ["soil"]))
    assert [r["tied_with_best"] for r in records] == [True, True, False, None]
    assert records[1]["miou_oof"] == 0.58 and records[2]["ci_high"] == -0.08
    table = list(csv.DictReader(io.StringIO(render(_rows(), "csv", ["soil"]))))
    assert table[1]["delta_vs_best"] == "-0.01" and table[3]["pair_note"].startswith("cannot")


def test_rows_without_the_fields_show_no_such_columns():
    rows = [{k: v for k, v in r.items() if k not in ("miou_oof", "delta_vs_best")} for r in _rows()]
    text = render(rows, "markdown", ["soil"])
    assert "oof" not in text and "Δ best" not in text
