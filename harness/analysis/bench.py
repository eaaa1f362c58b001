"""`harness bench`: the harness's training path against a naive notebook loop, side by side in one process.

For each architecture both loops train the same model (same initial weights), with the same batch size on
the same images, in alternating repeats so that noise on a shared machine hits both alike:

- the **naive loop** is written the way a notebook would: float32 NCHW, a `DataLoader` over a Dataset that
  runs albumentations per sample, `.item()` on the loss every step, the training confusion matrix on the
  CPU with numpy, the default AdamW;
- the **harness path** is the loop's own `train_one_epoch` on a `Prepared` run: uint8 data resident
  on the device, batched on-device augmentation, bf16 autocast, channels_last, fused AdamW, one host sync
  per epoch.

Reported per architecture: train img/s of each (median, min, max over repeats, warm-up excluded), their
ratio, inference img/s, peak memory, params, forward GFLOPs per image, and MFU: achieved training FLOP/s
(3x the forward FLOPs per image: forward plus a backward of twice its cost) over the peak matmul FLOP/s of
this device in the dtype the harness trains in, measured by `peak_matmul_flops` in the same process.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.augment.vocabulary import _albumentations
from harness.config import build_config, resolve
from harness.errors import ConfigError, HarnessError
from harness.inference.device import eval_batch_size, pick_device
from harness.inference.scoring import Normalisation, forward_logits, score
from harness.training.distributed import SINGLE
from harness.training.loop import (
    Budget,
    Prepared,
    _prepare_on_device,
    compute_loss,
    make_optimizer,
    make_schedule,
    train_one_epoch,
)

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
# The device's peak and memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_in_use(device: torch.device) -> int:
    """Bytes in use now: the CUDA allocator's, or the process's resident set on the CPU (0 if unknown)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _rss_bytes() if os.path.exists("/proc/self/statm") else 0


