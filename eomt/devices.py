"""Where and in what precision a model runs: the `--device` and `--dtype` options of every command line, autocast,
and torch.distributed under torchrun (the dump's ranks shard the images, training's ranks shard the batches)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from eomt.config import PRECISIONS


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        return items[self.rank :: self.world]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj) -> list:
        """Every rank's `obj`, on the main rank (other ranks get an empty list)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out or []

    def broadcast(self, obj):
        """The main rank's `obj` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over the ranks, in place."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def init_ranks(device: str) -> Ranks:
    """Joins the process group torchrun set up (WORLD_SIZE > 1); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_nccl = device != "cpu" and torch.cuda.is_available()
    if use_nccl:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)


_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {None: "fp32", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16", torch.float32: "fp32",
            torch.bfloat16: "bf16", torch.float16: "fp16"}


def precision_name(precision) -> str:
    """fp32, bf16 or fp16 from a name, an alias (float32, bfloat16, float16) or a torch dtype; None is fp32."""
    name = _ALIASES.get(precision, precision)
    if name not in _AUTOCAST:
        raise ValueError(f"dtype must be one of {', '.join(PRECISIONS)} (or the torch dtypes), got {precision!r}")
    return name


def autocast_dtype(precision) -> torch.dtype | None:
    """The autocast dtype of a precision, None for fp32."""
    return _AUTOCAST[precision_name(precision)]


def check_precision(precision, device: str | torch.device) -> None:
    """fp16 autocast is for CUDA (the official numbers were made there); on CPU it is slow where it works at all."""
    if precision_name(precision) == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("--dtype fp16 needs a CUDA device; on CPU use fp32 or bf16")


def autocast(device: str | torch.device, precision):
    """The autocast context of a precision on a device (a no-op for fp32)."""
    check_precision(precision, device)
    dtype = autocast_dtype(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()


def resolve_device(requested: str, local_rank: int = 0) -> str:
    """auto -> cuda when available, else cpu; cuda -> this rank's GPU. A clear error when CUDA is missing."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available on this machine (use --device cpu)")
        if requested == "cuda":
            requested = f"cuda:{local_rank}"
    elif requested != "cpu":
        raise ValueError(f"--device {requested}: expected auto, cpu, cuda or cuda:N")
    return requested
