"""Significance on the leaderboard: each row's paired bootstrap difference to the top row of its dataset.

A row and the top row pair their runs by (seed, fold), as `harness compare` does (its `pair_sides`,
`paired_bootstrap` and checks are reused here); the difference is row − top, so it is negative or zero
below the top, and a row whose 95 % interval includes zero is statistically tied with the top. A row that
cannot be paired (no shared seed and fold, no per-image file, other validation images) gets a note saying
why instead of numbers. `annotate` also sets each group row's out-of-fold score (`harness.analysis.oof`).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.analysis.compare import (
    DEFAULT_RESAMPLES,
    PerImage,
    Side,
    check_pair,
    ignore_index_of,
    load_per_image,
    pair_sides,
    paired_bootstrap,
    run_key,
)
from harness.analysis.oof import oof_miou
from harness.errors import HarnessError
from harness.store import RunStore
from leaderboard.rows import by_dataset

FIELDS = ("delta_vs_best", "ci_low", "ci_high", "tied_with_best", "pair_note")


def side_of(row: dict, runs: dict[str, dict]) -> Side:
    """The runs behind a leaderboard row (a group's runs, or the run of a run row) as a compare `Side`."""
    ids = row.get("run_ids") or [row.get("run_id")]
    members = [runs[i] for i in ids if i in runs]
    kind = "config" if "run_ids" in row else "run"
    return Side(row.get("config_hash") or str(row.get("run_id")), kind, {run_key(r): r for r in members})


def difference(
    top: Side, other: Side, load: Callable[[dict], PerImage], *, resamples: int, seed: int, metric: str
) -> tuple[float, float, float]:
    """(row − top, CI low, CI high) over the pairs of `other` and `top`; `HarnessError` saying why not."""
    pairs = []
    matched = pair_sides(top, other)
    for _, run_top, run_other in matched:
        first, second = load(run_top), load(run_other)
        check_pair(run_top, run_other, first, second)
        pairs.append((first.confusion, second.confusion))
    _, _, point, low, high = paired_bootstrap(
        pairs, resamples=resamples, seed=seed, ignore_index=ignore_index_of(matched[0][1]), metric=metric
    )
    return point, low, high


def annotate(
    store: RunStore,
    rows: list[dict],
    runs: list[dict],
    *,
    metric: str = "an2dl",
    significance: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> list[dict]:
    """Set `miou_oof` on group rows and, with `significance`, the `FIELDS` on every row; returns `rows`."""
    by_id = {run["run_id"]: run for run in runs}
    cache: dict[str, PerImage] = {}

    def load(run: dict) -> PerImage:
        if run["run_id"] not in cache:
            cache[run["run_id"]] = load_per_image(store, run)
        return cache[run["run_id"]]

    for row in rows:
        if "run_ids" in row:
            members = [by_id[i] for i in row["run_ids"] if i in by_id and by_id[i]["status"] == "finished"]
            try:
                row["miou_oof"] = oof_miou(members, load, metric)
            except HarnessError:  # a fold without its per-image file: no out-of-fold score, the rest stands
                row["miou_oof"] = None
    if not significance:
        return rows
    for part in by_dataset(rows).values():
        scored = [row for row in part if row.get("miou") is not None]
        if not scored:
            continue
        top = side_of(scored[0], by_id)
        for row in part:
            row.update(dict.fromkeys(FIELDS))
            if row is scored[0]:
                row.update(delta_vs_best=0.0, tied_with_best=True)  # the top row: no interval to itself
                continue
            if row.get("miou") is None:
                row["pair_note"] = "no score to compare"
                continue
            try:
                point, low, high = difference(
                    top, side_of(row, by_id), load, resamples=resamples, seed=seed, metric=metric
                )
            except HarnessError as exc:
                row["pair_note"] = f"cannot be paired with the top row: {exc}"
                continue
            row.update(delta_vs_best=point, ci_low=low, ci_high=high, tied_with_best=low <= 0 <= high)
    return rows
