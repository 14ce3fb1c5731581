"""The worker of test_image_tasks' two-process NT-Xent check, in a module of its own so that the
spawned processes import torch and avssl.dist only (not the test module and all it imports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

BATCH, DIM, TEMPERATURE = 6, 4, 0.2


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, DIM, generator=g), torch.randn(BATCH, DIM, generator=g)


def worker(rank: int, port: int, out_dir: str) -> None:
    """One of two processes: NT-Xent on its half of the pairs, embeddings gathered with
    avssl.dist.all_gather_with_grad; writes its loss and its rows' gradients."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from avssl import dist
    from avssl.tasks.image_ops import nt_xent

    dist.init_distributed("cpu")
    half = BATCH // 2
    mine = [z[half * rank : half * (rank + 1)].clone().requires_grad_(True) for z in embeddings()]
    loss, _, _ = nt_xent(mine[0], mine[1], TEMPERATURE, gather=dist.all_gather_with_grad, rank=rank)
    loss.backward()
    grads = [x.grad.tolist() for x in mine if x.grad is not None]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"loss": loss.item(), "grad": grads}))
    dist.cleanup()
    os._exit(0)  # skip the interpreter's teardown: the result is on disk
