"""Variant and data labels (leaderboard/labels.py): the settings that differ from each plugin's defaults,
read from the registry, and the data's name with its content hash."""

from __future__ import annotations

import pytest

from harness.config import DEFAULT_CHOICES
from harness.plugins import load_plugins
from leaderboard.labels import Labeller, data_label, data_matches, format_value, plugin_label

REGISTRY = load_plugins(autoload=False)


def stored(kind: str, name: str, **values) -> dict:
    """A plugin's params as a run stores them: every field resolved (the run's choices and defaults)."""
    if kind == "balancer" and "+" in name:
        from harness.compose import compose_balancers

        return compose_balancers(REGISTRY, name, values, None)[1].model_dump(mode="json")
    spec = REGISTRY.get(kind, name)
    return spec.parse_params(values, registry=REGISTRY).model_dump(mode="json")


def config(arch=("unet", {}), loss=("ce", {}), balancer=("none", {})) -> dict:
    return {
        "arch": {"name": arch[0], "params": stored("architecture", arch[0], **arch[1])},
        "loss": {"name": loss[0], "params": stored("loss", loss[0], **loss[1])},
        "balancer": {"name": balancer[0], "params": stored("balancer", balancer[0], **balancer[1])},
    }


@pytest.fixture
def labeller():
    return Labeller(REGISTRY, DEFAULT_CHOICES)


def test_defaults_label_as_the_architecture_alone(labeller):
    variant = labeller.variant(config())
    assert variant.label == "unet"
    assert (variant.arch_params, variant.loss_params, variant.balancer_params) == ({}, {}, {})


def test_a_block_choice_is_named_and_its_own_default_params_are_not(labeller):
    # The stored config holds se+gc's parameters (their defaults): they are not differences.
    assert labeller.variant(config(arch=("unet", {"bottleneck": "se+gc"}))).label == "unet[bottleneck=se+gc]"
    changed = config(arch=("unet", {"bottleneck": "se+gc", "bottleneck_params": {"gc": {"reduction": 8}}}))
    assert labeller.variant(changed).label == "unet[bottleneck=se+gc, bottleneck.gc.reduction=8]"
    blocks = {
        "encoder_block": "dilated",
        "bottleneck": "rdam+gc",
        "decoder_block": "se",
        "skip_fusion": "cba",
    }
    label = labeller.variant(config(arch=("unetpp", blocks))).label
    assert label == "unetpp[encoder=dilated, bottleneck=rdam+gc, decoder=se, skip=cba]"


def test_losses_and_balancers_are_named_when_they_are_not_the_run_defaults(labeller):
    combo = config(loss=("combo", {"parts": "focal:1,dice:1"}), balancer=("oversample+copypaste", {}))
    variant = labeller.variant(combo)
    assert variant.label == "unet · combo[focal=1, dice=1] · oversample+copypaste"
    assert variant.loss_params == {"focal": 1.0, "dice": 1.0} and variant.balancer_params == {}
    tuned = config(balancer=("oversample+copypaste", {"copypaste": {"per_image": 3}}))
    assert labeller.variant(tuned).label == "unet · oversample+copypaste[copypaste.per_image=3]"
    assert (
        labeller.variant(config(loss=("ce", {"label_smoothing": 0.1}))).label
        == "unet · ce[label_smoothing=0.1]"
    )


def test_two_runs_differing_only_in_the_bottleneck_label_differently(labeller):
    one = labeller.variant(config(arch=("unet", {"bottleneck": "se"}))).label
    other = labeller.variant(config(arch=("unet", {"bottleneck": "aspp"}))).label
    assert one != other and (one, other) == ("unet[bottleneck=se]", "unet[bottleneck=aspp]")


def test_an_unknown_plugin_or_no_registry_labels_by_name():
    assert (
        Labeller(REGISTRY, DEFAULT_CHOICES).variant({"arch": {"name": "gone", "params": {"x": 1}}}).label
        == "gone"
    )
    bare = Labeller().variant(config(arch=("unet", {"depth": 2})))
    assert bare.label == "unet · ce · none" and bare.arch_params is None
    names = {"arch": "segnet", "loss": "ce", "balancer": "none"}
    assert Labeller(REGISTRY, DEFAULT_CHOICES).variant({}, names).label == "segnet"  # a record without config


def test_data_labels_carry_the_content_hash_and_fall_back_to_the_name():
    assert data_label("synthetic", "986ec910574c") == "synthetic@986ec9"
    assert data_label("../shared/data/mars/ai4mars-an2dl.npz", "f9bafd000000") == "ai4mars-an2dl.npz@f9bafd"
    assert data_label("a/train.npz", "111111aaaaaa") != data_label("b/train.npz", "222222bbbbbb")
    assert data_label("synthetic", "synthetic") == "synthetic"  # an old record without a hash
    assert data_label(None, "abcdef123456") == "abcdef" and data_label(None, None) == "–"


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("ai4mars-an2dl.npz", True),
        ("/elsewhere/ai4mars-an2dl.npz", True),
        ("ai4mars-an2dl.npz@f9bafd", True),
        ("f9ba", True),
        ("f9b", False),  # too short to be a hash prefix
        ("synthetic", False),
        ("", False),
    ],
)
def test_data_filters_match_names_files_and_hash_prefixes(query, matches):
    assert data_matches(query, "../shared/data/mars/ai4mars-an2dl.npz", "f9bafd000000") is matches


def test_values_read_short():
    assert [format_value(v) for v in (1.0, 0.25, True, None, [3, 4], "se")] == [
        "1",
        "0.25",
        "true",
        "none",
        "[3,4]",
        "se",
    ]
    assert plugin_label("unet", {}) == "unet" and plugin_label("ce", {"ohem": 0.5}) == "ce[ohem=0.5]"
