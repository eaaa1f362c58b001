"""Plugin loading: built-ins and entry points through one path, problems reported by name."""

from __future__ import annotations

import pytest

from harness import plugins
from harness.errors import PluginError
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
