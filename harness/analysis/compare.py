"""Is B really better than A? A paired bootstrap over validation images of the mIoU difference B − A.

Each side is a run (id or unique prefix) or a config group (a prefix of a config hash: every finished run
of that configuration, one per seed and fold). Two runs pair when they were validated on the very same
images, which runs of the same data, seed and fold are; groups pair their runs by (seed, fold). A bootstrap
replicate resamples image positions with replacement inside each pair — the same positions for both sides,
which is what makes it paired: an image that is hard for A is usually hard for B too, and that shared
difficulty cancels — recomputes each side's mIoU from the summed per-image confusion matrices (IoU is not a
per-image mean, so the matrices are summed, never the scores), and averages the per-pair differences.

The per-image matrices are the best epoch's, written by the training loop to ``val_per_image.npz``.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.store import RunStore
from harness.training.checkpoint_checks import check_per_image
from harness.training.checkpoints import PER_IMAGE_NAME
from leaderboard.labels import Labeller, data_label

METRICS = ("an2dl", "fg")
DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a single run, or the finished runs of one config (newest per seed and
    fold)."""

    key: str  # the run id, or the full config hash
    kind: str  # "run" or "config"
    runs: dict[tuple[int, int | None], dict]  # (seed, fold) -> run dict; fold None without folds

    @property
    def label(self) -> str:
        if self.kind == "run":
            return self.key
        return f"config {self.key[:8]} ({len(self.runs)} finished run{'s' * (len(self.runs) != 1)})"


@dataclass(frozen=True)
class PerImage:
    """A run's validation rows and their (N, K, K) confusion matrices (rows = truth)."""

    indices: np.ndarray
    confusion: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """The outcome of ``compare``; ``difference`` and the interval are B − A (positive: B is better)."""

    a: str
    b: str
    a_kind: str
    b_kind: str
    metric: str
    pairs: int
    seeds: list[int]
    images: int
    a_miou: float
    b_miou: float
    difference: float
    ci_low: float
    ci_high: float
    resamples: int
    seed: int
    folds: list[int | None] | None = None  # the fold of each pair, beside `seeds` (None: no folds)
    a_label: str = ""
    b_label: str = ""
    a_data: str = ""
    b_data: str = ""

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`harness compare --format json`)."""
        return {
            "a": self.a,
            "b": self.b,
            "a_kind": self.a_kind,
            "b_kind": self.b_kind,
            "direction": "b - a",
            "pairs": self.pairs,
            "seeds": self.seeds,
            "folds": self.folds,
            "images": self.images,
            "a_miou": self.a_miou,
            "b_miou": self.b_miou,
            "difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": CONFIDENCE,
            "excludes_zero": self.excludes_zero,
            "resamples": self.resamples,
            "seed": self.seed,
            "metric": self.metric,
            "a_label": self.a_label,
            "b_label": self.b_label,
            "a_data": self.a_data,
            "b_data": self.b_data,
        }


def miou_batch(matrices: np.ndarray, ignore_index: int | None = 0, metric: str = "an2dl") -> np.ndarray:
    """mIoU of each (K, K) matrix in a (..., K, K) stack, exactly as ``metrics_from_confusion`` defines it.

    The ignored truth row is zeroed; a class with TP+FP+FN = 0 is left out of the mean (``an2dl``), and
    ``fg`` also leaves out the ignored class. NaN where no class is defined.
    """
    if metric not in METRICS:
        raise HarnessError(f"unknown metric {metric!r}; choose {' or '.join(METRICS)}")
    m = np.asarray(matrices, dtype=np.float64)
    k = m.shape[-1]
    in_range = ignore_index is not None and 0 <= ignore_index < k
    if in_range:
        m = m.copy()
        m[..., ignore_index, :] = 0
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    denom = m.sum(-2) + m.sum(-1) - tp
    defined = denom > 0
    if metric == "fg" and in_range:
        defined[..., ignore_index] = False
    iou = np.divide(tp, denom, out=np.zeros_like(tp), where=defined)
    count = defined.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, iou.sum(-1) / count, math.nan)


def bootstrap_differences(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    *,
    resamples: int,
    seed: int,
    ignore_index: int | None = 0,
    metric: str = "an2dl",
) -> np.ndarray:
    """(resamples,) mean over pairs of mIoU(B) − mIoU(A), each replicate resampling images within each pair.

    ``pairs`` holds (A, B) per-image confusion stacks of one shape (N, K, K) per pair. Resampling N
    positions with replacement is the same as drawing how often each image is taken, so a replicate's summed
    matrix is a (R, N) count matrix times the (N, K*K) per-image matrices: one BLAS product per pair instead
    of an (R, N, K, K) gather.
    """
    if resamples < 1:
        raise HarnessError(f"--resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for conf_a, conf_b in pairs:
        n, k = conf_a.shape[0], conf_a.shape[-1]
        positions = rng.integers(0, n, size=(resamples, n))
        offsets = (np.arange(resamples) * n)[:, None]
        counts = np.bincount((positions + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)
        counts = counts.astype(np.float64)  # exact: counts times pixel totals stay far below 2**53
        sums_a = (counts @ conf_a.reshape(n, k * k).astype(np.float64)).reshape(resamples, k, k)
        sums_b = (counts @ conf_b.reshape(n, k * k).astype(np.float64)).reshape(resamples, k, k)
        total += miou_batch(sums_b, ignore_index, metric) - miou_batch(sums_a, ignore_index, metric)
    return total / len(pairs)


def paired_bootstrap(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    ignore_index: int | None = 0,
    metric: str = "an2dl",
) -> tuple[float, float, float, float, float]:
    """(mean mIoU A, mean mIoU B, point estimate B − A, CI low, CI high) at 95 %, percentile interval."""
    if not pairs:
        raise HarnessError("nothing to compare: no pairs of runs")
    a_scores = [float(miou_batch(a.sum(0), ignore_index, metric)) for a, _ in pairs]
    b_scores = [float(miou_batch(b.sum(0), ignore_index, metric)) for _, b in pairs]
    a_mean, b_mean = float(np.mean(a_scores)), float(np.mean(b_scores))
    point = float(np.mean(np.subtract(b_scores, a_scores)))
    if not math.isfinite(point):
        raise HarnessError("no class has a defined IoU on these validation images (no scored pixels?)")
    diffs = bootstrap_differences(
        pairs, resamples=resamples, seed=seed, ignore_index=ignore_index, metric=metric
    )
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(diffs, [tail, 100 - tail])
    return a_mean, b_mean, point, float(low), float(high)


def resolve_side(store: RunStore, key: str) -> Side:
    """A run id (or unique prefix) or a config-hash prefix; refuses unknown and ambiguous keys."""
    runs = store.list_runs()
    exact = [r for r in runs if r["run_id"] == key]
    if exact:
        return Side(key, "run", {run_key(exact[0]): exact[0]})
    by_id = [r for r in runs if key and r["run_id"].startswith(key)]
    hashes = sorted({r["config_hash"] for r in runs if key and r["config_hash"].startswith(key)})
    if len(by_id) + len(hashes) > 1:
        shown = [r["run_id"] for r in by_id[:3]] + [f"config {h}" for h in hashes[:3]]
        more = ", ..." if len(by_id) > 3 or len(hashes) > 3 else ""
        raise HarnessError(f"{key!r} is ambiguous ({', '.join(shown)}{more}); give more characters")
    if by_id:
        return Side(by_id[0]["run_id"], "run", {run_key(by_id[0]): by_id[0]})
    if not hashes:
        raise HarnessError(f"no run id or config hash starts with {key!r} in {store.path}")
    config_hash = hashes[0]
    group: dict[tuple[int, int | None], dict] = {}
    for run in runs:  # newest first, so a re-run of a seed and fold replaces the older one
        if run["config_hash"] == config_hash and run["status"] == "finished":
            group.setdefault(run_key(run), run)
    if not group:
        raise HarnessError(f"config {config_hash} has no finished runs in {store.path}")
    return Side(config_hash, "config", group)


def run_fold(run: dict) -> int | None:
    """The fold a run validated on: its store column, else its config's data.fold (None: no folds)."""
    if run.get("fold") is not None:
        return int(run["fold"])
    data = (run.get("config") or {}).get("data") if isinstance(run.get("config"), dict) else None
    return data.get("fold") if isinstance(data, dict) else None


