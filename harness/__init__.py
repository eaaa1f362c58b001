"""harness: a plugin-based benchmark harness for semantic segmentation.

Notebook use:

    import harness
    result = harness.run({"arch": {"name": "unet"}, "train": {"epochs": 3}})
    harness.leaderboard()
"""

from __future__ import annotations

from typing import Any

import pluggy

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it (tool.setuptools.dynamic)

hookimpl = pluggy.HookimplMarker("harness")

_API = ("run", "load_run", "leaderboard", "predict", "evaluate", "RunConfig", "RunResult")


def __getattr__(name: str) -> Any:
    # The API pulls in torch; plugins importing `hookimpl` should not pay for it twice at import time.
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = ["hookimpl", *_API]
