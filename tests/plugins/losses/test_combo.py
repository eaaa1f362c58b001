"""combo: a weighted sum of registered losses, validated by name before anything is built."""

from __future__ import annotations

import copy

import pytest
import torch

from harness import api
from harness.errors import ConfigError, PluginError
from harness.plugins import load_plugins
from tests_support import TINY_CONFIG

REGISTRY = load_plugins(autoload=False)
SPEC = REGISTRY.get("loss", "combo")


def build(**params):
    parsed = SPEC.parse_params(params, registry=REGISTRY)
    return SPEC.build(parsed, num_classes=5, ignore_index=0, class_weights=None)


def single(name, **params):
    spec = REGISTRY.get("loss", name)
    parsed = spec.parse_params(params, registry=REGISTRY)
    return spec.build(parsed, num_classes=5, ignore_index=0, class_weights=None)


def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 8, 16, generator=generator)
    target = torch.randint(0, 5, (2, 8, 16), generator=generator)
    return logits, target


def test_cli_string_parts_and_weighted_sum():
    params = SPEC.parse_params(cli={"parts": "ce:1,dice:0.5,focal:2"}, registry=REGISTRY)
    assert params.parts == {"ce": 1.0, "dice": 0.5, "focal": 2.0}
    combo = SPEC.build(params, num_classes=5, ignore_index=0, class_weights=None)
    logits, target = batch()
    expected = (
        single("ce")(logits, target)
        + 0.5 * single("dice")(logits, target)
        + 2 * single("focal")(logits, target)
    )
    assert torch.allclose(combo(logits, target), expected)


def test_part_params_reach_the_part():
    logits, target = batch()
    combo = build(parts={"focal": 1.0}, params={"focal": {"gamma": 0.0}})
    assert torch.allclose(combo(logits, target), single("focal", gamma=0.0)(logits, target))
    assert not torch.allclose(combo(logits, target), single("focal")(logits, target))


def test_unknown_part_and_bad_part_params_fail_before_building():
    with pytest.raises(PluginError, match="unknown loss 'dcie'; did you mean 'dice'"):
        SPEC.parse_params(cli={"parts": "ce:1,dcie:1"}, registry=REGISTRY)
    with pytest.raises(ConfigError, match="bad loss parameter for 'focal': gamma"):
        SPEC.parse_params({"parts": {"focal": 1}, "params": {"focal": {"gamma": -1}}}, registry=REGISTRY)
    with pytest.raises(ConfigError, match="params names 'dice', which is not among parts"):
        SPEC.parse_params({"parts": {"ce": 1}, "params": {"dice": {}}}, registry=REGISTRY)
    with pytest.raises(ConfigError, match="cannot contain itself"):
        SPEC.parse_params({"parts": {"combo": 1}}, registry=REGISTRY)
    with pytest.raises(ConfigError, match="parts"):
        SPEC.parse_params(cli={"parts": "ce:heavy"}, registry=REGISTRY)


def test_weight_ramps_over_epochs():
    combo = build(parts={"ce": 1.0, "dice": 2.0}, ramp_epochs={"dice": 4})
    assert combo.weight("dice") == pytest.approx(0.5)  # epoch 1 of 4
    combo.set_epoch(3)
    assert combo.weight("dice") == pytest.approx(1.5)
    combo.set_epoch(9)
    assert combo.weight("dice") == 2.0 and combo.weight("ce") == 1.0


SCHEDULED = """
import torch
from torch import nn
from harness import hookimpl
from harness.specs import LossSpec, NoParams
from plugins.losses.ce import CrossEntropy, CrossEntropyParams

EPOCHS = []

class Recording(CrossEntropy):
    def set_epoch(self, epoch):
        EPOCHS.append(epoch)

@hookimpl
def harness_losses():
    return [LossSpec(name="recording", summary="records set_epoch calls", scheduled=True,
                     build=lambda p, num_classes, ignore_index, class_weights:
                         Recording(CrossEntropyParams(), ignore_index, None))]
"""


def test_loop_calls_set_epoch_on_scheduled_losses(store_path, third_party):
    third_party({"recording": SCHEDULED})
    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["epochs"] = 3
    config["loss"] = {"name": "recording"}
    assert api.run(config, store=store_path, plugins=load_plugins()).status == "finished"
    import fake_recording

    assert fake_recording.EPOCHS == [1, 2, 3]


def test_combo_trains_end_to_end(store_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["loss"] = {
        "name": "combo",
        "params": {"parts": "ce:1,dice:1,lovasz:0.5", "ramp_epochs": {"lovasz": 2}},
    }
    result = api.run(config, store=store_path)
    assert result.status == "finished"
    assert result.config["loss"]["params"]["parts"] == {"ce": 1.0, "dice": 1.0, "lovasz": 0.5}


def test_boundary_is_lowest_for_the_true_region():
    from harness.data.distance import signed_distance_maps

    target = torch.full((1, 16, 16), 2, dtype=torch.long)
    target[0, 4:12, 4:12] = 1
    distances = signed_distance_maps(target.to(torch.uint8), 5, 0)
    boundary = single("boundary")
    exact = torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float() * 20
    shifted = torch.roll(exact, shifts=3, dims=3)
    assert boundary(exact, target, distances) < boundary(shifted, target, distances)


def test_combo_with_boundary_trains_with_augmentation(store_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["loss"] = {
        "name": "combo",
        "params": {"parts": "dice:1,boundary:0.1", "ramp_epochs": {"boundary": 2}},
    }
    config["augment"] = {"preset": "standard"}
    config["train"]["epochs"] = 2
    assert api.run(config, store=store_path).status == "finished"


def test_boundary_closed_form_on_a_row():
    from harness.data.distance import signed_distance_maps

    target = torch.tensor([[[1, 1, 2, 2]]])
    distances = signed_distance_maps(target.to(torch.uint8), 5, 0)
    assert distances[0, 1, 0].tolist() == [-1.0, 0.0, 1.0, 2.0]
    assert distances[0, 2, 0].tolist() == [2.0, 1.0, 0.0, -1.0]
    exact = torch.nn.functional.one_hot(target, 5).permute(0, 3, 1, 2).float() * 1e4
    # sum of p*phi = (-1 + 0) + (0 - 1) = -2 over 4 pixels x 4 foreground classes
    assert torch.allclose(single("boundary")(exact, target, distances), torch.tensor(-0.125))
