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
