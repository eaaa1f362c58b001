"""Plugin loading: built-ins and entry points through one path, problems reported by name."""

from __future__ import annotations

import pytest

from harness import plugins
from harness.errors import ConfigError, PluginError
from harness.specs import ArchitectureSpec, NoParams

GOOD = """
from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.ce import CrossEntropyParams, build

@hookimpl
def harness_losses():
    return [LossSpec(name="{name}", summary="a third-party loss", params=CrossEntropyParams, build=build)]
"""

BAD_SPEC = """
from harness import hookimpl

@hookimpl
def harness_architectures():
    return [{"name": "Not A Slug", "summary": "", "build": print}]
"""

BROKEN_IMPORT = "import module_that_does_not_exist\n"


def test_builtins_load_without_problems():
    registry = plugins.load_plugins(autoload=False)
    assert registry.problems == []
    assert {"unet"} <= set(registry.specs["architecture"])
    assert {"ce"} <= set(registry.specs["loss"])
    assert {"none"} <= set(registry.specs["balancer"])
    assert {"synthetic"} <= set(registry.specs["dataset"])
    entry = registry.specs["architecture"]["unet"]
    assert entry.builtin and entry.provider == "plugins.architectures.unet"


def test_entry_point_plugin_is_loaded_like_a_builtin(third_party):
    third_party({"extra": GOOD.format(name="myloss")})
    registry = plugins.load_plugins()
    entry = registry.specs["loss"]["myloss"]
    assert entry.provider == "extra" and not entry.builtin
    assert registry.get("loss", "myloss").summary == "a third-party loss"


def test_broken_plugins_are_reported_and_the_rest_load(third_party):
    third_party({"broken": BROKEN_IMPORT, "badspec": BAD_SPEC, "fine": GOOD.format(name="fine-loss")})
    registry = plugins.load_plugins()
    problems = "\n".join(registry.problems)
    assert "plugin 'broken' (from ?) failed to import: ModuleNotFoundError" in problems
    assert "plugin 'badspec' returned a bad architecture spec" in problems
    assert "fine-loss" in registry.specs["loss"]
    assert "unet" in registry.specs["architecture"]


def test_duplicate_name_is_an_error_naming_both_providers(third_party):
    third_party({"copycat": GOOD.format(name="ce")})
    registry = plugins.load_plugins()
    assert any("duplicate loss name 'ce' from plugins.losses.ce and copycat" in p for p in registry.problems)
    with pytest.raises(PluginError, match="provided by both plugins.losses.ce and copycat; disable one"):
        registry.get("loss", "ce")


def test_disable_autoload_env_skips_entry_points(third_party, monkeypatch):
    third_party({"extra": GOOD.format(name="myloss")})
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = plugins.load_plugins()
    assert "myloss" not in registry.specs["loss"]
    assert "ce" in registry.specs["loss"]


def test_block_plugins_with_p_no(third_party):
    third_party({"copycat": GOOD.format(name="ce")})
    registry = plugins.load_plugins(blocked=plugins.parse_blocked(["no:copycat", "no:unet"]))
    assert registry.problems == []
    assert registry.specs["loss"]["ce"].provider == "plugins.losses.ce"
    assert "unet" not in registry.specs["architecture"]


def test_parse_blocked_rejects_other_forms():
    with pytest.raises(PluginError, match="-p expects no:NAME"):
        plugins.parse_blocked(["unet"])


def test_unknown_name_lists_choices():
    registry = plugins.load_plugins(autoload=False)
    expected = r"unknown balancer 'nnone'; did you mean 'none'\? \(choices: .*\bnone\b"
    with pytest.raises(PluginError, match=expected):
        registry.get("balancer", "nnone")


class Loose(NoParams.__base__):  # a BaseModel without extra="forbid"
    depth: int = 3


