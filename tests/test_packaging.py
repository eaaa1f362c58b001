"""The distribution (pyproject.toml): a free name, ranges not pins, every import declared, a licence.

`pip install .` outside a checkout must get a working harness: what the code imports is a dependency (or an
optional extra, for the lazily imported integrations), and no exact pin blocks another torch build.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"harness", "plugins", "leaderboard"}
# Import name -> the declared distribution that brings it, where that is not its own name and it may not
# be installed here: pydantic pins its own core; the `log` extra's mlflow is mlflow-skinny.
PROVIDED_BY = {"pydantic_core": "pydantic", "mlflow": "mlflow-skinny"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement ("opencv-python-headless>=4.9" -> its name)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def imported_packages(*packages: str) -> dict[str, str]:
    """Top-level third-party modules imported anywhere in `packages` -> one file importing it."""
    found: dict[str, str] = {}
    for path in sorted(p for package in packages for p in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_the_distribution_is_segharness_and_the_command_harness():
    project = _project()
    # `harness` on the package index is an unrelated project (checked with `pip index versions`).
    assert project["name"] == "segharness"
    assert project["scripts"] == {"harness": "harness.cli:main"}


def test_dependencies_are_ranges_and_the_pins_live_in_constraints():
    project = _project()
    declared = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    assert not [r for r in declared if "==" in r], "exact pins belong in constraints.txt"
    assert "torch>=2.4,<3" in project["dependencies"]
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_every_imported_package_is_declared():
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    # import name -> distribution name(s), from what is installed here (cv2 -> opencv-python-headless)
    providers = importlib.metadata.packages_distributions()

    def distributions(module: str) -> set[str]:
        return {_name(d) for d in providers.get(module, [module])} | {PROVIDED_BY.get(module, module)}

    missing = {
        module: where
        for module, where in imported_packages("harness", "plugins", "leaderboard").items()
        if not distributions(module) & declared
    }
    assert not missing, f"imported but not in [project] dependencies or an extra: {missing}"


def test_the_licence_is_mit():
    assert _project()["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the harness authors" in text
