"""One run trained by several processes: `torchrun --nproc_per_node N -m harness run ...`.

torchrun starts N copies of the command with WORLD_SIZE, RANK and LOCAL_RANK set. Every copy builds the
same data and model from the same seed; DDP averages the gradients, each process validates a contiguous
shard of the validation images and the per-image confusion matrices are gathered, so the metrics are
exactly the single-process ones. Rank 0 alone writes the store, the checkpoint and the progress; the
other ranks run the same code with a `NullStore` and silent hooks.

`train.batch_size` stays the global batch (each rank takes batch_size / N), so a DDP run is the same
experiment as a single-process one and shares its config hash.

Without those variables, or with WORLD_SIZE=1, `SINGLE` is used: every helper here returns at once, and
the single-process loop has no wrapper and no collective.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from harness.errors import ConfigError
from harness.inference.device import pick_device


@dataclass(frozen=True)
class World:
    """The processes training one run; `SINGLE` (size 1) is a plain run and makes every method a no-op."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device | None = None  # None: the run picks its device from train.device
    control: Any = None  # process group for host-side decisions (gloo); None: the default group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the store, the checkpoint and the console."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all ranks, in place, and return it."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any: stop decisions must be taken together, or the
        ranks that go on wait forever in their next collective."""
        if self.size == 1:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)  # on the CPU: no CUDA sync through gloo
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (e.g. the run id, which is random)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        Training does not broadcast them each step (`forward_sync_buffers=False`): rank 0, the source, never
        receives anything anyway, so broadcasting once before validation gives the same model for the
        price of one broadcast per epoch. After it, every rank validates exactly rank 0's checkpoint.
        """
        if self.size == 1:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def shard_sizes(self, count: int) -> list[int]:
        """How many of `count` validation rows each rank scores (contiguous, the first ranks one more)."""
        base, extra = divmod(count, self.size)
        return [base + (rank < extra) for rank in range(self.size)]

    def shard(self, count: int) -> slice:
        """This rank's contiguous rows of `count`; concatenated in rank order they are 0..count-1."""
        sizes = self.shard_sizes(count)
        start = sum(sizes[: self.rank])
        return slice(start, start + sizes[self.rank])

    def gather_rows(self, rows: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's `shard(count)` rows of a tensor, concatenated in the original row order."""
        if self.size == 1:
            return rows
        sizes = self.shard_sizes(count)
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]))  # all_gather needs equal shapes
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    def epoch_order(self, count: int, seed: int, epoch: int) -> torch.Tensor:
        """This rank's training rows for `epoch`: a DistributedSampler shuffle of range(count) by the run
        seed, the ragged tail dropped so that every rank takes the same number of steps."""
        sampler = torch.utils.data.DistributedSampler(
            range(count), num_replicas=self.size, rank=self.rank, shuffle=True, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    def wrap(self, model: nn.Module, find_unused_parameters: bool) -> nn.Module:
        """`model` in DistributedDataParallel (the model itself in a single process)."""
        if self.size == 1:
            return model
        cuda = self.device is not None and self.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[self.device.index] if cuda else None,
            forward_sync_buffers=False,  # see broadcast_buffers: once per epoch is enough
            find_unused_parameters=find_unused_parameters,
        )


SINGLE = World()


def launched_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.isdigit():
        raise ConfigError(f"WORLD_SIZE is set but {name} is {value!r}; start the run with torchrun")
    return int(value)


@contextmanager
def process_group(device_name: str) -> Iterator[World]:
    """Join the torchrun process group for a run on `device_name` (train.device); destroyed on exit.

    CUDA runs use NCCL with rank i on cuda:LOCAL_RANK (the index in train.device is ignored); CPU runs
    use gloo. A second, gloo group carries the host-side stop decisions so that they never wait on the GPU.
    """
    size, rank, local_rank = launched_size(), _env_int("RANK"), _env_int("LOCAL_RANK")
    device = pick_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} CUDA devices; "
                "use --nproc_per_node at most that"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"torchrun runs on cuda or cpu, not {device.type} (use --device cpu)")
    dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    try:
        control = dist.new_group(backend="gloo") if backend == "nccl" else None
        yield World(size=size, rank=rank, local_rank=local_rank, device=device, control=control)
        # Every rank finishes before any tears down: a rank leaving while its peer still talks to it (rank 0
        # records and prints last) can abort gloo's connection threads ("terminate called ...", SIGABRT).
        dist.barrier()
    finally:
        dist.destroy_process_group()


class NullStore:
    """The run store of ranks other than 0: accepts every write and keeps nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __enter__(self) -> NullStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def run_dir(self, run_id: str) -> Path:
        return self.path.parent / run_id

    def start_run(self, **fields: Any) -> None:
        pass

    def log_epoch(self, run_id: str, epoch: int, values: dict) -> None:
        pass

    def finish_run(self, run_id: str, **fields: Any) -> None:
        pass


class _SilentHooks:
    def __getattr__(self, name: str):
        return lambda **kwargs: None


class SilentRegistry:
    """What ranks other than 0 call lifecycle hooks on: logging plugins run once per run, on rank 0."""

    hook = _SilentHooks()


def is_rank_zero() -> bool:
    """True outside torchrun and on its rank 0: the one process that prints a run's result."""
    return os.environ.get("RANK", "0") == "0"
