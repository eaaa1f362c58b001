"""The benchmark's memory figures: the kernel's peak without a sampler, and the sampler where it must."""

from __future__ import annotations

import time

import pytest
import torch

from harness.analysis import memory


@pytest.mark.skipif(not memory.reset_peak_rss(), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_on_cpu_sees_a_short_lived_allocation_without_a_sampler(monkeypatch):
    monkeypatch.setattr(memory.threading, "Thread", lambda *a, **k: pytest.fail("a sampler started"))
    device = torch.device("cpu")
    base = memory.memory_in_use(device)
    with memory.peak_memory(device, base) as peak:
        block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched, then freed inside the block
        del block
    assert 60 <= peak["mb"] < 200


def test_peak_memory_falls_back_to_sampling_where_the_peak_cannot_be_reset(monkeypatch):
    monkeypatch.setattr(memory, "reset_peak_rss", lambda: False)
    device = torch.device("cpu")
    base = memory.memory_in_use(device)
    with memory.peak_memory(device, base) as peak:
        block = torch.ones(64 * 2**20, dtype=torch.uint8)
        time.sleep(0.05)  # the sampler looks every 2 ms
        del block
    assert 60 <= peak["mb"] < 200
