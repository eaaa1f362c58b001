"""The architecture checks (harness/conformance/architectures.py): each fails on a plugin that breaks
exactly that part of the contract, and a conforming double passes them all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness import conformance
from harness.conformance import CheckFailed
from harness.specs import ArchitectureSpec, NoParams


class Flat(nn.Module):
    """A 1x1-conv 'architecture' whose flaws the tests switch on one at a time."""

    def __init__(self, flaw: str = ""):
        super().__init__()
        self.flaw = flaw
        self.conv = nn.Conv2d(1, conformance.NUM_CLASSES, 1)
        self.unused = nn.Linear(2, 2)  # only used unless flaw == "dead-param"
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError("needs W divisible by 4" if self.flaw != "vague-size" else "bad size")
        out = self.conv(self.bn(x))
        if self.flaw != "dead-param":
            out = out + 0 * self.unused(torch.ones(2)).sum()
        if self.flaw == "nan":
            out = out * float("nan")
        if self.flaw == "random-eval":
            out = out + torch.rand_like(out)
        if self.flaw == "half-size":
            out = out[..., ::2, :]
        return out


def arch(flaw: str = "", **flags) -> ArchitectureSpec:
    return ArchitectureSpec(
        name="flat",
        summary="test double",
        params=NoParams,
        build=lambda p, **_: Flat(flaw),
        input_multiple=4,
        **flags,
    )


def test_a_conforming_double_passes_every_check():
    spec = arch()
    for name, passed, note in conformance.run_checks(spec):
        assert passed, f"{name}: {note}"


@pytest.mark.parametrize(
    ("check", "spec", "message"),
    [
        (conformance.check_forward_backward, arch("nan"), "not finite"),
        (conformance.check_forward_backward, arch("dead-param"), "got no gradient"),
        (conformance.check_forward_backward, arch("half-size"), "shape"),
        (conformance.check_sizes, arch("vague-size"), "does not name the multiple 4"),
        (conformance.check_modes, arch("random-eval"), "not deterministic"),
        (conformance.check_builds, arch(params_count=3), "spec declares 3 params"),
        (conformance.check_deep_supervision, arch(deep_supervision=True), "not a non-empty list"),
        (conformance.check_compile, arch(compiles=False), "declares compiles=False but torch.compile works"),
    ],
)
def test_each_check_catches_its_flaw(check, spec, message):
    with pytest.raises(CheckFailed, match=message):
        check(spec)
