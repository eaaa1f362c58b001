"""The run store (SQLite): the single source of truth every reader uses.

`from harness.store import RunStore, resolve_store_path, ...` reaches every public name; the modules say
where each lives: `runs` (the store), `opening` (which files are ours; readers open read-only),
`heartbeat` (liveness of running runs), `schema` (tables and migrations), `paths` (where the store is),
`errors`.
"""

from harness.store.errors import RunClaimed, RunNotFound, StoreError, StoreNotFound, StoreNotInitialised
from harness.store.heartbeat import (
    DEFAULT_HEARTBEAT_SECONDS,
    HEARTBEAT_ENV,
    LEASE_ENV,
    Heartbeat,
    heartbeat_seconds,
    lease_seconds,
    presumed_dead,
)
from harness.store.paths import DEFAULT_STORE, SQLITE_URL, STORE_ENV, resolve_store_path
from harness.store.runs import FINAL_STATUSES, RunStore
from harness.store.schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_STORE",
    "FINAL_STATUSES",
    "HEARTBEAT_ENV",
    "LEASE_ENV",
    "SCHEMA_VERSION",
    "SQLITE_URL",
    "STORE_ENV",
    "Heartbeat",
    "RunClaimed",
    "RunNotFound",
    "RunStore",
    "StoreError",
    "StoreNotFound",
    "StoreNotInitialised",
    "heartbeat_seconds",
    "lease_seconds",
    "presumed_dead",
    "resolve_store_path",
]
