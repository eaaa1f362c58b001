"""The conformance kit: the checks every architecture, block, loss and balancer must pass, built-in or not.

`tests/harness/conformance/` runs them over every registered plugin; `harness check-plugin NAME` runs the same
checks on any installed plugin, so a third-party author gets the verdict the project's CI gives.
Each check raises `CheckFailed` with one line saying what is wrong. One module per plugin kind holds its
checks (`architectures`, `blocks`, `losses`, `balancers`); `kit` holds what they share, and `sampling`
the check every kind runs too: the plugin built and run at parameters drawn inside their declared bounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.conformance.architectures import (
    ARCHITECTURE_CHECKS,
    check_builds,
    check_compile,
    check_deep_supervision,
    check_forward_backward,
    check_modes,
    check_sizes,
)
from harness.conformance.balancers import (
    BALANCER_CHECKS,
    check_balancer_contract,
    check_balancer_deterministic,
)
from harness.conformance.blocks import (
    BLOCK_CHECKS,
    check_block_gradients,
    check_block_norms,
    check_block_params,
    check_block_shapes,
    check_block_stage,
)
from harness.conformance.kit import NUM_CLASSES, SIZE, CheckFailed, require, shallow_params, small_params
from harness.conformance.losses import LOSS_CHECKS, check_loss_ignore_index, check_loss_value
from harness.conformance.sampling import check_sampled_params
from harness.specs import PluginSpec

__all__ = [
    "ARCHITECTURE_CHECKS",
    "BALANCER_CHECKS",
    "BLOCK_CHECKS",
    "CHECKS_BY_KIND",
    "LOSS_CHECKS",
    "NUM_CLASSES",
    "SIZE",
    "CheckFailed",
    "check_balancer_contract",
    "check_balancer_deterministic",
    "check_block_gradients",
    "check_block_norms",
    "check_block_params",
    "check_block_shapes",
    "check_block_stage",
    "check_builds",
    "check_compile",
    "check_deep_supervision",
    "check_forward_backward",
    "check_loss_ignore_index",
    "check_loss_value",
    "check_modes",
    "check_sampled_params",
    "check_sizes",
    "require",
    "run_checks",
    "shallow_params",
    "small_params",
]

# Every kind also runs at parameters sampled inside their declared bounds (harness.conformance.sampling).
CHECKS_BY_KIND = {
    kind: {**checks, "sampled params": check_sampled_params}
    for kind, checks in (
        ("architecture", ARCHITECTURE_CHECKS),
        ("block", BLOCK_CHECKS),
        ("loss", LOSS_CHECKS),
        ("balancer", BALANCER_CHECKS),
    )
}


def run_checks(spec: PluginSpec, registry: Any = None) -> Iterator[tuple[str, bool, str]]:
    """(check name, passed, note or failure line) for every check of the spec's kind.

    `registry` (the loaded plugins) is what params naming other plugins are checked against: a composable
    architecture's blocks, combo's parts. Each check takes it too: `check(spec, registry)`.
    """
    for name, check in CHECKS_BY_KIND.get(spec.kind, {}).items():
        try:
            note = check(spec, registry)
        except CheckFailed as exc:
            yield name, False, str(exc)
        except Exception as exc:  # a crash inside the plugin is a failed check, not a crashed kit
            yield name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            yield name, True, note or ""
