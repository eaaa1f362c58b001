"""Signal handling for a run, in one place.

SIGTERM (kill, a scheduler's stop, torchrun) is raised in the main thread as `Terminated`, a
KeyboardInterrupt, so that Ctrl-C and SIGTERM take the same path and record the run 'interrupted'.
While a final status is written, SIGINT and SIGTERM are held and delivered after the write.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same path records the run."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (a no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a final status is written: a second Ctrl-C lands after the write.

    The handlers are swapped for one that only notes the signal, then restored, and a noted signal is
    raised again: blocking it with pthread_sigmask would hold it for the main thread only, and a process
    with other threads (torch's, the heartbeat) has the signal delivered to one of those instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)  # the restored handler runs now, after the write
