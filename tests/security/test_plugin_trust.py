"""Which third-party code runs: HARNESS_DISABLE_PLUGIN_AUTOLOAD=1 imports no entry-point plugin,
HARNESS_PLUGINS=a,b imports only those, built-ins always load, and a plugin that fails at import is named in
one warning line and skipped while everything else loads.

Each fake plugin writes a marker file when its module is imported, so "not loaded" means "never ran".
"""

from __future__ import annotations

import uuid

import pytest

from harness import plugins
from harness.cli.app import main

PLUGIN = """
from pathlib import Path
Path(r"{marker}").write_text("imported")

from harness import hookimpl
from harness.specs import LossSpec
from plugins.losses.ce import CrossEntropyParams, build

@hookimpl
def harness_losses():
    return [LossSpec(name="{loss}", summary="a third-party loss", params=CrossEntropyParams, build=build)]
"""

FAILURES = {
    "raises": 'raise RuntimeError("boom\\nsecond line")\n',
    "exits": "import sys\nsys.exit(3)\n",
    "syntax": "def broken(:\n",
    "missing dependency": "import module_that_does_not_exist\n",
}


@pytest.fixture
def installed(third_party, tmp_path):
    """Install entry-point plugins by short name; returns {short: (entry name, loss name, marker path)}."""

    def install(*shorts: str, broken: dict[str, str] | None = None) -> dict[str, tuple[str, str, object]]:
        token = uuid.uuid4().hex[:8]  # fresh module names: an import cached by an earlier test would hide one
        made, sources = {}, {}
        for short in shorts:
            entry, loss, marker = f"{short}_{token}", f"{short}-loss", tmp_path / f"{short}.imported"
            sources[entry] = PLUGIN.format(marker=marker, loss=loss)
            made[short] = (entry, loss, marker)
        for short, source in (broken or {}).items():
            entry = f"{short.replace(' ', '_')}_{token}"
            sources[entry] = source
            made[short] = (entry, None, None)
        third_party(sources)
        return made

    return install


def _builtins_all_there(registry) -> None:
    def builtin_specs(reg):
        return {
            (kind, name) for kind in plugins.SPEC_HOOKS for name, e in reg.specs[kind].items() if e.builtin
        }

    expected = builtin_specs(plugins.load_plugins(autoload=False))
    assert {("architecture", "unet"), ("loss", "ce"), ("dataset", "synthetic")} <= expected
    assert builtin_specs(registry) == expected


@pytest.mark.parametrize("value", ["1", "yes", "0"])  # pytest's habit: any non-empty value disables
def test_disabling_autoload_imports_no_entry_point_plugin(value, installed, monkeypatch):
    made = installed("alpha", "beta")
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", value)
    registry = plugins.load_plugins()
    assert registry.problems == []
    for _, loss, marker in made.values():
        assert loss not in registry.specs["loss"] and not marker.exists()
    _builtins_all_there(registry)


def test_allowlist_imports_only_the_named_plugins(installed, monkeypatch):
    made = installed("alpha", "beta", "gamma")
    monkeypatch.setenv("HARNESS_PLUGINS", f" {made['alpha'][0]} ,{made['gamma'][0]}")
    registry = plugins.load_plugins()
    assert registry.problems == []
    assert registry.specs["loss"]["alpha-loss"].provider == made["alpha"][0]
    assert "gamma-loss" in registry.specs["loss"] and made["gamma"][2].exists()
    assert "beta-loss" not in registry.specs["loss"] and not made["beta"][2].exists()
    _builtins_all_there(registry)


def test_allowlist_argument_overrides_the_environment(installed, monkeypatch):
    made = installed("alpha", "beta")
    monkeypatch.setenv("HARNESS_PLUGINS", made["alpha"][0])
    registry = plugins.load_plugins(allowed=[made["beta"][0]])
    assert "beta-loss" in registry.specs["loss"] and not made["alpha"][2].exists()


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_a_blank_allowlist_is_no_allowlist(value, installed, monkeypatch):
    made = installed("alpha")
    monkeypatch.setenv("HARNESS_PLUGINS", value)
    assert "alpha-loss" in plugins.load_plugins().specs["loss"]
    assert made["alpha"][2].exists()


def test_allowlist_naming_a_missing_plugin_warns_with_the_installed_names(installed, monkeypatch):
    made = installed("alpha")
    entry = made["alpha"][0]
    monkeypatch.setenv("HARNESS_PLUGINS", f"{entry}x,unet")  # a typo, and a built-in (always loaded anyway)
    registry = plugins.load_plugins()
    assert registry.problems == [
        f"HARNESS_PLUGINS names '{entry}x', which no installed plugin provides; did you mean '{entry}'? "
        f"(installed: {entry})"
    ]
    assert not made["alpha"][2].exists()
    _builtins_all_there(registry)


def test_blocking_wins_over_the_allowlist_and_disabling_over_both(installed, monkeypatch):
    made = installed("alpha", "beta")
    monkeypatch.setenv("HARNESS_PLUGINS", f"{made['alpha'][0]},{made['beta'][0]}")
    registry = plugins.load_plugins(blocked=[made["alpha"][0]])
    assert "alpha-loss" not in registry.specs["loss"] and not made["alpha"][2].exists()
    assert "beta-loss" in registry.specs["loss"]
    made = installed("gamma")
    monkeypatch.setenv("HARNESS_PLUGINS", made["gamma"][0])
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "gamma-loss" not in plugins.load_plugins().specs["loss"] and not made["gamma"][2].exists()


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_plugin_failing_at_import_is_named_in_one_warning_and_skipped(failure, installed, capsys):
    made = installed("alpha", broken={failure: FAILURES[failure]})
    broken_entry = made[failure][0]
    code = main(["list", "--kind", "loss", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"harness: warning: plugin '{broken_entry}' (from ?) failed to import: ")
    assert "alpha-loss" in out and '"ce"' in out  # the other plugin and the built-ins still load


def test_the_cli_honours_the_allowlist(installed, monkeypatch, capsys):
    made = installed("alpha", "beta")
    monkeypatch.setenv("HARNESS_PLUGINS", made["beta"][0])
    assert main(["list", "--kind", "loss", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "beta-loss" in out and "alpha-loss" not in out and err == ""
    assert not made["alpha"][2].exists()
