"""Memory the speed benchmark reports: in use now, and the peak during a block (CUDA or this process).

On CPU the peak is the kernel's own high-water mark of the resident set (VmHWM, reset through
/proc/self/clear_refs), so nothing samples during the block; where it cannot be reset a thread samples
the resident set every 2 ms instead, which takes the GIL and some of a core.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from contextlib import contextmanager

import torch

from harness.analysis.bench_loops import sync


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: the CUDA allocator's, or the process's resident set on the CPU (0 if unknown)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _rss_bytes() if os.path.exists("/proc/self/statm") else 0


def release_freed_memory() -> None:
    """Hand the memory glibc keeps after frees back to the system (malloc_trim), so that the resident set
    measured before an architecture is what is in use, not what the previous one left cached."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the baseline stays rough
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set of this process (Linux: '5' to /proc/self/clear_refs);
    False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The kernel's peak resident set of this process since the last reset (VmHWM)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


@contextmanager
def peak_memory(device: torch.device, base: int):
    """Yields a dict whose `mb` is, afterwards, the peak memory in use during the block above `base`.

    CUDA: the allocator's peak. CPU: the kernel's peak resident set (VmHWM, reset before the block), or,
    where it cannot be reset, the resident set sampled every 2 ms by a thread; None without /proc. The
    sampler takes the GIL and a core's time (about 4 % of a 2-core U-Net step), so the bench measures
    memory in an epoch it does not time.
    """
    out: dict[str, float | None] = {}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        sync(device)
        out["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    if not os.path.exists("/proc/self/statm"):
        yield out
        out["mb"] = None
        return
    if reset_peak_rss():
        yield out
        out["mb"] = (peak_rss_bytes() - base) / 2**20
        return
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["mb"] = (max(peak[0], _rss_bytes()) - base) / 2**20
