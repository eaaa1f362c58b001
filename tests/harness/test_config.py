"""RunConfig: flags, TOML, --set overrides and plugin parameters, each error one clear line."""

from __future__ import annotations

import pytest

from harness.config import RunConfig, build_config, config_hash, read_toml, resolve
from harness.errors import ConfigError, DataError, PluginError
from harness.plugins import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins(autoload=False)


def test_defaults_resolve_to_unet_ce_none(registry):
    config, cli = build_config({})
    resolved = resolve(config, registry, cli)
    assert (resolved.config.arch.name, resolved.config.loss.name, resolved.config.balancer.name) == (
        "unet",
        "ce",
        "none",
    )
    # every plugin parameter is filled in, so the stored config is complete
    assert resolved.config.arch.params["depth"] == 4
    assert resolved.config.data.params["n"] == 512


def test_set_overrides_are_typed():
    config, _ = build_config({}, settings=["train.lr=3e-4", "train.amp=false", "data.limit=none", "seed=7"])
    assert config.train.lr == pytest.approx(3e-4)
    assert config.train.amp is False
    assert config.data.limit is None
    assert config.seed == 7


def test_unknown_setting_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown setting 'train.lrr'; did you mean 'train.lr'\?"):
        build_config({}, settings=["train.lrr=1"])


def test_bad_setting_value_names_field_and_value():
    with pytest.raises(ConfigError, match=r"train.epochs.*greater than or equal to 1.*got 0"):
        build_config({}, settings=["train.epochs=0"])


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="--set expects key=value"):
        build_config({}, settings=["train.lr"])


def test_unknown_key_in_toml_is_rejected():
    with pytest.raises(ConfigError, match="train.epoch"):
        build_config({"train": {"epoch": 3}})


def test_plugin_params_are_coerced_and_validated(registry):
    config, cli = build_config({}, plugin_params={"arch": ["depth=3", "norm=group", "dropout=0.2"]})
    params = resolve(config, registry, cli).arch_params
    assert (params.depth, params.norm, params.dropout) == (3, "group", 0.2)


def test_plugin_param_typo_lists_valid_fields(registry):
    config, cli = build_config({}, plugin_params={"arch": ["dept=5"]})
    with pytest.raises(ConfigError) as info:
        resolve(config, registry, cli)
    message = str(info.value)
    assert "unknown architecture parameter 'dept' for 'unet'; did you mean 'depth'?" in message
    assert "valid: depth, width, norm, dropout" in message


def test_plugin_param_out_of_range(registry):
    config, cli = build_config({}, plugin_params={"arch": ["depth=9"]})
    with pytest.raises(ConfigError, match=r"bad architecture parameter for 'unet': depth: .*6.*got 9"):
        resolve(config, registry, cli)


def test_set_reaches_plugin_params(registry):
    config, cli = build_config({}, settings=["arch.params.width=8"])
    assert resolve(config, registry, cli).arch_params.width == 8


def test_unknown_architecture_did_you_mean(registry):
    config, cli = build_config({"arch": {"name": "unett"}})
    expected = r"^unknown architecture 'unett'; did you mean 'unet'\? \(choices: attunet, deeplab, .*unet"
    with pytest.raises(PluginError, match=expected):
        resolve(config, registry, cli)


def test_missing_data_file(registry, tmp_path):
    config, cli = build_config({"data": {"source": str(tmp_path / "nope.npz")}})
    with pytest.raises(DataError, match=r"nope.npz: no such file"):
        resolve(config, registry, cli)


def test_unknown_dataset_name(registry):
    config, cli = build_config({"data": {"source": "synthetc"}})
    with pytest.raises(PluginError, match="did you mean 'synthetic'"):
        resolve(config, registry, cli)


def test_toml_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        read_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_toml(bad)


def test_toml_round_trip(tmp_path, registry):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[arch]\nname = "unet"\nparams = {depth = 3}\n[train]\nepochs = 2\n')
    config, cli = build_config(read_toml(path), settings=["train.epochs=5"])
    resolved = resolve(config, registry, cli)
    assert (resolved.config.seed, resolved.arch_params.depth, resolved.config.train.epochs) == (3, 3, 5)


def test_config_hash_groups_seeds_but_not_settings(registry):
    def hashed(**changes):
        config, cli = build_config({"seed": changes.pop("seed", 0), **changes})
        return config_hash(resolve(config, registry, cli).config)

    assert hashed(seed=1) == hashed(seed=2)
    assert hashed(train={"lr": 1e-3}) != hashed(train={"lr": 2e-3})
    # explicit defaults and omitted ones are the same experiment
    assert hashed(arch={"name": "unet", "params": {"depth": 4}}) == hashed()
    # validation TTA off (the default) keeps the hashes of runs recorded before it existed; on, it is a
    # different experiment
    assert hashed(train={"val_tta": "none"}) == hashed()
    assert hashed(train={"val_tta": "flips"}) != hashed()


def test_runconfig_forbids_extra():
    with pytest.raises(ValueError):
        RunConfig.model_validate({"nonsense": 1})
