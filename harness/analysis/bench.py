"""`harness bench`: the harness's training path against a naive notebook loop, side by side in one process.

For each architecture both loops train the same model (same initial weights), with the same batch size on
the same images, in alternating repeats so that noise on a shared machine hits both alike:

- the **naive loop** is written the way a notebook would: float32 NCHW, a `DataLoader` over a Dataset that
  runs albumentations per sample, `.item()` on the loss every step, the training confusion matrix on the
  CPU with numpy, the default AdamW;
- the **harness path** is the loop's own `train_one_epoch` on a `Prepared` run: uint8 data resident
  on the device, batched on-device augmentation, bf16 autocast, channels_last, fused AdamW, one host sync
  per epoch;
- the **bare loop** is the model's own forward, backward and fused AdamW step on one pre-made batch in the
  harness's dtype and memory format, nothing else: the limit the harness path can approach, so
  `harness / bare` is the harness's own overhead on this device (the speed-up over the naive loop
  depends on the CPU or GPU).

(The two loops are harness.analysis.bench_loops; the command line and its tables are harness.cli.bench.)

Reported per architecture: train img/s of each (median, min, max over repeats, warm-up excluded), their
ratio, inference img/s, peak memory, params, forward GFLOPs per image, and MFU: achieved training FLOP/s
(3x the forward FLOPs per image: forward plus a backward of twice its cost) over the peak matmul FLOP/s of
this device in the dtype the harness trains in, measured by `peak_matmul_flops` in the same process.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.analysis.bench_loops import BareLoop, HarnessLoop, NaiveLoop, sync
from harness.analysis.memory import memory_in_use, peak_memory, release_freed_memory
from harness.analysis.step_parts import time_parts
from harness.config import Resolved, build_config, resolve
from harness.inference.device import eval_batch_size, pick_device
from harness.inference.scoring import Normalisation, score
from harness.training.distributed import SINGLE
from harness.training.prepare import prepare_on_device

# What the naive loop calls "the model's own work" is the same capability-flag dispatch as the harness:
# deep supervision and instance-based models need it to produce a loss at all.
DEFAULT_ARCHS = ("unet", "unetpp", "segnet", "deeplab", "maskrcnn", "r2unet")


@dataclass(frozen=True)
class BenchSettings:
    archs: tuple[str, ...] = DEFAULT_ARCHS
    data: str = "synthetic"
    limit: int | None = None  # the first N images of the data (data.limit)
    batch_size: int = 32
    steps: int = 12  # timed optimizer steps per repeat
    warmup_steps: int = 3  # untimed steps before the first repeat of each loop
    repeats: int = 3
    infer_batch: int | None = None  # None: the validation batch the device runs fastest (eval_batch_size)
    device: str = "auto"
    compile: bool = False
    parts: bool = False  # also time each part of the harness step against the bare step (step_parts)
    settings: tuple[str, ...] = ()  # extra --set assignments for the harness config


@dataclass
class Timing:
    """Images per second of each repeat."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def summary(self, key: str) -> dict[str, float]:
        return {key: self.median, f"{key}_min": min(self.values), f"{key}_max": max(self.values)}


