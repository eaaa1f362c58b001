"""harness.training.signals: SIGTERM raised like Ctrl-C, and signals held while a final status is written."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from harness.training.signals import Terminated, signals_deferred, sigterm_interrupts


def test_sigterm_raises_terminated_a_keyboard_interrupt_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # a no-op that gives the handler its chance
    assert issubclass(Terminated, KeyboardInterrupt)  # the same path records the run 'interrupted'
    assert signal.getsignal(signal.SIGTERM) is before


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
    with pytest.raises(Terminated), sigterm_interrupts(), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished


def test_outside_the_main_thread_both_are_no_ops():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen = []

    def worker():  # signal.signal would raise ValueError here: only the main thread may set handlers
        with sigterm_interrupts(), signals_deferred():
            seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]
