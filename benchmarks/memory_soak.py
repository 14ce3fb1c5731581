"""Memory soak: resident memory (RSS) stays flat over long runs of reads.

    python -m benchmarks.memory_soak [--reads N] [--quick] [--backends pyav opencv ...]
                                     [--samples N] [--workers 2] [--cache-mb 64] [--jobs 1]

Two parts:

* **decode** -- for each installed decoding backend, ``--reads`` random reads through
  :func:`avssl.data.decode.read_frames` (3 random frame indices each, unsorted), and as many
  random 1 s windows through :func:`avssl.data.decode.read_audio` (row ``audio``; PyAV is the
  only audio path). Each backend runs in a fresh process (a ``spawn`` pool, ``--jobs`` at a
  time), so one backend's imports and pools do not show up in another's numbers. Media: the real
  clips of ``../shared/data/av-clips`` (:func:`benchmarks.media.real_clips`) that the backend is
  allowed to decode (:func:`~avssl.data.decode.backend_refusal`), plus the generated files of
  :func:`benchmarks.media.build` and the small self-test videos of ``avssl doctor``
  (:mod:`avssl.data.selftest`); of those, the ones whose random read costs at most ``--max-ms``
  of CPU time (median of 5 reads) are soaked, so that every backend gets its ``--reads`` in
  minutes (at least the cheapest one is always kept; the skipped ones and their cost are listed).
* **loader** -- the training pipeline's own loader (``avssl.train.build`` on the temporal
  family of ``benchmarks.train_throughput``: Shuffle & Learn on ``avssl-prep synth
  --temporal``) with ``--workers`` spawned worker processes and the reader's decoded-video cache
  at ``--cache-mb`` per process (small, so that it fills during warm-up and its eviction is
  soaked too), iterated for ``--samples`` samples. The RSS of the main process and of each
  worker is sampled after every batch.

Per row: RSS at the start, after warm-up (the first ``--warmup`` share of the run: allocator
pools, swscale contexts, lazy imports, a filling cache), at the end, the peak, and the
least-squares **slope after warm-up in MB per 1,000 reads** (loader: per 1,000 samples of the
whole loader). Verdict: **flat** when the slope is at most ``--threshold`` (default 1.0 MB per
1,000 reads, i.e. 1 kB a read: a leaked 64x64 RGB frame is 12 kB, a leaked container with its
decoder > 50 kB); otherwise **GROWS**, and the exit status is 1 (rows with fewer than
:data:`MIN_MARKS` marks after warm-up say "too short" and do not fail). RSS comes from psutil
when it is installed, else ``/proc/<pid>/status`` (VmRSS). Results: a markdown table on stdout
and ``OUT/memory_soak.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

#: Default verdict threshold: MB of RSS growth per 1,000 reads (or loader samples) after warm-up.
THRESHOLD_MB_PER_1000 = 1.0
#: Fewer RSS marks than this after warm-up give no verdict ("too short"), not a failure.
MIN_MARKS = 5


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
def rss_mb(pid: int | None = None) -> float | None:
    """Resident set size of process ``pid`` (default: this one) in MB; None when unknown."""
    pid = os.getpid() if pid is None else pid
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - a process that ended has no RSS
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_1000(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``y`` (MB) against ``x`` (reads), in MB per 1,000 reads."""
    xs = np.asarray(x, np.float64)
    ys = np.asarray(y, np.float64)
    if xs.size < 2:
        raise ValueError(f"a slope needs at least 2 points, got {xs.size}")
    dx = xs - xs.mean()
    den = float((dx * dx).sum())
    if den == 0:
        raise ValueError("a slope needs at least 2 distinct x values")
    return float((dx * (ys - ys.mean())).sum() / den) * 1000.0


def summarize(
    name: str, marks: Sequence[tuple[int, float]], warm_at: int, threshold: float
) -> dict[str, Any]:
    """One report row from ``(reads done, RSS MB)`` marks; the slope uses marks at and after
    ``warm_at`` reads."""
    if not marks:
        raise ValueError(f"{name}: no RSS marks")
    after = [(n, r) for n, r in marks if n >= warm_at]
    warm = after[0][1] if after else marks[-1][1]
    xs = [n for n, _ in after]
    slope = slope_per_1000(xs, [r for _, r in after]) if len(set(xs)) > 1 else 0.0
    if len(after) < MIN_MARKS:
        verdict = f"too short ({len(after)} marks after warm-up)"
    else:
        verdict = "flat" if slope <= threshold else "GROWS"
    return {
        "name": name,
        "reads": marks[-1][0],
        "warmup_reads": warm_at,
        "start_mb": round(marks[0][1], 1),
        "warm_mb": round(warm, 1),
        "end_mb": round(marks[-1][1], 1),
        "peak_mb": round(max(r for _, r in marks), 1),
        "growth_after_warmup_mb": round(marks[-1][1] - warm, 1),
        "slope_mb_per_1000": round(slope, 3),
        "threshold_mb_per_1000": threshold,
        "verdict": verdict,
        "marks": [(n, r) for n, r in marks],  # exact: the slope can be checked from them
    }


