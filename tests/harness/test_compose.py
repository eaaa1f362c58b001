"""Composed balancers (`--balancer a+b+c`): parts applied in order, params routed by part name."""

from __future__ import annotations

import copy

import pytest
import torch

from harness import api
from harness.config import build_config, resolve
from harness.errors import ConfigError, PluginError
from harness.plugins import load_plugins
from tests_support import TINY_CONFIG

REGISTRY = load_plugins(autoload=False)


def resolved(name, params=None, cli=()):
    config, cli_params = build_config(
        {"balancer": {"name": name, "params": params or {}}}, plugin_params={"balancer": list(cli)}
    )
    return resolve(config, REGISTRY, cli_params)


def test_parts_get_their_own_params_from_toml_and_flags():
    result = resolved(
        "oversample+copypaste+classweights",
        params={"oversample": {"k": 3}},
        cli=["copypaste.per_image=5", "classweights.method=inverse"],
    )
    stored = result.config.balancer.params
    assert stored["oversample"]["k"] == 3
    assert stored["copypaste"]["per_image"] == 5
    assert stored["classweights"]["method"] == "inverse"


@pytest.mark.parametrize(
    ("name", "cli", "error", "message"),
    [
        ("oversample+copypaste", ["per_image=5"], ConfigError, "prefix each parameter with its part"),
        (
            "oversample+copypaste",
            ["classweights.cap=2"],
            ConfigError,
            "names 'classweights', which is not among",
        ),
        ("oversample+copypaste", ["copypaste.per_imag=5"], ConfigError, "did you mean 'per_image'"),
        ("oversample+copypste", [], PluginError, "did you mean 'copypaste'"),
        ("oversample+oversample", [], ConfigError, "each part must appear once"),
    ],
)
def test_composition_errors_are_one_line(name, cli, error, message):
    with pytest.raises(error, match=message):
        resolved(name, cli=cli)


def test_chain_applies_in_order_and_keeps_strong_marks():
    spec = resolved("oversample+copypaste+classweights", cli=["copypaste.probability=1"])
    balance = spec.balancer.build(spec.balancer_params)
    images = torch.randint(0, 256, (6, 32, 64), dtype=torch.uint8)
    masks = torch.ones(6, 32, 64, dtype=torch.uint8)
    masks[:2, 4:12, 4:12] = 4  # two images with a big rock
    result = balance(images, masks, num_classes=5, ignore_index=0, seed=0)
    copies = 2 * 2  # oversample: k=2 copies of each of the 2 rock images
    assert len(result.images) == 6 + copies + (6 + copies)  # copypaste appends a pasted version of each
    assert result.strong[:6].sum() == 0 and result.strong[6 : 6 + copies].all()
    assert not result.strong[6 + copies :].any()  # appended by copypaste: not marked
    assert result.class_weights is not None and result.class_weights[0] == 0


def test_composed_balancer_and_augmentation_train_end_to_end(store_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["balancer"] = {"name": "oversample+copypaste+classweights"}
    config["augment"] = {"preset": "standard"}
    result = api.run(config, store=store_path)
    assert result.status == "finished"
    assert set(result.config["balancer"]["params"]) == {"oversample", "copypaste", "classweights"}
