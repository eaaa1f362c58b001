"""Joining Ray and sizing its tasks: what `harness sweep --executor ray` and `harness tune --executor ray`
share. Each trains every run as one Ray task that records through the driver's `Recorder`
(harness.cluster.recorder); this module starts or joins Ray, gives a task its resources, and tells it
which plugins the driver loaded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.plugins import AUTOLOAD_ENV

RAY_MISSING = "--executor ray needs ray: pip install 'segharness[ray]'"
CPUS_ENV = "HARNESS_RAY_CPUS_PER_RUN"
# Tasks carry a config and return a small dict: the local instance needs little shared memory.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def import_ray() -> Any:
    """The ray module; a HarnessError naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise HarnessError(RAY_MISSING) from None
    return ray


def cpus_per_run(given: float | None) -> float:
    """--cpus-per-run, else $HARNESS_RAY_CPUS_PER_RUN, else 1; ConfigError unless a positive number."""
    raw = given if given is not None else os.environ.get(CPUS_ENV, "1")
    try:
        cpus = float(raw)
    except ValueError:
        cpus = -1.0
    if cpus <= 0:
        raise ConfigError(f"{CPUS_ENV} must be a positive number of CPUs per run, got {raw!r}")
    return cpus


def connect(ray: Any, address: str | None) -> bool:
    """Join `address` or start a local instance sized to this machine; False when this process was already
    connected (then it is not this caller's to shut down)."""
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, logging_level=logging.WARNING)
        return True
    import torch

    ray.init(
        num_cpus=os.cpu_count() or 1,
        num_gpus=torch.cuda.device_count(),
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,  # the runs are silent; their outcomes come back as results
        logging_level=logging.WARNING,
        ignore_reinit_error=True,
    )
    return True


def task_options(ray: Any, cpus: float, gpus: float | None = None) -> dict[str, Any]:
    """A run's task options: `cpus` CPUs and `gpus` GPUs (fractional: 0.25 lets four runs share one), or one
    whole GPU where the cluster has GPUs and none was asked for."""
    # max_retries=0: Ray would rerun a task whose worker died, recording the same run twice.
    options: dict[str, Any] = {"num_cpus": cpus, "max_retries": 0}
    if gpus is not None:
        options["num_gpus"] = gpus
    elif ray.cluster_resources().get("GPU", 0) > 0:
        options["num_gpus"] = 1
    return options


def plugin_selection(registry: Any) -> tuple[list[str], bool]:
    """The `-p no:NAME` names and the autoload switch the driver loaded its plugins with."""
    blocked = [name for name, plugin in registry.manager.list_name_plugin() if plugin is None]
    return blocked, not os.environ.get(AUTOLOAD_ENV)


def on_driver(ray: Any) -> dict[str, Any]:
    """Actor options that keep an actor on this (the driver's) node, where the store and the study are,
    and off the CPU slots (it must never wait for a slot the runs it serves are holding)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return {"num_cpus": 0, "max_restarts": 0, "scheduling_strategy": here}