def run_key(run: dict) -> tuple[int, int | None]:
    """(seed, fold): what pairs two runs of two configurations."""
    return int(run["seed"]), run_fold(run)


def key_order(key: tuple[int, int | None]) -> tuple[int, int]:
    """A sort key for (seed, fold) keys, runs without folds first."""
    return key[0], -1 if key[1] is None else key[1]


def load_per_image(store: RunStore, run: dict) -> PerImage:
    """The run's ``val_per_image.npz``, checked; refuses a run that has none with the reason."""
    path = store.run_dir(run["run_id"]) / PER_IMAGE_NAME
    if not path.is_file():
        raise HarnessError(
            f"run {run['run_id']} ({run['status']}) has no {PER_IMAGE_NAME} in {path.parent}: it failed "
            "before validating or was recorded before per-image results were kept; rerun it to compare it"
        )
    try:
        with np.load(path, allow_pickle=False) as data:  # never unpickle: the file is only data
            indices, confusion = np.asarray(data["indices"]), np.asarray(data["confusion"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or not a zip
        raise HarnessError(f"{path}: not a readable per-image file ({exc})") from None
    shape_ok = confusion.ndim == 3 and confusion.shape[1] == confusion.shape[2]
    if indices.ndim != 1 or not shape_ok or len(indices) != len(confusion) or len(indices) == 0:
        raise HarnessError(
            f"{path}: expected indices (N,) and confusion (N, K, K), "
            f"got {indices.shape} and {confusion.shape}"
        )
    check_per_image(path, indices, confusion, len(run["class_names"]) if run.get("class_names") else None)
    return PerImage(indices.astype(np.int64), confusion.astype(np.int64))


def ignore_index_of(run: dict) -> int | None:
    data = (run.get("config") or {}).get("data") or {}
    return data.get("ignore_index", 0)


def pair_sides(a: Side, b: Side) -> list[tuple[tuple[int, int | None], dict, dict]]:
    """((seed, fold), run A, run B) per pair: two single runs always pair (images are checked later);
    otherwise runs pair by (seed, fold), and only those both sides have count."""
    if a.kind == "run" and b.kind == "run":
        (key_a, run_a), (_, run_b) = next(iter(a.runs.items())), next(iter(b.runs.items()))
        return [(key_a, run_a, run_b)]
    shared = sorted(set(a.runs) & set(b.runs), key=key_order)
    if not shared:
        raise HarnessError(
            f"{a.label} (seeds {_seeds(a)}) and {b.label} (seeds {_seeds(b)}) share no seed and fold; "
            "run both with the same seeds (and folds) to compare them"
        )
    return [(key, a.runs[key], b.runs[key]) for key in shared]


def key_text(key: tuple[int, int | None]) -> str:
    """`3` for seed 3 without folds, `3/f2` for seed 3 fold 2."""
    return str(key[0]) if key[1] is None else f"{key[0]}/f{key[1]}"


def _seeds(side: Side) -> str:
    return ", ".join(key_text(k) for k in sorted(side.runs, key=key_order))


def check_pair(run_a: dict, run_b: dict, first: PerImage, second: PerImage) -> None:
    if first.confusion.shape[1:] != second.confusion.shape[1:]:
        raise HarnessError(
            f"runs {run_a['run_id']} and {run_b['run_id']} have different class counts "
            f"({first.confusion.shape[1]} vs {second.confusion.shape[1]}); they cannot be compared"
        )
    if not np.array_equal(first.indices, second.indices):
        raise HarnessError(
            f"runs {run_a['run_id']} and {run_b['run_id']} were validated on different images "
            f"({len(first.indices)} vs {len(second.indices)} images; different data, split or seed), so "
            "they cannot be paired; compare runs of the same data and seed"
        )
    if ignore_index_of(run_a) != ignore_index_of(run_b):
        raise HarnessError(
            f"runs {run_a['run_id']} and {run_b['run_id']} ignore different classes "
            f"({ignore_index_of(run_a)} vs {ignore_index_of(run_b)}); their mIoUs do not compare"
        )


def compare(
    store: RunStore,
    a: str,
    b: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    metric: str = "an2dl",
    labeller: Labeller | None = None,
) -> Comparison:
    """Paired bootstrap of mIoU(B) − mIoU(A) for two runs or config groups of ``store``; ``labeller`` names
    each side's variant (`leaderboard.labels`), its data label comes from the run records."""
    if metric not in METRICS:
        raise HarnessError(f"unknown metric {metric!r}; choose {' or '.join(METRICS)}")
    if resamples < 1:
        raise HarnessError(f"--resamples must be at least 1, got {resamples}")
    side_a, side_b = resolve_side(store, a), resolve_side(store, b)
    matched = pair_sides(side_a, side_b)
    pairs = []
    for _, run_a, run_b in matched:
        first, second = load_per_image(store, run_a), load_per_image(store, run_b)
        check_pair(run_a, run_b, first, second)
        pairs.append((first.confusion, second.confusion))
    ignore = ignore_index_of(matched[0][1])
    a_miou, b_miou, point, low, high = paired_bootstrap(
        pairs, resamples=resamples, seed=seed, ignore_index=ignore, metric=metric
    )
    return Comparison(
        a=side_a.key,
        b=side_b.key,
        a_kind=side_a.kind,
        b_kind=side_b.kind,
        metric=metric,
        pairs=len(pairs),
        seeds=[key[0] for key, _, _ in matched],
        folds=[key[1] for key, _, _ in matched],
        images=sum(len(conf) for conf, _ in pairs),
        a_miou=a_miou,
        b_miou=b_miou,
        difference=point,
        ci_low=low,
        ci_high=high,
        resamples=resamples,
        seed=seed,
        **_names("a", side_a, labeller or Labeller()),
        **_names("b", side_b, labeller or Labeller()),
    )


def _names(prefix: str, side: Side, labeller: Labeller) -> dict[str, str]:
    """`<prefix>_label` and `<prefix>_data` of a side: its variant and data, as the leaderboard shows them."""
    run = next(iter(side.runs.values()))
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    names = {section: run.get(section) for section in ("arch", "loss", "balancer")}
    source = (config.get("data") or {}).get("source") if isinstance(config.get("data"), dict) else None
    return {
        f"{prefix}_label": labeller.variant(config, names).label,
        f"{prefix}_data": data_label(source, run.get("dataset_id")),
    }


def compare_store(path: str | Path, a: str, b: str, **options: Any) -> Comparison:
    """``compare`` on the store file at ``path`` (which must exist)."""
    with RunStore(path, create=False) as store:
        return compare(store, a, b, **options)
