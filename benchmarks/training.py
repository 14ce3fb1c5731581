"""Training throughput benchmark: samples/s and the share of time spent waiting for data.

    python -m benchmarks.training [--device cpu|cuda] [--steps 30] [--workers 0 2]
                                  [--tasks shuffle_learn odd_one_out arrow_of_time]

For each task, its demo config (``configs/demo_<task>.yaml``) on the built-in set (``avssl-prep
synth``; built when absent), this runs the real training step (``avssl.engine.train_one_epoch``:
loader -> augmentation on the device -> forward -> backward -> optimizer) for ``--steps`` steps
under three conditions, in one process, one after the other:

* **bound** -- one batch held in memory and fed again at every step: no decoding, no loading;
  the compute-only speed, the baseline every other row is divided by;
* **cold** -- a fresh frame cache: every video is decoded at first use (the first epoch of a run);
* **warm** -- the same steps again, every video already in the per-process cache (later epochs).

and for each ``--workers`` count (data-loader processes; their start-up is outside the timing).
Each row gives samples/s, the ratio to the bound, and ``data wait``: the fraction of the wall
time the training loop spent blocked on the loader (the same figure ``avssl-train`` logs as
``data_wait`` in metrics.jsonl). Results: a markdown table on stdout and
``bench-out/training-<device>.json``.

On a GPU machine (``benchmarks/gpu_check.sh``) the same script runs with ``--device cuda``, where
the bound is the GPU's speed and the data wait says whether the CPU side keeps it fed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from avssl import dist
from avssl.config import load_config
from avssl.engine import train_one_epoch
from avssl.train import TrainConfig, build, default_manifest

REPO = Path(__file__).resolve().parents[1]
TASKS = ("shuffle_learn", "odd_one_out", "arrow_of_time")


class _Tally:
    """The logger ``train_one_epoch`` writes to: counts steps, samples and loader wait."""

    def __init__(self) -> None:
        self.steps, self.samples, self.wait = 0, 0, 0.0

    def step(self, step: int, total: int, vals: dict, n: int, waited: float) -> None:
        self.steps += 1
        self.samples += n
        self.wait += waited


class _Replay:
    """A loader that yields one batch again and again (the compute-only bound)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def batches(self, epoch: int, indices: list[int]) -> Any:
        return iter([self.batch] * self.steps)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(state: dict, cfg: TrainConfig, env: dist.DistEnv, steps: int) -> dict[str, float]:
    tally = _Tally()
    _sync(env.device)
    t0 = time.perf_counter()
    train_one_epoch(state, cfg, env, 0, 0, tally, lambda step, epoch: tally.steps >= steps)
    _sync(env.device)
    wall = time.perf_counter() - t0
    return {
        "steps": tally.steps,
        "samples_per_s": round(tally.samples / wall, 2),
        "data_wait": round(tally.wait / wall, 4),
        "wall_s": round(wall, 3),
    }


def bench_task(task: str, device: str, steps: int, workers: list[int]) -> list[dict[str, Any]]:
    cfg = load_config(
        TrainConfig,
        str(REPO / "configs" / f"demo_{task}.yaml"),
        [f"run.device={device}", "run.tensorboard=false", f"optim.steps_per_epoch={steps}"],
    )
    env = dist.init_distributed(cfg.run.device)
    rows: list[dict[str, Any]] = []
    # bound: warm up (first-step allocations, cuDNN autotune), then replay one batch
    state = build(cfg, env)
    batch = next(state["train_loader"].batches(0, list(range(cfg.optim.batch_size))))
    state["train_loader"] = _Replay(batch, 3)
    _timed(state, cfg, env, 3)
    state["train_loader"] = _Replay(batch, steps)
    bound = _timed(state, cfg, env, steps)
    rows.append({"task": task, "condition": "bound", "workers": "-", **bound, "ratio": 1.0})
    for w in workers:
        cfg.data.num_workers = w
        state = build(cfg, env)  # a fresh frame cache
        if w:  # start the workers outside the timing (a run pays it once)
            next(state["train_loader"].batches(1, [0]))
        for cond in ("cold", "warm"):
            r = _timed(state, cfg, env, steps)
            ratio = round(r["samples_per_s"] / bound["samples_per_s"], 3)
            rows.append({"task": task, "condition": cond, "workers": w, **r, "ratio": ratio})
        del state
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per condition")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args()
    if not default_manifest(args.tasks[0]).is_file():
        from data_prep.cli import main as prep

        prep(["synth", "--temporal"])
    rows = [r for t in args.tasks for r in bench_task(t, args.device, args.steps, args.workers)]
    where = {
        "device": torch.cuda.get_device_name(0)
        if args.device == "cuda"
        else platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(f"device: {where['device']}, {where['cpus']} CPUs, threads {where['torch_threads']}")
    print("| task | condition | workers | samples/s | x bound | data wait |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['condition']} | {r['workers']} | {r['samples_per_s']:.0f} | "
            f"{r['ratio']:.2f} | {100 * r['data_wait']:.0f}% |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"training-{args.device}.json").write_text(
        json.dumps({"where": where, "steps": args.steps, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
