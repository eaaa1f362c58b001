"""harness.hookspecs, the plugin API: each hook documents its arguments, each spec kind has its hook, and
a run calls the lifecycle hooks with a RunInfo (checked on a plugin installed as a third-party package)."""

from __future__ import annotations

import inspect
import re

import pytest

from harness import api, hookspecs
from harness.plugins import SPEC_HOOKS, load_plugins
from harness.specs import SPEC_KINDS, RunInfo
from harness.store import RunStore
from tests_support import TINY_CONFIG

LIFECYCLE = ("harness_run_start", "harness_epoch_end", "harness_best_epoch", "harness_run_end")


def _hookspecs() -> dict[str, object]:
    return {
        name: value
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.hookspec.project_name}_spec")
    }


def test_the_module_declares_the_spec_hooks_and_the_lifecycle_hooks_only():
    assert set(_hookspecs()) == {*SPEC_HOOKS.values(), *LIFECYCLE}
    registry = load_plugins(autoload=False)
    for name in _hookspecs():
        assert getattr(registry.manager.hook, name).spec is not None  # registered as a spec


def _arguments_documented():
    for name, function in _hookspecs().items():
        for argument in inspect.signature(function).parameters:
            yield pytest.param(name, argument, id=f"{name}-{argument}")


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_has_a_docstring(name):
    doc = inspect.getdoc(_hookspecs()[name])
    assert doc and doc.splitlines()[0].endswith(".") and "Called" in doc  # says when it is called


@pytest.mark.parametrize(("name", "argument"), list(_arguments_documented()))
def test_every_hook_docstring_names_each_argument(name, argument):
    assert re.search(rf"\b{argument}\b", inspect.getdoc(_hookspecs()[name]))


@pytest.mark.parametrize("kind", list(SPEC_KINDS))
def test_every_spec_kind_has_a_hook_returning_a_list_of_its_specs(kind):
    function = _hookspecs()[SPEC_HOOKS[kind]]
    assert list(inspect.signature(function).parameters) == []
    assert function.__annotations__["return"] == f"list[{SPEC_KINDS[kind].__name__}]"
    assert SPEC_KINDS[kind].__name__ in inspect.getdoc(function)  # the docstring says what build() gives


def test_the_lifecycle_hooks_take_a_run_info_first():
    for name in LIFECYCLE:
        function = _hookspecs()[name]
        assert next(iter(inspect.signature(function).parameters)) == "run"
        assert function.__annotations__["run"] == RunInfo.__name__


OBSERVER = """
from harness import hookimpl

CALLS = []

@hookimpl
def harness_run_start(run):
    CALLS.append(("start", run))

@hookimpl
def harness_epoch_end(run, epoch, values):
    CALLS.append(("epoch", run, epoch, dict(values)))

@hookimpl
def harness_run_end(run, status, metrics):
    CALLS.append(("end", run, status, metrics))
"""


def test_a_run_calls_the_lifecycle_hooks_of_a_third_party_plugin_with_a_run_info(third_party, store_path):
    third_party({"observer": OBSERVER})
    result = api.run(TINY_CONFIG, store=store_path)  # the plugin is found through its entry point
    import fake_observer

    calls = fake_observer.CALLS
    assert [call[0] for call in calls] == ["start", "epoch", "end"]
    infos = [call[1] for call in calls]
    assert all(isinstance(info, RunInfo) for info in infos)
    assert infos[0] == infos[1] == infos[2]
    info = infos[0]
    assert info.run_id == result.run_id and info.store_path == store_path
    assert info.run_dir == store_path.parent / result.run_id and info.run_dir.is_dir()
    with RunStore(store_path, create=False) as store:
        assert info.config == result.config and info.device == store.get_run(result.run_id)["device"]
    _, _, epoch, values = calls[1]
    assert epoch == 1 and values["epoch"] == 1
    # what harness_epoch_end's docstring promises `values` holds
    promised = re.search(r"`values` holds (.+)\.", inspect.getdoc(hookspecs.harness_epoch_end)).group(1)
    keys = re.sub(r"\(.*?\)", "", promised).replace(" and ", ", ").split(",")
    assert {k.strip() for k in keys} <= set(values)
    _, _, status, metrics = calls[2]
    assert status == "finished" and metrics["miou_an2dl"] == result.miou