def test_specs_are_validated():
    with pytest.raises(ValueError, match="pattern"):
        ArchitectureSpec(name="U Net", summary="x", build=print)
    with pytest.raises(ValueError, match="extra='forbid'"):
        ArchitectureSpec(name="loose", summary="x", params=Loose, build=print)
    with pytest.raises(ValueError, match="summary"):
        ArchitectureSpec(name="nosummary", summary="", build=print)


# --------------------------------------------------------------------------------------------------------
# The registry is passed, never found: params naming other plugins are checked against the one given


@pytest.mark.parametrize("gc_last", [False, True])
def test_two_registries_validate_block_choices_each_against_its_own_plugins(gc_last):
    if gc_last:
        without_gc = plugins.load_plugins(blocked=["gc"], autoload=False)
        with_gc = plugins.load_plugins(autoload=False)
    else:
        with_gc = plugins.load_plugins(autoload=False)
        without_gc = plugins.load_plugins(blocked=["gc"], autoload=False)
    unet = with_gc.get("architecture", "unet")
    chosen = {"bottleneck": "rdam+gc"}
    parsed = unet.parse_params(cli=chosen, registry=with_gc)
    assert parsed.bottleneck == "rdam+gc" and set(parsed.bottleneck_params) == {"rdam", "gc"}
    with pytest.raises(ConfigError, match="unknown block 'gc' for bottleneck"):
        unet.parse_params(cli=chosen, registry=without_gc)
    assert unet.parse_params(registry=without_gc).bottleneck == "conv"  # the defaults need no gc


@pytest.mark.parametrize("extra_last", [False, True])
def test_two_registries_validate_combo_parts_each_against_its_own_losses(third_party, extra_last):
    third_party({"extra": GOOD.format(name="myloss")})
    if extra_last:
        without, with_extra = plugins.load_plugins(autoload=False), plugins.load_plugins()
    else:
        with_extra, without = plugins.load_plugins(), plugins.load_plugins(autoload=False)
    combo = without.get("loss", "combo")
    parts = {"parts": "ce:1,myloss:2"}
    assert combo.parse_params(cli=parts, registry=with_extra).parts == {"ce": 1.0, "myloss": 2.0}
    with pytest.raises(PluginError, match="unknown loss 'myloss'"):
        combo.parse_params(cli=parts, registry=without)


def test_combo_builds_the_parts_of_the_registry_it_was_parsed_with(third_party):
    third_party({"extra": GOOD.format(name="myloss")})
    registry = plugins.load_plugins()
    combo = registry.get("loss", "combo")
    params = combo.parse_params(cli={"parts": "myloss:1,dice:1"}, registry=registry)
    plugins.load_plugins(autoload=False)  # a later registry without myloss changes nothing
    module = combo.build(params, num_classes=5, ignore_index=0, class_weights=None)
    assert list(module.losses) == ["myloss", "dice"]
    assert type(module.losses["myloss"]).__name__ == "CrossEntropy"  # what the third-party spec builds


@pytest.mark.parametrize(("kind", "name"), [("loss", "combo"), ("architecture", "unet")])
def test_params_naming_plugins_without_a_registry_fail_naming_the_plugin(kind, name):
    spec = plugins.load_plugins(autoload=False).get(kind, name)
    with pytest.raises(ConfigError, match=f"^{kind} '{name}' names other plugins, so its parameters need"):
        spec.parse_params()


def test_unvalidated_params_refuse_to_build():
    registry = plugins.load_plugins(autoload=False)
    combo, unet = registry.get("loss", "combo"), registry.get("architecture", "unet")
    with pytest.raises(ConfigError, match="not validated against a plugin registry"):
        combo.build(combo.params.model_construct(), num_classes=5, ignore_index=0, class_weights=None)
    with pytest.raises(ConfigError, match="not validated against a plugin registry"):
        unet.build(unet.params.model_construct(), in_channels=1, num_classes=5)


def test_no_registry_is_kept_between_loads():
    assert not hasattr(plugins, "active_registry") and not hasattr(plugins, "_ACTIVE")
    assert plugins.load_plugins(autoload=False) is not plugins.load_plugins(autoload=False)
