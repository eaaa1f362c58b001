"""The run store's errors: each a one-line `HarnessError` naming the store file and the fix."""

from __future__ import annotations

from harness.errors import HarnessError


class StoreNotFound(HarnessError):
    """The run store file does not exist (readers never create one)."""


class StoreError(HarnessError):
    """The file is not a run store this version can use, or a write was refused."""


class RunNotFound(HarnessError):
    """No run has the given id, or the id prefix matches more than one run."""


class StoreNotInitialised(StoreError):
    """The file exists but holds no run store yet (empty, or another process is creating it now)."""


class RunClaimed(StoreError):
    """An exclusive start found the same configuration and seed finished or running in another process."""
