"""avssl.dist: single-process no-ops, and a real two-process Gloo job on the CPU (no torchrun)."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from avssl import dist as avdist
from avssl.dist import DistEnv, init_distributed

TORCHRUN_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
WORLD = 2
ROWS = 2  # rows per process in the gather test


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    assert not dist.is_initialized()


def test_single_process_env(single_process: None) -> None:
    threads = torch.get_num_threads()
    env = init_distributed("cpu")
    assert env == DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert env.is_main and not env.distributed
    assert not dist.is_initialized()
    assert torch.get_num_threads() == threads  # one process: thread count left alone
    auto = init_distributed("auto")
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(auto.device) == expected and auto.rank == 0 and auto.world_size == 1


def test_single_process_helpers_are_noops(
    single_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert avdist.get_rank() == 0 and avdist.get_world_size() == 1 and avdist.is_main()
    t = torch.tensor([1.0, 2.0])
    assert avdist.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert avdist.all_reduce_max(t) is t and t.tolist() == [1.0, 2.0]
    x = torch.ones(3, 2, requires_grad=True)
    gathered = avdist.all_gather_with_grad(x)
    assert gathered is x
    (gathered * 2).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.full((3, 2), 2.0))
    obj = {"a": [1, 2]}
    assert avdist.broadcast_object(obj) is obj
    avdist.barrier()
    avdist.cleanup()
    avdist.print0("hello", 3)
    assert capsys.readouterr().out == "hello 3\n"


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"RANK": "one"}, r"RANK='one': expected an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK=2, WORLD_SIZE=2: expected 0 <= RANK"),
        ({"WORLD_SIZE": "0"}, r"WORLD_SIZE=0"),
        ({"LOCAL_RANK": "-1"}, r"LOCAL_RANK=-1"),
        ({"LOCAL_WORLD_SIZE": "x"}, r"LOCAL_WORLD_SIZE='x'"),
    ],
)
def test_bad_environment(
    single_process: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pattern: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=pattern):
        init_distributed("cpu")


def test_missing_master_addr(single_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT not set; launch with"):
        init_distributed("cpu")
    assert not dist.is_initialized()


def test_bad_device(single_process: None) -> None:
    with pytest.raises(ValueError, match=r"device='gpu': expected 'auto', 'cpu' or 'cuda'"):
        init_distributed("gpu")  # type: ignore[arg-type]


def weights(rank: int) -> torch.Tensor:
    """Each process's loss weights over the gathered ``(WORLD * ROWS, 2)`` batch; they differ
    by rank and by row so a wrong slice or a missing cross-process term shows up."""
    i = torch.arange(WORLD * ROWS, dtype=torch.float32).view(-1, 1)
    j = torch.arange(2, dtype=torch.float32).view(1, -1)
    return (rank + 1) * (i + 1) + 10 * j


def local_rows(rank: int) -> torch.Tensor:
    return torch.arange(ROWS * 2, dtype=torch.float32).view(ROWS, 2) + 100 * rank


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One process of the two-process job (one machine, so local rank = rank); writes what it
    saw to ``out_dir/rank{r}.json``. Sets the variables torchrun would set, then initialises."""
    local_rank = rank
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    env = init_distributed("cpu")
    result: dict[str, Any] = {
        "env": [env.rank, env.world_size, env.local_rank, str(env.device)],
        "is_main": [env.is_main, avdist.is_main()],
        "distributed": env.distributed,
        "backend": dist.get_backend(),
        "threads": torch.get_num_threads(),
    }
    t = torch.tensor([rank + 1.0, 10.0])
    result["all_reduce_same_object"] = avdist.all_reduce_sum(t) is t
    result["all_reduce"] = t.tolist()
    flags = torch.tensor([rank, 1 - rank, 0], dtype=torch.int32)  # one rank's flag stops all
    result["all_reduce_max"] = avdist.all_reduce_max(flags).tolist()

    x = local_rows(rank).requires_grad_(True)
    gathered = avdist.all_gather_with_grad(x)
    result["gathered"] = gathered.tolist()
    (weights(rank) * gathered).sum().backward()
    assert x.grad is not None
    result["grad"] = x.grad.tolist()

    result["broadcast"] = avdist.broadcast_object({"from": rank, "items": [rank, "x"]})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        avdist.print0("step", rank)
    result["printed"] = buf.getvalue()
    avdist.barrier()
    avdist.cleanup()
    result["after_cleanup"] = [dist.is_initialized(), avdist.get_world_size()]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result), "utf-8")
    # Skip interpreter teardown: unloading torch takes seconds and the results are on disk.
    os._exit(0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_processes(
    target: Callable[..., object], args_per_process: list[tuple[Any, ...]], timeout_s: float = 60.0
) -> None:
    """Start one spawned process per args tuple and wait; any non-zero exit code fails the test
    (a child's traceback is on stderr), and a hung job is killed after ``timeout_s``."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args, daemon=True) for args in args_per_process]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    try:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        hung = [i for i, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), (
        f"child exit codes {codes}; killed after {timeout_s:.0f} s: {hung}; tracebacks on stderr"
    )


def test_two_processes_gloo(tmp_path: Path) -> None:
    port = free_port()
    run_processes(_worker, [(rank, port, str(tmp_path)) for rank in range(WORLD)])
    results = [json.loads((tmp_path / f"rank{r}.json").read_text("utf-8")) for r in range(WORLD)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    full = torch.cat([local_rows(r) for r in range(WORLD)]).tolist()
    for rank, res in enumerate(results):
        assert res["env"] == [rank, WORLD, rank, "cpu"]
        assert res["is_main"] == [rank == 0, rank == 0]
        assert res["distributed"] is True and res["backend"] == "gloo"
        assert res["threads"] == max(1, (cpus or 1) // WORLD)
        assert res["all_reduce_same_object"] and res["all_reduce"] == [3.0, 20.0]
        assert res["all_reduce_max"] == [1, 1, 0]
        assert res["gathered"] == full
        # d(sum_r loss_r)/d(local rows): every process's weights on this process's rows
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        expected_grad = torch.stack([weights(r)[rows] for r in range(WORLD)]).sum(dim=0)
        assert res["grad"] == expected_grad.tolist()
        assert res["broadcast"] == {"from": 0, "items": [0, "x"]}
        assert res["printed"] == ("step 0\n" if rank == 0 else "")
        assert res["after_cleanup"] == [False, 1]


def test_child_failure_is_loud() -> None:
    # sys.exit as the target: a child that fails without the seconds of importing torch
    with pytest.raises(AssertionError, match=r"child exit codes \[0, 3\]"):
        run_processes(sys.exit, [(0,), (3,)])
