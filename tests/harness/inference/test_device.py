"""Device choice and the mixed-precision dtype: explicit devices that are missing fail with one line, and
bf16 is used only where the hardware runs it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.inference.device import eval_batch_size, pick_amp_dtype, pick_device

CPU = torch.device("cpu")


def test_auto_picks_what_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == CPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_explicit_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("cpu") == CPU
    with pytest.raises(
        ConfigError, match=r"device 'cuda:1' requested but CUDA is not available.*--device cpu"
    ):
        pick_device("cuda:1")
    with pytest.raises(ConfigError, match="device 'mps' requested but MPS is not available"):
        pick_device("mps")
    with pytest.raises(ConfigError, match=r"unknown device 'gpu0' \(choices: auto, cpu, cuda, cuda:N, mps\)"):
        pick_device("gpu0")


def _cpuinfo(monkeypatch, text: str | None) -> None:
    def read_text(self, *args, **kwargs):
        if str(self) != "/proc/cpuinfo":
            raise AssertionError(f"unexpected read of {self}")
        if text is None:
            raise OSError("no /proc here")
        return text

    monkeypatch.setattr(Path, "read_text", read_text)


def test_cpu_autocast_only_with_native_bf16(monkeypatch):
    _cpuinfo(monkeypatch, "flags : fpu sse avx2 avx512f")
    assert pick_amp_dtype(CPU, True) is None  # emulated bf16 is slower than float32
    _cpuinfo(monkeypatch, "flags : fpu avx512f avx512_bf16")
    assert pick_amp_dtype(CPU, True) is torch.bfloat16
    _cpuinfo(monkeypatch, "flags : amx_bf16 amx_tile")
    assert pick_amp_dtype(CPU, True) is torch.bfloat16
    _cpuinfo(monkeypatch, None)
    assert pick_amp_dtype(CPU, True) is None


def test_amp_disabled_is_always_float32(monkeypatch):
    _cpuinfo(monkeypatch, "flags : avx512_bf16")
    assert pick_amp_dtype(CPU, False) is None
    assert pick_amp_dtype(torch.device("cuda"), False) is None


def test_cuda_prefers_bf16_and_falls_back_to_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_amp_dtype(torch.device("cuda"), True) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_amp_dtype(torch.device("cuda"), True) is torch.float16
    assert pick_amp_dtype(torch.device("mps"), True) is None


def test_eval_batch_size_auto_and_explicit():
    assert eval_batch_size(CPU, "auto") == 32
    assert eval_batch_size(torch.device("cuda"), "auto") == 512
    assert eval_batch_size(CPU, 7) == 7
    assert eval_batch_size(torch.device("cuda"), 64) == 64
