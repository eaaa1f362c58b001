"""Joining Ray and sizing its tasks (no Ray needed: a stand-in answers for the cluster)."""

from __future__ import annotations

import pytest

from harness.cluster.session import CPUS_ENV, cpus_per_run, task_options
from harness.errors import ConfigError


def test_fractional_resources_per_run_reach_the_task_options():
    class FakeRay:
        def __init__(self, gpus):
            self.gpus = gpus

        def cluster_resources(self):
            return {"CPU": 8.0, "GPU": self.gpus}

    assert task_options(FakeRay(1), 0.5, 0.25) == {"num_cpus": 0.5, "max_retries": 0, "num_gpus": 0.25}
    assert task_options(FakeRay(1), 2) == {"num_cpus": 2, "max_retries": 0, "num_gpus": 1}
    assert task_options(FakeRay(0), 1) == {"num_cpus": 1, "max_retries": 0}


def test_cpus_per_run_comes_from_the_flag_then_the_environment_and_must_be_positive(monkeypatch):
    monkeypatch.delenv(CPUS_ENV, raising=False)
    assert cpus_per_run(None) == 1.0
    monkeypatch.setenv(CPUS_ENV, "0.5")
    assert cpus_per_run(None) == 0.5
    assert cpus_per_run(2) == 2.0
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(CPUS_ENV, bad)
        with pytest.raises(ConfigError, match=f"{CPUS_ENV} must be a positive number"):
            cpus_per_run(None)
