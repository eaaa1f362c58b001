"""The layout's rules that import-linter cannot check (it sees modules, not names or sizes).

- no module imports another module's `_private` names;
- no module under harness/ is over 400 lines;
- tests mirror the tree: every module harness/X/Y.py has its tests in tests/harness/X/test_Y.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# Modules with no behaviour of their own to test: exception classes only.
NO_TEST_MODULE = {"harness/store/errors.py"}


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def private_imports(source: str, where: str) -> list[str]:
    """`from module import _name` lines of `source` (relative imports are a package's own business)."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [
                f"{where}:{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in _modules("harness", "leaderboard", "plugins", "tests", "examples"):
        found += private_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_a_private_import_is_found_also_inside_a_function():
    source = (
        "from harness import hookimpl\n\ndef f():\n    from harness.training.loop import _finite_weights\n"
    )
    assert private_imports(source, "planted.py") == [
        "planted.py:4: from harness.training.loop import _finite_weights"
    ]


@pytest.mark.parametrize("path", _modules("harness"), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_harness_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_every_harness_module_has_its_test_module():
    missing = []
    for path in _modules("harness"):
        relative = path.relative_to(ROOT)
        if path.name in ("__init__.py", "__main__.py") or str(relative) in NO_TEST_MODULE:
            continue
        mirror = ROOT / "tests" / relative.parent / f"test_{path.name}"
        if not mirror.exists():
            missing.append(f"{relative} -> {mirror.relative_to(ROOT)}")
    assert missing == []
