"""harness.training.prepare: what is built and checked before a run is recorded."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.config import build_config, resolve
from harness.data.splits import split
from harness.errors import ConfigError, DataError
from harness.plugins import load_plugins
from harness.training.distributed import World
from harness.training.prepare import augmentation_of, check_distributed, load_data, prepare, prepare_on_device
from tests_support import TINY_CONFIG


def _resolved(*settings: str, config=None):
    config, params = build_config(config or TINY_CONFIG, settings=list(settings))
    return resolve(config, load_plugins(), params)


SPY = """
from harness import hookimpl
from harness.specs import BalancedSplit, BalancerSpec, NoParams

SEEN = []

def build(params):
    def balance(images, masks, *, num_classes, ignore_index, seed):
        SEEN.append(images.clone())
        return BalancedSplit(images, masks)
    return balance

@hookimpl
def harness_balancers():
    return [BalancerSpec(name="spy", summary="records what it is given", build=build)]
"""


def test_balancers_see_the_training_split_only(third_party):
    third_party({"spy": SPY})
    registry = load_plugins()
    config, cli = build_config({**copy.deepcopy(TINY_CONFIG), "balancer": {"name": "spy"}})
    prep = prepare(resolve(config, registry, cli))
    import fake_spy

    (seen,) = fake_spy.SEEN
    train_idx, val_idx = split(prep.data.masks, 0.2, 0, 5)
    assert torch.equal(seen, prep.data.images[train_idx])
    seen_rows = {bytes(row.numpy()) for row in seen}
    assert not any(bytes(row.numpy()) in seen_rows for row in prep.val_images)

    # a balancer that adds pixels (copy-paste) leaves validation exactly as loaded
    config, cli = build_config({**copy.deepcopy(TINY_CONFIG), "balancer": {"name": "copypaste"}})
    pasted = prepare(resolve(config, registry, cli))
    assert len(pasted.train_images) > len(train_idx)
    assert torch.equal(pasted.val_masks, pasted.data.masks[val_idx])
    assert torch.equal(pasted.val_images, pasted.data.images[val_idx])


def test_prepare_splits_balances_and_builds_everything_before_the_run():
    resolved = _resolved("data.val_fraction=0.25")
    prep = prepare(resolved)
    assert len(prep.train_images) + len(prep.val_images) == len(prep.data) == 24
    assert torch.equal(prep.val_images, prep.data.images[prep.val_indices])
    assert prep.params > 0 and prep.device.type == "cpu" and prep.scaler is None
    assert prep.augmentation == augmentation_of(resolved) and prep.augmentation.distance_maps is None
    assert prep.train_distances is None and prep.val_distances is None
    boundary = prepare(_resolved("loss.name=boundary"))  # a loss that needs distance maps gets them
    assert boundary.train_distances.shape[:2] == (len(boundary.train_images), 5)
    assert boundary.val_distances.shape[0] == len(boundary.val_images)


def test_load_data_limits_the_rows():
    assert len(load_data(_resolved("data.limit=10"))) == 10


def test_prepare_on_device_puts_model_and_data_on_the_device():
    prep = prepare_on_device(_resolved("train.channels_last=true"))
    weight = next(p for p in prep.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert prep.train_images.device == prep.device and prep.val_masks.device == prep.device


def test_a_split_with_nothing_to_learn_from_is_refused_before_anything_is_built(tmp_path):
    pairs = np.zeros((20, 2, 16, 32), dtype=np.uint8)
    pairs[:, 0] = np.random.default_rng(0).integers(0, 256, (20, 16, 32))  # images; every mask background
    np.savez(tmp_path / "blank.npz", training_set=pairs)
    config = {**copy.deepcopy(TINY_CONFIG), "data": {"source": str(tmp_path / "blank.npz")}}
    with pytest.raises(DataError, match="every pixel of the training split is class 0"):
        prepare(_resolved(config=config))


def test_settings_that_cannot_work_with_the_ranks_are_refused_before_building():
    check_distributed(_resolved(), World(size=2, device=torch.device("cpu")))  # 8 splits in two
    with pytest.raises(ConfigError, match="batch_size 8 is the global batch"):
        check_distributed(_resolved(), World(size=3, device=torch.device("cpu")))
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        check_distributed(_resolved("train.sync_bn=true"), World(size=2, device=torch.device("cpu")))
