"""Signal handling for a run, in one place.

SIGTERM (kill, a scheduler's stop, torchrun) is raised in the main thread as `Terminated`, a
KeyboardInterrupt, so that Ctrl-C and SIGTERM take the same path and record the run 'interrupted'.
The command line installs `stop_signals` first thing, before its heavy imports: the first signal stops the
command, later ones are ignored (a second Ctrl-C while the run is recorded or the last line printed would
otherwise end the process with a traceback); during the imports and plugin loading it ends the process at
once. While a final status is written, SIGINT and SIGTERM are held
and delivered after the write.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same path records the run."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


# stop_signals' state: whether it is in force (it is re-entrant), the signal stopping the process once one
# has come, and how many `ending_at_once` blocks (imports, plugin loading) are open.
_state = {"installed": False, "stopping": None, "at_once": 0}


def _stop(signum: int, frame: object) -> None:
    if _state["stopping"] is not None:
        return  # the first signal is already stopping the process
    _state["stopping"] = signum
    if not _state["at_once"]:
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    # Importing third-party code: an exception raised inside an import may be swallowed or turned into
    # another, and nothing has started that needs recording, so end here.
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    try:
        sys.stderr.write(f"harness: {what}\n")
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """While the block runs, the first SIGINT raises KeyboardInterrupt and the first SIGTERM `Terminated`
    (inside `ending_at_once`, they end the process at once with one line and exit 130 or 143). Later
    signals are ignored, and stay ignored after a stop (the process is on its way out); otherwise the
    previous handlers come back. Re-entrant; a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        yield
        return
    _state.update(stopping=None, at_once=0)
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    _state["installed"] = True
    try:
        yield
    finally:
        _state["installed"] = False
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if _state["stopping"] is not None else handler)


@contextmanager
def ending_at_once() -> Iterator[None]:
    """While imports or plugin loading run under `stop_signals`: a signal ends the process at once (one
    line, 130 or 143) instead of raising inside third-party code that may swallow the exception."""
    _state["at_once"] += 1
    try:
        yield
    finally:
        _state["at_once"] -= 1


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
