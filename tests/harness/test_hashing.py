"""harness/hashing.py: what enters the config hash and what is left out."""

from __future__ import annotations

from harness.config import build_config
from harness.hashing import config_hash


def config(**changes):
    return build_config(changes)[0]


def test_seed_log_and_device_are_left_out_and_a_setting_is_not():
    base = config_hash(config())
    assert config_hash(config(seed=7)) == base
    assert config_hash(config(train={"device": "cpu"})) == base
    assert config_hash(config(train={"lr": 0.5})) != base


def test_a_revision_enters_the_hash_and_revision_zero_leaves_it_as_it_was():
    cfg = config()
    assert config_hash(cfg, {}) == config_hash(cfg) == config_hash(cfg, None)
    revised = config_hash(cfg, {"architecture:unet": 1})
    assert revised != config_hash(cfg) and revised != config_hash(cfg, {"architecture:unet": 2})


def test_later_settings_at_their_old_behaviour_keep_old_hashes():
    assert config_hash(config(train={"val_tta": "none"})) == config_hash(config())
    assert config_hash(config(train={"val_tta": "flips"})) != config_hash(config())


def test_the_fold_is_left_out_and_the_number_of_folds_and_groups_are_not():
    folds = config_hash(config(data={"folds": 5}))
    assert config_hash(config(data={"folds": 5, "fold": 3})) == folds  # the five folds are one configuration
    assert folds != config_hash(config())  # 5-fold is another experiment than a val_fraction split
    assert config_hash(config(data={"folds": 3})) != folds
    assert config_hash(config(data={"groups": "file"})) == config_hash(config())  # the default: old hashes
    assert config_hash(config(data={"groups": "auto"})) != config_hash(config())
