"""harness.training.signals: SIGTERM raised like Ctrl-C, the first signal stopping the command (later ones
ignored), and signals held while a final status is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from harness.training.signals import (
    Terminated,
    signals_deferred,
    stop_signals,
)


def test_sigterm_raises_terminated_a_keyboard_interrupt():
    with pytest.raises(Terminated), stop_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # a no-op that gives the handler its chance
    assert issubclass(Terminated, KeyboardInterrupt)  # the same path records the run 'interrupted'


def test_a_signal_during_the_deferred_block_is_delivered_after_it():
    events = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            events.append("still writing")  # the Ctrl-C has not interrupted the write
            events.append("written")
        events.append("never reached")  # delivered as the block ends
    assert events == ["still writing", "written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_a_sigterm_during_the_deferred_block_lands_after_it_as_terminated():
    with pytest.raises(Terminated), stop_signals(), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished


def test_outside_the_main_thread_both_are_no_ops():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = []

    def worker():  # signal.signal would raise ValueError here: only the main thread may set handlers
        with stop_signals(), signals_deferred():
            seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def test_under_stop_signals_the_first_signal_raises_and_later_ones_are_ignored():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)
        finally:
            for _ in range(3):  # Ctrl-C pressed again while the run is recorded: no second exception
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the process is on its way out
    signal.signal(signal.SIGINT, before)
    with stop_signals():
        pass
    assert signal.getsignal(signal.SIGINT) is before  # no stop: the handlers come back


def test_while_plugins_load_a_signal_ends_the_process_at_once_in_one_line():
    code = "from harness.training.signals import ending_at_once, stop_signals\nimport os, signal, time\n"
    code += "with stop_signals(), ending_at_once():\n"
    code += "    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(5)\n"
    code += "print('not reached')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143 and done.stdout == ""
    assert done.stderr == "harness: terminated (SIGTERM)\n"
