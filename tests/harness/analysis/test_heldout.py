"""Which images `evaluate` scores (harness/analysis/heldout.py): the run's own rows are found by content
(with its limit), its training split is the one training made, and the note says what was scored."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.analysis.heldout import run_rows, select
from harness.data.dataset import content_id
from harness.data.splits import split
from harness.data.synthetic import synthetic
from harness.errors import HarnessError


def config(limit=None, seed=0, val_fraction=0.25):
    data = SimpleNamespace(clean="none", limit=limit, val_fraction=val_fraction)
    return SimpleNamespace(data=data, seed=seed)


def dataset_id(data, rows):
    return content_id(data.images[rows].numpy(), data.masks[rows].numpy())


def test_the_runs_own_rows_are_found_by_content_with_its_limit():
    data = synthetic(n=12, test_n=0)
    assert list(run_rows(data, dataset_id(data, np.arange(12)), "none", None)) == list(range(12))
    assert list(run_rows(data, dataset_id(data, np.arange(5)), "none", 5)) == list(range(5))
    assert run_rows(data, dataset_id(data, np.arange(5)), "none", None) is None  # not the rows it held
    assert run_rows(data, "", "none", None) is None


def test_by_default_the_training_split_is_left_out_and_all_takes_it_back():
    data = synthetic(n=12, test_n=0)
    record = {"dataset_id": dataset_id(data, np.arange(8))}  # the run held the first 8 (data.limit=8)
    cfg = config(limit=8, seed=3)
    train, val = split(data.masks[:8], 0.25, 3, data.num_classes)
    chosen = select(data, [(record, cfg)])
    assert sorted(chosen.rows) == sorted([*val.tolist(), 8, 9, 10, 11])  # never held: never trained on
    assert chosen.trained_on == len(train) and not set(chosen.rows) & set(train.tolist())
    assert chosen.note.startswith(f"{len(chosen.rows)} of 12 images: the {len(train)} this run trained on")
    every = select(data, [(record, cfg)], include_training=True)
    assert list(every.rows) == list(range(12)) and "(--all)" in every.note
    assert len(select(data, [(record, cfg)], limit=2).rows) == 2


def test_other_data_is_scored_whole_and_a_bad_limit_is_refused():
    data = synthetic(n=6, test_n=0)
    chosen = select(data, [({"dataset_id": "0123456789ab"}, config())])
    assert (
        list(chosen.rows) == list(range(6))
        and chosen.note == "all 6 images (not the data this run trained on)"
    )
    with pytest.raises(HarnessError, match="--limit must be at least 1"):
        select(data, [({}, config())], limit=0)
    assert torch.equal(data.images, synthetic(n=6, test_n=0).images)  # nothing changed in place


def test_an_ensemble_leaves_out_every_image_any_member_trained_on():
    data = synthetic(n=16, test_n=0)
    record = {"dataset_id": dataset_id(data, np.arange(16))}
    members = [(record, config(seed=0)), (record, config(seed=1))]  # two seeds: two different splits
    trained = set()
    for _, cfg in members:
        train, _ = split(data.masks, 0.25, cfg.seed, data.num_classes)
        trained |= set(train.tolist())
    chosen = select(data, members)
    assert sorted(chosen.rows) == sorted(set(range(16)) - trained) and chosen.trained_on == len(trained)
    assert len(trained) > len(split(data.masks, 0.25, 0, data.num_classes)[0])  # the union is larger
    assert chosen.note.startswith(f"{len(chosen.rows)} of 16 images: the {len(trained)} any of the 2 runs")