# ---------------------------------------------------------------------------------------------------------
# The device's peak


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float = 0.4) -> float:
    """The best FLOP/s of square matmuls in `dtype` over a few sizes: the roofline MFU is measured against."""
    sizes = (1024, 2048, 4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for _ in range(2):
            a @ b
        sync(device)
        count, started = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            if count % 4 == 0:
                sync(device)
                elapsed = time.perf_counter() - started
                if elapsed >= seconds:
                    break
        best = max(best, 2 * n**3 * count / elapsed)
    return best


# ---------------------------------------------------------------------------------------------------------
# One architecture, then all


def bench_config(arch: str, settings: BenchSettings, registry) -> Resolved:
    """The harness configuration of `arch` under the benchmark's settings, checked against the plugins."""
    assignments = [
        f"arch.name={arch}",
        f"data.source={settings.data}",
        *([f"data.limit={settings.limit}"] if settings.limit else []),
        f"train.batch_size={settings.batch_size}",
        f"train.device={settings.device}",
        f"train.compile={str(settings.compile).lower()}",
        *settings.settings,
    ]
    config, cli_params = build_config({}, settings=assignments)
    return resolve(config, registry, cli_params)


def bench_arch(
    arch: str, settings: BenchSettings, registry, on_step: Callable[[str], None]
) -> dict[str, Any]:
    """Both loops on one architecture; the row of the table (and of the JSON output)."""
    resolved = bench_config(arch, settings, registry)
    device = pick_device(resolved.config.train.device)
    gc.collect()
    release_freed_memory()
    memory_before = memory_in_use(device)  # the peak is reported above this: data, model, activations
    prep = prepare_on_device(resolved, SINGLE)
    batch = settings.batch_size
    rows = batch * settings.steps
    if len(prep.train_images) < rows:
        reps = -(-rows // len(prep.train_images))
        prep.train_images = prep.train_images.repeat(reps, 1, 1)
        prep.train_masks = prep.train_masks.repeat(reps, 1, 1)
        prep.train_strong = None if prep.train_strong is None else prep.train_strong.repeat(reps)
        if prep.train_distances is not None:
            prep.train_distances = prep.train_distances.repeat(reps, 1, 1, 1)
    naive_model = copy.deepcopy(prep.model).to(memory_format=torch.contiguous_format)
    naive = NaiveLoop(
        resolved,
        naive_model,
        copy.deepcopy(prep.loss_fn),
        prep.train_images[:rows].cpu(),
        prep.train_masks[:rows].cpu(),
        prep.device,
        batch,
    )
    bare = BareLoop(resolved, prep, copy.deepcopy(prep.model), settings.steps)
    harness = HarnessLoop(resolved, prep)
    harness.use_rows(batch * max(settings.warmup_steps, 1))
    on_step(f"{arch}: warm-up")
    started = time.perf_counter()
    harness.epoch()  # the first call compiles when asked, and fills the allocator's caches
    compile_s = time.perf_counter() - started if settings.compile else None
    harness.use_rows(rows)
    _naive_warmup(naive, max(settings.warmup_steps, 1))
    bare.steps, timed_steps = max(settings.warmup_steps, 1), bare.steps
    bare.epoch()
    bare.steps = timed_steps
    naive_t, bare_t, harness_t = Timing(), Timing(), Timing()
    for repeat in range(settings.repeats):
        on_step(f"{arch}: naive loop, repeat {repeat + 1}/{settings.repeats}")
        naive_t.values.append(naive.epoch())
        on_step(f"{arch}: bare loop, repeat {repeat + 1}/{settings.repeats}")
        bare_t.values.append(bare.epoch())
        on_step(f"{arch}: harness, repeat {repeat + 1}/{settings.repeats}")
        harness_t.values.append(harness.epoch())
    on_step(f"{arch}: harness, peak memory")
    with peak_memory(prep.device, memory_before) as memory:  # an epoch of its own: not timed
        harness.epoch()
    parts = None
    if settings.parts:
        model = copy.deepcopy(prep.model)
        parts = time_parts(
            resolved, prep, model, settings.steps, settings.repeats, lambda t: on_step(f"{arch}: {t}")
        )
    on_step(f"{arch}: inference")
    infer_batch = settings.infer_batch or eval_batch_size(prep.device, "auto")
    infer = harness.infer_img_s(infer_batch, settings.repeats)
    return {
        "arch": arch,
        **naive_t.summary("naive_img_s"),
        **bare_t.summary("bare_img_s"),
        **harness_t.summary("harness_img_s"),
        "speedup": harness_t.median / naive_t.median,
        "harness_over_bare": harness_t.median / bare_t.median,
        "infer_img_s": infer,
        "params": prep.params,
        "gflops": prep.gflops,
        "train_gflop_per_img": None if prep.gflops is None else 3 * prep.gflops,
        "peak_mem_mb": memory["mb"],
        "compile_s": compile_s,
        **({} if parts is None else {"step_parts_ms": parts}),
        "amp_dtype": str(prep.amp_dtype).removeprefix("torch.") if prep.amp_dtype else "float32",
        "device": str(prep.device),
    }


def _naive_warmup(naive: NaiveLoop, steps: int) -> None:
    loader = naive.loader
    naive.loader = [batch for _, batch in zip(range(steps), loader, strict=False)]
    try:
        naive.epoch()
    finally:
        naive.loader = loader


def run_bench(settings: BenchSettings, registry, on_step: Callable[[str], None] = lambda _: None) -> dict:
    """The whole benchmark: the device's peak, then every architecture; a JSON-ready dict."""
    unknown = [a for a in settings.archs if a not in registry.specs["architecture"]]
    if unknown:
        registry.get("architecture", unknown[0])  # raises PluginError with a did-you-mean
    rows = []
    peaks: dict[str, float] = {}
    for arch in settings.archs:
        row = bench_arch(arch, settings, registry, on_step)
        dtype_name = row["amp_dtype"]
        if dtype_name not in peaks:
            on_step(f"peak {dtype_name} matmul")
            peaks[dtype_name] = peak_matmul_flops(torch.device(row["device"]), getattr(torch, dtype_name))
        peak = peaks[dtype_name]
        achieved = None if row["gflops"] is None else row["harness_img_s"] * 3 * row["gflops"] * 1e9
        row["mfu"] = None if achieved is None else achieved / peak
        row["peak_tflops"] = peak / 1e12
        rows.append(row)
    return {
        "device": device_name(settings),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": dataclasses.asdict(settings),
        "peak_tflops": {name: value / 1e12 for name, value in peaks.items()},
        "architectures": {row["arch"]: row for row in rows},
    }


# ---------------------------------------------------------------------------------------------------------
# Accuracy parity: both loops trained for the same epochs from the same weights, scored by the same metric


def parity_seed(arch: str, seed: int, epochs: int, settings: BenchSettings, registry) -> dict[str, float]:
    """Validation mIoU of the naive loop and of the harness path after `epochs` epochs, one seed.

    Both use the same split, initial weights, batch size, horizontal flips, AdamW with a constant LR and
    weight decay, and no gradient clipping: what differs is exactly what the harness does for speed
    (bf16 autocast, channels_last, on-device data and augmentation, fused AdamW, no per-step sync).
    """
    extra = ("train.warmup_epochs=0", "train.grad_clip=null", "augment.preset=flips", f"seed={seed}")
    resolved = bench_config(
        arch, dataclasses.replace(settings, settings=(*settings.settings, *extra)), registry
    )
    prep = prepare_on_device(resolved, SINGLE)
    cfg = resolved.config
    naive = NaiveLoop(
        resolved,
        copy.deepcopy(prep.model).to(memory_format=torch.contiguous_format),
        copy.deepcopy(prep.loss_fn),
        prep.train_images.cpu(),
        prep.train_masks.cpu(),
        prep.device,
        settings.batch_size,
    )
    harness = HarnessLoop(resolved, prep)
    for _ in range(epochs):
        naive.epoch()
        harness.epoch()
    common = dict(
        multiple=resolved.multiple,
        num_classes=prep.data.num_classes,
        ignore_index=cfg.data.ignore_index,
        device=prep.device,
        batch_size=eval_batch_size(prep.device, "auto"),
    )
    # The naive loop scaled images to [0, 1] and trained in float32; it is scored the same way.
    naive_metrics, _, _ = score(
        naive.model, prep.val_images, prep.val_masks, norm=Normalisation(0.0, 255.0), amp_dtype=None, **common
    )
    harness_metrics, _, _ = score(
        prep.model, prep.val_images, prep.val_masks, norm=prep.norm, amp_dtype=prep.amp_dtype, **common
    )
    return {"naive_miou": naive_metrics.miou_an2dl, "harness_miou": harness_metrics.miou_an2dl}


def run_parity(
    arch: str, seeds: int, epochs: int, settings: BenchSettings, registry, on_step=lambda _: None
) -> dict[str, Any]:
    """`parity_seed` over seeds 0..seeds-1, with means, sample stds and whether the means agree within one
    std (the larger of the two)."""
    rows = []
    for seed in range(seeds):
        on_step(f"{arch}: parity, seed {seed + 1}/{seeds} ({epochs} epochs each loop)")
        rows.append({"seed": seed, **parity_seed(arch, seed, epochs, settings, registry)})
    naive = [row["naive_miou"] for row in rows]
    harness = [row["harness_miou"] for row in rows]
    spread = max(_std(naive), _std(harness))
    return {
        "arch": arch,
        "epochs": epochs,
        "seeds": rows,
        "naive_mean": statistics.fmean(naive),
        "naive_std": _std(naive),
        "harness_mean": statistics.fmean(harness),
        "harness_std": _std(harness),
        "difference": statistics.fmean(harness) - statistics.fmean(naive),
        "within_one_std": abs(statistics.fmean(harness) - statistics.fmean(naive)) <= spread,
    }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def device_name(settings: BenchSettings) -> str:
    """The device the benchmark runs on, in words (the GPU's name, or the CPU and its threads)."""
    device = pick_device(settings.device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"