# --------------------------------------------------------------------------------------------
# Part (a): decode reads per backend
# --------------------------------------------------------------------------------------------
def candidate_media(quick: bool) -> list[tuple[str, str]]:
    """(path, note) of the real clips present, then the generated media: the benchmark files of
    :func:`benchmarks.media.build` and the small exact-frame self-test videos of ``avssl doctor``
    (:mod:`avssl.data.selftest`; cheap to read, so every backend has a file it may read in a few
    ms). Quick: the self-test videos only when no real clip is there."""
    from avssl.data import selftest
    from benchmarks import media

    real, missing = media.real_clips()
    for line in missing:
        print(line)
    out = [(str(p), note) for p, note in real]
    if not (quick and out):
        out += [(str(p), f"generated: {note}") for p, note in media.build()]
        folder = Path("bench-out/media/selftest")
        have = [folder / name for name in selftest.SELFTEST_VIDEOS]
        if not all(p.is_file() for p in have):
            selftest.write_selftest_videos(folder)
        out += [
            (str(folder / name), f"generated: self-test {note}")
            for name, (_, _, note) in selftest.SELFTEST_VIDEOS.items()
        ]
    return out


def _read_once(kind: str, path: str, info: Any, rng: np.random.Generator) -> None:
    from avssl.data import decode

    if kind == "audio":
        span = max(info.duration_s - 1.0, 0.0)
        decode.read_audio(path, float(rng.uniform(0, span)), 1.0, sample_rate=16000)
    else:
        idx = rng.choice(info.num_frames, min(3, info.num_frames), replace=False)
        decode.read_frames(path, idx, backend=cast(decode.BackendName, kind), info=info)


