"""Every registered architecture, block, loss and balancer, built-in or installed third-party, passes the kit.

The checks live in `harness.conformance` so `harness check-plugin NAME` gives a plugin author the same
verdict as this suite.
"""

from __future__ import annotations

import pytest

from harness.conformance import CHECKS_BY_KIND
from harness.plugins import load_plugins

REGISTRY = load_plugins()
CASES = [
    pytest.param(entry.spec, check, id=f"{entry.spec.kind}-{entry.spec.name}-{name}")
    for kind, checks in CHECKS_BY_KIND.items()
    for entry in REGISTRY.all(kind)
    for name, check in checks.items()
]


def test_plugins_load_without_problems():
    assert REGISTRY.problems == []


@pytest.mark.parametrize(("spec", "check"), CASES)
def test_conformance(spec, check):
    check(spec, REGISTRY)


def test_every_builtin_kind_is_covered():
    kinds = {case.values[0].kind for case in CASES}
    assert kinds == {"architecture", "block", "loss", "balancer"}
