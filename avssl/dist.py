"""Distributed training helpers: the torchrun environment, collectives, rank-0 printing.

Without torchrun variables every helper is a no-op (rank 0 of 1).
Design notes: docs/design/data.md, "avssl.dist".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job: its global ``rank`` of ``world_size`` processes, its
    ``local_rank`` on this machine, and the ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one process (a process group exists)."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r}: expected an integer") from None


def _cpus_available() -> int:
    """CPUs this process may run on (the affinity mask honours cgroup cpusets and taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def init_distributed(device: Literal["auto", "cpu", "cuda"] = "auto") -> DistEnv:
    """Read the torchrun environment, join the process group if there are several processes,
    and pick this process's device.

    Args:
        device: ``"auto"`` uses ``cuda:{LOCAL_RANK}`` when CUDA is available, else the CPU;
            ``"cpu"`` forces the CPU (and Gloo); ``"cuda"`` requires a GPU.

    Without the torchrun variables this is a single process: rank 0 of 1, no process group.
    With ``WORLD_SIZE > 1`` it calls :func:`torch.distributed.init_process_group` (``env://``:
    ``MASTER_ADDR``/``MASTER_PORT``) unless a group already exists.

    On the CPU with several processes per machine it also sets ``torch.set_num_threads`` to
    ``cpus // LOCAL_WORLD_SIZE`` (docs/design/data.md, "CPU threads").
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"init_distributed: device={device!r}: expected 'auto', 'cpu' or 'cuda'")
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"environment RANK={rank}, WORLD_SIZE={world_size}: expected 0 <= RANK < WORLD_SIZE"
        )
    if local_rank < 0 or local_world_size < 1:
        raise ValueError(
            f"environment LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world_size}: "
            "expected LOCAL_RANK >= 0 and LOCAL_WORLD_SIZE >= 1"
        )

    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("init_distributed: device='cuda' but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"environment LOCAL_RANK={local_rank}: only {torch.cuda.device_count()} CUDA "
                "devices are visible; use at most that many processes per machine"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
        if local_world_size > 1:
            torch.set_num_threads(max(1, _cpus_available() // local_world_size))

    if world_size > 1 and not dist.is_initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set; launch with "
                "torchrun (which sets them) or set them to rank 0's address and a free port"
            )
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size
        )
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank; 0 without a process group."""
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    """The number of processes; 1 without a process group."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0 or when not distributed: the process that logs and writes files."""
    return get_rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    """:func:`print` on the main process only (flushed, so logs interleave in order)."""
    if is_main():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def cleanup() -> None:
    """Leave and destroy the process group, if any (call once at the end of training)."""
    if _active():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here; a no-op for a single process."""
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place, and return it (unchanged when single)."""
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum of ``tensor`` over all processes, in place, and return it (unchanged
    when single). On 0/1 flags it is "any process": how the ranks agree to stop together."""
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends each process the gradient of its own part.

    Every process's loss may depend on every part (e.g. a contrastive loss over the gathered
    batch), so the gradient of a process's input is the *sum over processes* of the gradient
    flowing into its slot: backward all-reduces the full gradient and keeps the local slice.
    With DDP averaging parameter gradients afterwards, this gives the exact gradient of the mean
    loss over processes (not the "local loss only" approximation that drops cross terms).
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> torch.Tensor:
        grad = grad_outputs[0].contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, keeping autograd to the local part.

    ``tensor`` must have the same shape on every process; the result is ``(world * B, ...)``
    with rank ``r``'s rows at ``[r * B, (r + 1) * B)``. Backward sums, over processes, the
    gradient that reaches this process's rows (see :class:`_GatherWithGrad`). Every process must
    call backward, since it is a collective. Returns ``tensor`` itself for a single process.
    """
    if get_world_size() == 1:
        return tensor
    out = _GatherWithGrad.apply(tensor)
    assert isinstance(out, torch.Tensor)
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable value) on every process; ``obj`` itself when single."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
