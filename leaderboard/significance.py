"""How the leaderboard shows out-of-fold scores and significance (computed by
`harness.analysis.significance`): the `oof` and `Δ best` cells, the tie mark and the footnotes of rows that
could not be paired with the top row. Rows without these fields (`--no-significance`, no folds) show no
such columns.
"""

from __future__ import annotations

TIE_MARK = "≈"  # the row's 95 % interval includes zero: statistically tied with the top row
NOTE_MARK = "†"
COLUMNS = ("miou_oof", "delta_vs_best", "ci_low", "ci_high", "tied_with_best", "pair_note")


def shows_oof(rows: list[dict]) -> bool:
    return any(row.get("miou_oof") is not None for row in rows)


def shows_delta(rows: list[dict]) -> bool:
    return any("delta_vs_best" in row for row in rows)


def oof_cell(row: dict) -> str:
    value = row.get("miou_oof")
    return "–" if value is None else f"{value:.3f}"


def delta_cell(row: dict, rows: list[dict]) -> str:
    """`best` for the top row, `-0.012 [-0.030, +0.006] ≈` below it, `– †N` for a row that did not pair."""
    if row.get("pair_note"):
        return f"– {NOTE_MARK}{_note_number(row, rows)}"
    if row.get("delta_vs_best") is None:
        return "–"
    if row.get("ci_low") is None:
        return "best"
    tie = f" {TIE_MARK}" if row.get("tied_with_best") else ""
    return f"{row['delta_vs_best']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]{tie}"


def _note_number(row: dict, rows: list[dict]) -> int:
    noted = [r for r in rows if r.get("pair_note")]
    return next(i for i, r in enumerate(noted, start=1) if r is row)


def footnotes(rows: list[dict]) -> list[str]:
    """The lines under a table: what the tie mark means, and why each unpaired row has no interval."""
    if not shows_delta(rows):
        return []
    lines = [
        f"Δ best: paired bootstrap of mIoU(row) − mIoU(top row), 95 % interval, paired by (seed, fold); "
        f"{TIE_MARK}: the interval includes 0 (statistically tied with the top row)."
    ]
    noted = [r for r in rows if r.get("pair_note")]
    lines += [f"{NOTE_MARK}{i} row {r.get('rank')}: {r['pair_note']}" for i, r in enumerate(noted, start=1)]
    return lines