def soak_backend(
    kind: str,
    media: list[tuple[str, str]],
    reads: int,
    warmup: float,
    max_ms: float,
    threshold: float,
    seed: int = 0,
) -> dict[str, Any]:
    """``reads`` random reads with backend ``kind`` (or ``"audio"``), RSS sampled ~60 times."""
    from avssl.data import decode

    start = rss_mb() or 0.0
    usable: list[tuple[str, Any, str]] = []
    skipped: list[str] = []
    for path, note in media:
        info = decode.probe(path)
        if kind == "audio":
            if not any(a.audible for a in info.audio):
                continue
        elif (why := decode.backend_refusal(kind, info)) is not None:
            skipped.append(f"{Path(path).name}: refused ({why.split(' (')[0]})")
            continue
        usable.append((path, info, note))
    if not usable:
        return {"name": kind, "skipped": skipped, "error": "no file this backend may read"}
    # CPU cost of a random read per file (median of 5; CPU time, not wall time, so that other
    # jobs on the machine do not change the choice): keep the ones within max_ms.
    rng = np.random.default_rng(seed)
    costs = []
    for path, info, _ in usable:
        times = []
        for _ in range(5):
            t0 = time.process_time()
            _read_once(kind, path, info, rng)
            times.append(1000 * (time.process_time() - t0))
        costs.append(statistics.median(times))
    kept = [u for u, c in zip(usable, costs, strict=True) if c <= max_ms]
    if not kept:
        kept = [usable[int(np.argmin(costs))]]
    for (path, _, _), c in zip(usable, costs, strict=True):
        if all(path != k[0] for k in kept):
            skipped.append(f"{Path(path).name}: {c:.0f} ms CPU a read > {max_ms:.0f} ms")
    every = max(1, reads // 60)
    warm_at = max(every, int(round(warmup * reads / every)) * every)
    gc.collect()
    marks = [(0, rss_mb() or 0.0)]
    t0 = time.perf_counter()
    for n in range(1, reads + 1):
        path, info, _ = kept[int(rng.integers(len(kept)))]
        _read_once(kind, path, info, rng)
        if n % every == 0 or n == reads:
            gc.collect()
            marks.append((n, rss_mb() or 0.0))
            if n % (10 * every) == 0:
                print(f"  {kind}: {n}/{reads} reads, RSS {marks[-1][1]:.1f} MB", flush=True)
    row = summarize(kind, marks, warm_at, threshold)
    row["start_mb"] = round(start, 1)  # before the first probe: imports only
    row["files"] = [
        f"{Path(p).name} ({c:.0f} ms CPU/read)"
        for (p, _, _), c in zip(usable, costs, strict=True)
        if any(p == k[0] for k in kept)
    ]
    row["skipped"] = skipped
    row["wall_ms_per_read"] = round(1000 * (time.perf_counter() - t0) / reads, 2)
    return row


def _soak_backend_star(args: tuple[Any, ...]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return soak_backend(*args)


def soak_decode(
    kinds: Sequence[str],
    reads: int,
    warmup: float,
    max_ms: float,
    threshold: float,
    jobs: int,
    quick: bool,
) -> list[dict[str, Any]]:
    media = candidate_media(quick)
    work = [(k, media, reads, warmup, max_ms, threshold) for k in kinds]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=max(1, jobs), maxtasksperchild=1) as pool:
        return list(pool.imap(_soak_backend_star, work))


# --------------------------------------------------------------------------------------------
# Part (b): the training loader with workers
# --------------------------------------------------------------------------------------------
def soak_loader(
    samples: int, workers: int, cache_mb: int, warmup: float, threshold: float
) -> dict[str, Any]:
    """Iterate the temporal family's training loader for ``samples`` samples; RSS of the main
    process and of each worker after every batch."""
    from avssl import dist
    from benchmarks import train_throughput as tt

    if not tt._need_data(["temporal"]):
        return {"error": "the temporal set could not be built (avssl-prep synth --temporal)"}
    extra = [f"data.num_workers={workers}", f"data.cache_mb={cache_mb}"]
    cfg = tt._config("temporal", "cpu", 3, extra)
    env = dist.init_distributed(cfg.run.device)
    from avssl.train import build

    state = build(cfg, env)
    ds, loader = state["train"], state["train_loader"]
    bs = cfg.optim.batch_size
    rng = np.random.default_rng(5)
    keys: list[int] = []
    while len(keys) < samples:  # epochs' permutations, as training draws them
        keys += rng.permutation(len(ds)).tolist()
    keys = keys[:samples]
    gc.collect()
    main_start = rss_mb() or 0.0
    it = loader.batches(0, keys)
    pids: dict[str, int] = {"main": os.getpid()}
    marks: dict[str, list[tuple[int, float]]] = {"main": [(0, main_start)]}
    done = 0
    t0 = time.perf_counter()
    for batch in it:
        if len(pids) == 1:  # the workers exist once the first batch is asked for
            for w, proc in enumerate(getattr(it, "_workers", [])):
                pids[f"worker {w}"] = int(proc.pid)
                marks[f"worker {w}"] = []
        done += _batch_len(batch, bs)
        del batch
        for name, pid in pids.items():
            r = rss_mb(pid)
            if r is not None:
                marks[name].append((done, r))
    wall = time.perf_counter() - t0
    warm_at = int(warmup * done)
    rows = []
    for name, m in marks.items():
        if len(m) < 2:
            continue
        row = summarize(name, m, warm_at, threshold)
        rows.append(row)
    workers_rows = [r for r in rows if r["name"].startswith("worker")]
    out = {
        "family": "temporal",
        "task": cfg.task,
        "config": tt.FAMILIES["temporal"][1],
        "batch_size": bs,
        "frame_size": cfg.data.frame_size,
        "workers": workers,
        "cache_mb": cache_mb,
        "samples": done,
        "samples_per_s": round(done / max(wall, 1e-9), 1),
        "rows": rows,
        "worker_end_mb_max": max((r["end_mb"] for r in workers_rows), default=None),
        "worker_peak_mb_max": max((r["peak_mb"] for r in workers_rows), default=None),
    }
    del it, state
    return out


def _batch_len(batch: Any, default: int) -> int:
    """Samples in a collated batch: the leading size of its first tensor."""
    if hasattr(batch, "shape"):
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch
    if isinstance(items, list | tuple) or isinstance(batch, dict):
        for x in items:
            n = _batch_len(x, -1)
            if n >= 0:
                return n
    return default


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]], unit: str) -> str:
    lines = [
        f"| row | {unit} | start MB | after warm-up MB | end MB | peak MB | "
        f"slope MB/1000 {unit} | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | - | - | - | - | - | - | {r['error']} |")
            continue
        lines.append(
            f"| {r['name']} | {r['reads']} (warm-up {r['warmup_reads']}) | {r['start_mb']:.0f} | "
            f"{r['warm_mb']:.1f} | {r['end_mb']:.1f} | {r['peak_mb']:.1f} | "
            f"{r['slope_mb_per_1000']:+.2f} | {r['verdict']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from avssl.data import decode

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=None, help="reads per backend (10000; quick 300)")
    ap.add_argument("--quick", action="store_true", help="smoke test: few reads, small loader run")
    ap.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help=f"decode rows, from {decode.BACKENDS} and 'audio' (default: installed)",
    )
    ap.add_argument("--samples", type=int, default=None, help="loader samples (4096; quick 192)")
    ap.add_argument("--workers", type=int, default=2, help="loader worker processes (default 2)")
    ap.add_argument("--cache-mb", type=int, default=64, help="reader cache per process (64)")
    ap.add_argument("--no-loader", action="store_true", help="skip the loader part")
    ap.add_argument("--warmup", type=float, default=0.2, help="warm-up share of each run (0.2)")
    ap.add_argument(
        "--max-ms", type=float, default=None, help="dearest file kept, ms CPU a read (45)"
    )
    ap.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD_MB_PER_1000,
        help="verdict: largest slope after warm-up, MB per 1,000 reads (1.0)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="backends soaked at once (default 1)")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)  # fmt: skip
    reads = args.reads or (300 if args.quick else 10_000)
    samples = args.samples or (192 if args.quick else 4096)
    max_ms = args.max_ms if args.max_ms is not None else (15.0 if args.quick else 45.0)
    kinds = args.backends or [*decode.available_backends(), "audio"]
    unknown = [k for k in kinds if k not in (*decode.BACKENDS, "audio")]
    if unknown:
        ap.error(f"unknown backend(s) {unknown}")
    t0 = time.perf_counter()
    dec = soak_decode(kinds, reads, args.warmup, max_ms, args.threshold, args.jobs, args.quick)
    print(f"## decode: {reads} random reads per backend (3 frames each; audio: 1 s at 16 kHz)")
    print(table(dec, "reads"))
    for r in dec:
        print(f"<!-- {r['name']}: files {r.get('files')}; skipped {r.get('skipped')}; "
              f"{r.get('wall_ms_per_read')} ms wall/read -->")  # fmt: skip
    loader: dict[str, Any] | None = None
    if not args.no_loader:
        loader = soak_loader(samples, args.workers, args.cache_mb, args.warmup, args.threshold)
        if "error" in loader:
            print(f"## loader: {loader['error']}")
        else:
            print(
                f"## loader: {loader['task']} ({loader['config']}), {loader['workers']} workers, "
                f"batch {loader['batch_size']}, cache {loader['cache_mb']} MB/process, "
                f"{loader['samples']} samples at {loader['samples_per_s']}/s"
            )
            print(table(loader["rows"], "samples"))
    rows = dec + (loader["rows"] if loader and "rows" in loader else [])
    failed = [r["name"] for r in rows if r.get("verdict") == "GROWS" or "error" in r]
    if loader and "error" in loader:
        failed.append("loader")
    report = {
        "where": {
            "machine": platform.machine(),
            "cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "rss_source": _rss_source(),
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        "quick": args.quick,
        "threshold_mb_per_1000": args.threshold,
        "decode": dec,
        "loader": loader,
        "failed": failed,
        "verdict": "flat" if not failed else "GROWS",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("memory_soak-quick.json" if args.quick else "memory_soak.json")
    path.write_text(json.dumps(report, indent=1))
    print(f"verdict: {report['verdict']} (threshold {args.threshold} MB per 1,000 reads after "
          f"warm-up){'; failed: ' + ', '.join(failed) if failed else ''}")  # fmt: skip
    print(f"wrote {path} in {report['where']['wall_s']} s")
    return 0 if not failed else 1


def _rss_source() -> str:
    try:
        import psutil  # noqa: F401

        return "psutil"
    except ImportError:
        return "/proc/<pid>/status VmRSS"


if __name__ == "__main__":
    raise SystemExit(main())
