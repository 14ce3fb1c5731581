"""Training throughput per task family, with a diagnosis: data-bound or compute-bound.

    python -m benchmarks.train_throughput [--device cpu|cuda] [--steps 12] [--workers 0 1 2]
                                          [--families temporal pair image] [--set KEY=VALUE ...]

One task per family, on the data and config it trains on here:

* **temporal** -- Shuffle & Learn, ``configs/demo_shuffle_learn.yaml`` on the built-in set
  (``avssl-prep synth --temporal``; decodes three frames of a video per sample);
* **pair** -- AVE-Net, ``configs/ave_net_digits.yaml`` on ``avssl-prep av-digits`` (one frame and
  one second of sound per sample, from arrays);
* **image** -- SimCLR, ``configs/simclr_digits.yaml`` on ``avssl-prep digits`` (one PNG, two
  augmented views).

For each family, in one process, one after the other (the real step of ``avssl-train``:
``avssl.engine.train_one_epoch``, augmentation on the device, forward, backward, optimizer):

* **compute-only** -- one pre-made batch fed again at every step: no loading at all. The speed
  the model allows; every other row is divided by it.
* **loader, W workers** (each ``--workers``) -- a fresh dataset (cold caches), the loader's
  processes started outside the timing, then ``--steps`` steps: samples/s, ``data wait`` (the
  share of the wall time the loop was blocked on the loader, as ``avssl-train`` logs it), and
  the ratio to compute-only.
* **decode rate per worker** -- samples/s that one process produces (``dataset[i]`` on fresh
  rows, cold caches, no training): the rate each loader worker adds. ``needed workers`` =
  compute-only samples/s / that rate: below the workers you give it, the data pipeline keeps up.

Diagnosis per loader row: **data-bound** when the data wait is over 10% (the loop waits for
batches: more workers, a training cache, or a cheaper decode would help), else
**compute-bound**. The suggested ``data.num_workers`` is the smallest tried count whose data
wait is under 10% (or the best, marked, when none is). Results: a markdown table on stdout and
``OUT/train_throughput-<device>.json``. Keep ``--steps`` small on a shared CPU machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl import dist
from avssl.config import load_config
from avssl.tasks import TASKS
from avssl.train import TrainConfig, build
from benchmarks.training import _Replay, _sync, _timed

REPO = Path(__file__).resolve().parents[1]
FAMILIES: dict[str, tuple[str, str]] = {  # family -> (task, config)
    "temporal": ("shuffle_learn", "configs/demo_shuffle_learn.yaml"),
    "pair": ("ave_net", "configs/ave_net_digits.yaml"),
    "image": ("simclr", "configs/simclr_digits.yaml"),
}
DATA_BOUND_WAIT = 0.10  # a loop blocked on the loader more than this is data-bound


def _config(family: str, device: str, steps: int, extra: list[str]) -> TrainConfig:
    task, path = FAMILIES[family]
    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    where = {  # the configs name ./avssl-data; follow AVSSL_DATA (as gpu_check.sh sets it)
        "temporal": [f"data.manifest={data / 'synth' / 'temporal' / 'shuffle_learn.jsonl'}"],
        "pair": [f"data.manifest={data / 'av-digits' / 'avc_train.jsonl'}",
                 f"data.val_manifest={data / 'av-digits' / 'avc_test.jsonl'}"],
        "image": [f"data.manifest={data / 'digits' / 'images.jsonl'}"],
    }[family]  # fmt: skip
    sets = [*where, f"task={task}", f"run.device={device}", "run.tensorboard=false",
            f"optim.steps_per_epoch={max(steps, 3)}", *extra]  # fmt: skip
    return load_config(TrainConfig, str(REPO / path), sets, base=TASKS[task].defaults)


def decode_rate(state: dict[str, Any], n: int) -> float:
    """Samples/s of one process reading ``n`` rows of the training set drawn at random, as an
    epoch's permutation draws them (rows sorted by video would mostly hit the decoded-video
    cache and overstate the rate)."""
    ds = state["train"]
    rows = np.random.default_rng(11).permutation(len(ds))[:n].tolist()
    t0 = time.perf_counter()
    for i in rows:
        ds[(7, i)]
    return len(rows) / max(time.perf_counter() - t0, 1e-9)


def bench_family(
    family: str, device: str, steps: int, workers: list[int], extra: list[str]
) -> dict[str, Any]:
    cfg = _config(family, device, steps, extra)
    env = dist.init_distributed(cfg.run.device)
    bs = cfg.optim.batch_size
    state = build(cfg, env)
    batch = next(state["train_loader"].batches(0, list(range(bs))))
    state["train_loader"] = _Replay(batch, 2)
    _timed(state, cfg, env, 2)  # warm-up: first-step allocations, autotuning
    state["train_loader"] = _Replay(batch, steps)
    bound = _timed(state, cfg, env, steps)
    rate = decode_rate(build(cfg, env), 2 * bs)
    rows: list[dict[str, Any]] = []
    for w in workers:
        cfg.data.num_workers = w
        state = build(cfg, env)
        if w:  # start the loader processes outside the timing (a run pays it once)
            next(state["train_loader"].batches(1, [0]))
        _sync(env.device)
        r = _timed(state, cfg, env, steps)
        r["ratio"] = round(r["samples_per_s"] / bound["samples_per_s"], 3)
        r["diagnosis"] = "data-bound" if r["data_wait"] > DATA_BOUND_WAIT else "compute-bound"
        rows.append({"workers": w, **r})
        del state
    ok = [r for r in rows if r["diagnosis"] == "compute-bound"]
    best = (
        min(ok, key=lambda r: r["workers"]) if ok else max(rows, key=lambda r: r["samples_per_s"])
    )
    return {
        "family": family,
        "task": FAMILIES[family][0],
        "config": FAMILIES[family][1],
        "batch_size": bs,
        "frame_size": cfg.data.frame_size,
        "compute_only": bound,
        "decode_per_worker_samples_per_s": round(rate, 1),
        "needed_workers": round(bound["samples_per_s"] / max(rate, 1e-9), 2),
        "loader": rows,
        "suggested_workers": best["workers"],
        "suggestion_keeps_up": bool(ok),
    }


def _need_data(families: list[str]) -> list[str]:
    """Build what the families read when it is absent (AVSSL_DATA or ./avssl-data); returns the
    families whose data is there, saying why for the others (e.g. a GPU machine without the
    digits sheet or FSDD in ../shared/data), so one missing set does not stop the rest."""
    from data_prep.av_digits import DEFAULT_DIGITS
    from data_prep.cli import main as prep

    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    need = {
        "temporal": (data / "synth" / "temporal" / "shuffle_learn.jsonl", ["synth", "--temporal"]),
        "pair": (data / "av-digits" / "avc_train.jsonl",
                 ["av-digits", "--out", str(data / "av-digits")]),
        "image": (data / "digits" / "images.jsonl",
                  ["digits", str(DEFAULT_DIGITS), "--out", str(data / "digits")]),
    }  # fmt: skip
    have = []
    for fam in families:
        path, argv = need[fam]
        if not path.is_file():
            try:
                code = prep(argv)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                code = f"{type(e).__name__}: {e}"
            if code or not path.is_file():
                print(f"{fam}: skipped, 'avssl-prep {' '.join(argv)}' failed ({code})")
                continue
        have.append(fam)
    return have


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=12, help="timed steps per row (default 12)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every family, e.g. run.amp=true")  # fmt: skip
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    families = _need_data(args.families)
    t0 = time.perf_counter()
    fams = [bench_family(f, args.device, args.steps, args.workers, args.extra)
            for f in families]  # fmt: skip
    where = {
        "device": torch.cuda.get_device_name(0)
        if args.device == "cuda"
        else platform.processor() or platform.machine(),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(f"device: {where['device']}, {where['cpus']} CPUs, {where['torch_threads']} threads")
    print("| family (task) | batch | compute-only samples/s | decode / worker | workers | "
          "samples/s | x compute | data wait | diagnosis |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for f in fams:
        for r in f["loader"]:
            print(
                f"| {f['family']} ({f['task']}) | {f['batch_size']} | "
                f"{f['compute_only']['samples_per_s']:.0f} | "
                f"{f['decode_per_worker_samples_per_s']:.0f} | {r['workers']} | "
                f"{r['samples_per_s']:.0f} | {r['ratio']:.2f} | {100 * r['data_wait']:.0f}% | "
                f"{r['diagnosis']} |"
            )
        keeps = "" if f["suggestion_keeps_up"] else " (none tried keeps up: the fastest)"
        need = math.ceil(f["needed_workers"])
        print(f"<!-- {f['family']}: needs {need} worker(s) at this decode rate; suggested "
              f"data.num_workers={f['suggested_workers']}{keeps} -->")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_throughput-{args.device}.json"
    path.write_text(json.dumps({"where": where, "steps": args.steps, "families": fams}, indent=1))
    print(f"wrote {path} in {where['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