@contextmanager
def peak_memory(device: torch.device, base: int):
    """Yields a dict whose `mb` is, afterwards, the peak memory in use during the block above `base`.

    CUDA: the allocator's peak. CPU: the peak resident set size, sampled every 2 ms by a thread (the CPU
    allocator keeps no peak of its own); None where /proc is missing (not Linux).
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


# ---------------------------------------------------------------------------------------------------------
# The naive reference loop, as a notebook writes it


class NotebookDataset(torch.utils.data.Dataset):
    """Per-sample albumentations and a float tensor per item, scaled to [0, 1]."""

    def __init__(self, images: np.ndarray, masks: np.ndarray):
        A, _ = _albumentations()
        self.images, self.masks = images, masks
        self.transform = A.Compose([A.HorizontalFlip(p=0.5)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.transform(image=self.images[index], mask=self.masks[index])
        image = torch.from_numpy(out["image"].astype(np.float32) / 255.0).unsqueeze(0)
        return image, torch.from_numpy(out["mask"].astype(np.int64))


def _numpy_confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(target.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)


class NaiveLoop:
    """One model trained the notebook way; `epoch()` runs one pass over its loader and returns img/s."""

    def __init__(self, resolved, model: nn.Module, loss_fn: nn.Module, images, masks, device, batch_size):
        self.resolved, self.model, self.loss_fn, self.device = resolved, model.to(device), loss_fn, device
        train = resolved.config.train
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        dataset = NotebookDataset(images.numpy(), masks.numpy())
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True
        )
        self.k = resolved.config.data.num_classes
        self.confusion = np.zeros((self.k, self.k), dtype=np.int64)

    def epoch(self) -> float:
        self.model.train()
        seen, running, started = 0, 0.0, time.perf_counter()
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            loss = compute_loss(self.resolved, self.model, self.loss_fn, x, y, self.resolved.multiple)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            running += loss.item()
            if not self.resolved.arch.instance_based:  # in training it returns losses, not logits
                with torch.no_grad():
                    logits = forward_logits(self.model, x, self.resolved.multiple)
                    logits = logits[-1] if isinstance(logits, list) else logits
                pred = logits.argmax(1).cpu().numpy()
                self.confusion += _numpy_confusion(pred, y.cpu().numpy(), self.k)
            seen += len(x)
        return seen / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------------
# The harness path


class HarnessLoop:
    """The training loop's own epoch function on a `Prepared` run, over its first `use_rows` images."""

    def __init__(self, resolved, prep: Prepared):
        self.resolved, self.full = resolved, prep
        self.prep = prep
        cfg = resolved.config.train
        self.optimizer = make_optimizer(prep.model, cfg, prep.device)
        self.budget = Budget(None)
        per_epoch = max(len(prep.train_images) // cfg.batch_size, 1)
        self.schedule = make_schedule(self.optimizer, cfg, per_epoch, self.budget)
        self.net = torch.compile(prep.model) if cfg.compile else prep.model
        self.epochs = 0

    def use_rows(self, rows: int) -> None:
        """Make an epoch the first `rows` training images (a whole number of batches)."""
        full = self.full
        self.prep = dataclasses.replace(
            full,
            train_images=full.train_images[:rows],
            train_masks=full.train_masks[:rows],
            train_strong=None if full.train_strong is None else full.train_strong[:rows],
            train_distances=None if full.train_distances is None else full.train_distances[:rows],
        )

    def epoch(self) -> float:
        self.epochs += 1
        _, seen, seconds = train_one_epoch(
            self.resolved, self.prep, self.net, self.optimizer, self.schedule, self.epochs, self.budget, None
        )
        return seen / seconds

    def infer_img_s(self, batch_size: int, repeats: int, count: int = 512) -> float:
        """Validation's own scoring (autocast, `batch_size` images per forward, metric on the device) of
        `count` images, the validation split repeated as needed."""
        prep, images = self.prep, self.prep.val_images
        count = max(count, batch_size)
        reps = -(-count // max(len(images), 1))
        images = images.repeat(reps, 1, 1)[:count]
        masks = prep.val_masks.repeat(reps, 1, 1)[:count]
        kwargs = dict(
            norm=prep.norm,
            multiple=self.resolved.multiple,
            num_classes=prep.data.num_classes,
            ignore_index=self.resolved.config.data.ignore_index,
            device=prep.device,
            batch_size=batch_size,
            amp_dtype=prep.amp_dtype,
        )
        images, masks = images.to(prep.device), masks.to(prep.device)
        score(self.net, images, masks, **kwargs)  # warm-up
        timing = []
        for _ in range(repeats):
            sync(prep.device)
            started = time.perf_counter()
            score(self.net, images, masks, **kwargs)
            sync(prep.device)
            timing.append(len(images) / (time.perf_counter() - started))
        return statistics.median(timing)


# ---------------------------------------------------------------------------------------------------------
# One architecture, then all


def _resolved(arch: str, settings: BenchSettings, registry):
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
    resolved = _resolved(arch, settings, registry)
    device = pick_device(resolved.config.train.device)
    gc.collect()
    memory_before = memory_in_use(device)  # the peak is reported above this: data, model, activations
    prep = _prepare_on_device(resolved, SINGLE)
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
    harness = HarnessLoop(resolved, prep)
    harness.use_rows(batch * max(settings.warmup_steps, 1))
    on_step(f"{arch}: warm-up")
    started = time.perf_counter()
    harness.epoch()  # the first call compiles when asked, and fills the allocator's caches
    compile_s = time.perf_counter() - started if settings.compile else None
    harness.use_rows(rows)
    _naive_warmup(naive, max(settings.warmup_steps, 1))
    naive_t, harness_t, memory = Timing(), Timing(), {}
    for repeat in range(settings.repeats):
        on_step(f"{arch}: naive loop, repeat {repeat + 1}/{settings.repeats}")
        naive_t.values.append(naive.epoch())
        on_step(f"{arch}: harness, repeat {repeat + 1}/{settings.repeats}")
        with peak_memory(prep.device, memory_before) as mem:
            harness_t.values.append(harness.epoch())
        if mem["mb"] is not None:
            memory["peak_mem_mb"] = max(memory.get("peak_mem_mb", 0.0), mem["mb"])
    on_step(f"{arch}: inference")
    infer_batch = settings.infer_batch or eval_batch_size(prep.device, "auto")
    infer = harness.infer_img_s(infer_batch, settings.repeats)
    return {
        "arch": arch,
        **naive_t.summary("naive_img_s"),
        **harness_t.summary("harness_img_s"),
        "speedup": harness_t.median / naive_t.median,
        "infer_img_s": infer,
        "params": prep.params,
        "gflops": prep.gflops,
        "train_gflop_per_img": None if prep.gflops is None else 3 * prep.gflops,
        "peak_mem_mb": memory.get("peak_mem_mb"),
        "compile_s": compile_s,
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
        "device": _device_name(settings),
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
    resolved = _resolved(arch, dataclasses.replace(settings, settings=(*settings.settings, *extra)), registry)
    prep = _prepare_on_device(resolved, SINGLE)
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


def _device_name(settings: BenchSettings) -> str:
    device = pick_device(settings.device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    from harness.cli.app import add_set_option

    p.add_argument("--arch", help=f"comma-separated architectures (default {','.join(DEFAULT_ARCHS)})")
    p.add_argument("--data", default="synthetic", help="dataset name or AN2DL .npz path (default synthetic)")
    p.add_argument("--limit", type=int, help="use only the first N images of the data")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size of both loops (32)")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per repeat (12)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before timing (3)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each loop, alternating (3)")
    p.add_argument(
        "--infer-batch",
        type=int,
        help="inference batch size (default: the validation batch, 32 CPU / 512 CUDA)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the harness model (time reported)")
    add_set_option(p, "a config override for the harness path, e.g. --set augment.preset=standard")
    p.add_argument(
        "--parity",
        action="store_true",
        help="instead of speed: train both loops --epochs epochs for --seeds seeds and compare val mIoU",
    )
    p.add_argument("--seeds", type=int, default=3, help="--parity: seeds 0..N-1 (3)")
    p.add_argument("--epochs", type=int, default=3, help="--parity: epochs of each loop per seed (3)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.add_argument("--out", metavar="FILE.json", help="also write the JSON result to this file")


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    for name in ("batch_size", "steps", "repeats", "infer_batch", "seeds", "epochs", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup_steps < 0:
        raise ConfigError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    archs = tuple(a.strip() for a in args.arch.split(",") if a.strip()) if args.arch else DEFAULT_ARCHS
    if not archs:
        raise ConfigError("--arch names no architecture")
    return BenchSettings(
        archs=archs,
        data=args.data,
        limit=args.limit,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        repeats=args.repeats,
        infer_batch=args.infer_batch,
        device=args.device,
        compile=args.compile,
        settings=tuple(args.settings),
    )


def _fmt_rate(row: dict, key: str) -> str:
    return f"{row[key]:.0f} [{row[key + '_min']:.0f}-{row[key + '_max']:.0f}]"


def print_table(result: dict) -> None:
    from rich.table import Table

    from harness.cli.commands import _wide_console

    peaks = ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in result["peak_tflops"].items())
    table = Table(title=f"harness bench on {result['device']}: peak matmul {peaks}", title_justify="left")
    for name in ("arch", "naive img/s", "harness img/s", "speedup", "infer img/s", "MFU", "params (M)"):
        table.add_column(name, justify="left" if name == "arch" else "right")
    table.add_column("GFLOPs/img", justify="right")
    table.add_column("peak mem (MB)", justify="right")
    if result["settings"]["compile"]:
        table.add_column("compile (s)", justify="right")
    for row in result["architectures"].values():
        cells = [
            row["arch"],
            _fmt_rate(row, "naive_img_s"),
            _fmt_rate(row, "harness_img_s"),
            f"{row['speedup']:.2f}x",
            f"{row['infer_img_s']:.0f}",
            "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%",
            f"{row['params'] / 1e6:.2f}",
            "-" if row["gflops"] is None else f"{row['gflops']:.2f}",
            "-" if row["peak_mem_mb"] is None else f"{row['peak_mem_mb']:.0f}",
        ]
        if result["settings"]["compile"]:
            cells.append(f"{row['compile_s']:.1f}")
        table.add_row(*cells)
    console = _wide_console()
    console.print(table)
    s = result["settings"]
    console.print(
        f"batch {s['batch_size']}, {s['steps']} timed steps x {s['repeats']} repeats per loop (median "
        f"\\[min-max]), data {s['data']}; MFU = harness img/s x 3 x GFLOPs/img / peak matmul FLOP/s"
    )


def command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.cli.commands import _registry

    settings = settings_from_args(args)
    registry = _registry(args)
    err = Console(stderr=True, highlight=False)

    def work(on_step):
        if not args.parity:
            return run_bench(settings, registry, on_step)
        parity = [
            run_parity(arch, args.seeds, args.epochs, settings, registry, on_step) for arch in settings.archs
        ]
        return {"device": _device_name(settings), "settings": dataclasses.asdict(settings), "parity": parity}

    if err.is_terminal and args.format == "table":
        with err.status("benchmarking") as status:
            result = work(lambda text: status.update(text))
    else:
        result = work(lambda text: None)
    text = json.dumps(result, indent=2, allow_nan=False, default=str)
    if args.out:
        try:
            with open(args.out, "w") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            raise HarnessError(f"{args.out}: cannot write: {exc.strerror}") from None
    if args.format == "json":
        sys.stdout.write(text + "\n")
    elif args.parity:
        print_parity(result)
    else:
        print_table(result)
    return 0


def print_parity(result: dict) -> None:
    from rich.table import Table

    from harness.cli.commands import _wide_console

    table = Table(
        title=f"accuracy parity on {result['device']}: val mIoU after the same epochs", title_justify="left"
    )
    for name in ("arch", "epochs", "seed", "naive mIoU", "harness mIoU"):
        table.add_column(name, justify="left" if name == "arch" else "right")
    for block in result["parity"]:
        for row in block["seeds"]:
            table.add_row(
                block["arch"],
                str(block["epochs"]),
                str(row["seed"]),
                f"{row['naive_miou']:.4f}",
                f"{row['harness_miou']:.4f}",
            )
        verdict = "within one std" if block["within_one_std"] else "NOT within one std"
        table.add_row(
            block["arch"],
            str(block["epochs"]),
            "mean ± std",
            f"{block['naive_mean']:.4f} ± {block['naive_std']:.4f}",
            f"{block['harness_mean']:.4f} ± {block['harness_std']:.4f} ({verdict})",
            end_section=True,
        )
    _wide_console().print(table)
