"""One run inside a Ray worker, as `harness sweep --executor ray` and `harness tune --executor ray` train it.

The worker loads the plugins the driver loaded (`session.plugin_selection`), resolves the config it was
sent, and refuses to train when that resolves to another config hash than the driver's: a node with a
different harness or plugin version would otherwise record a run under a hash it did not train. The run
then trains with the ordinary `execute`, recording through the driver's `Recorder` (`RemoteStore`), in a
scratch folder on the worker that holds the run's files until `finish_run` sends them home.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness.cluster.recorder import RemoteStore
from harness.errors import HarnessError


def resolve_on_worker(config: dict[str, Any], expected_hash: str, blocked: list[str], autoload: bool):
    """(resolved config, plugin registry) on this worker; HarnessError when its hash is not the driver's."""
    from harness.config import RunConfig, resolve
    from harness.plugins import load_plugins

    registry = load_plugins(blocked=blocked, autoload=autoload)
    resolved = resolve(RunConfig.model_validate(config), registry)
    if resolved.hash != expected_hash:
        raise HarnessError(
            f"the configuration resolves to hash {resolved.hash} on this worker but "
            f"{expected_hash} on the driver: install the same harness and plugins on every node"
        )
    return resolved, registry


def train_on_worker(
    config: dict[str, Any],
    expected_hash: str,
    recorder: Any,
    ticket: str,
    blocked: list[str],
    autoload: bool,
    *,
    exclusive: bool = False,
    hook: object | None = None,
) -> Any:
    """The run's `execute` result, recorded through `recorder` under `ticket`. `blocked` and `autoload`:
    the plugins as the driver loaded them; `hook`: a plugin object registered for this run only (a
    study's per-epoch reporter)."""
    from harness.training.run import execute

    resolved, registry = resolve_on_worker(config, expected_hash, blocked, autoload)
    if hook is not None:
        registry.manager.register(hook, name=f"worker-{ticket}")
    with tempfile.TemporaryDirectory(prefix="harness-ray-") as scratch:  # the run folder until it ends
        store = RemoteStore(recorder, ticket, Path(scratch))
        return execute(resolved, store, registry, progress=False, exclusive=exclusive)
