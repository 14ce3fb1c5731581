"""Mining benchmark: motion energy, sampling and whole-video prep on UCF-101-like video.

    python -m benchmarks.mining [--quick]        # ~2 min; results in bench-out/mining.json

Measures, single-threaded, in CPU seconds (``time.process_time``) so that the numbers are
"per core":

1. motion energy per measure -- coarse Farneback at 40 px wide (the default), frame difference
   at 40 px, and Farneback on the full 320x240 frames (the baseline) -- as video-seconds per
   CPU-second (x real time), with the decode included;
2. the other per-video costs of ``avssl-prep``: fingerprint, probe (a full decode plus a check
   of every keyframe), the three samplers;
3. a whole ``avssl-prep folder`` run on copies of the files, 1 and 2 workers, cold (fresh
   output directory), from which the time of a full UCF-101 prep on 16 cores is extrapolated;
4. the ``--transcode`` cache: size and random 3-frame read speed, source vs cache.

Files: the generated UCF-like Xvid clips of benchmarks/media.py (320x240, packed B-frames, one
keyframe or one every 12) and the real UCF-101 clip from ../shared/data when present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data import decode
from avssl.data.motion import motion_energy
from benchmarks import media
from data_prep.parallel import imap_jobs
from data_prep.scan import scan_folder
from data_prep.videos import MineConfig, file_fingerprint, mine_samples, prep_videos

UCF101_VIDEOS = 13320
UCF101_MEAN_S = 7.21  # mean clip length (UCF-101 paper: 27 h over 13,320 clips)


def _cpu(fn: Callable[[], Any], reps: int) -> float:
    """Median CPU seconds of ``fn`` over ``reps`` runs, after one untimed warm-up run."""
    fn()
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def bench_file(path: Path, reps: int) -> dict[str, Any]:
    decode.clear_caches()
    t = time.process_time()
    info = decode.probe(path)
    probe_s = time.process_time() - t
    video_s = info.num_frames / info.fps
    cfg = MineConfig()
    res: dict[str, Any] = {
        "file": path.name,
        "frames": info.num_frames,
        "video_s": round(video_s, 2),
        "size": f"{info.width}x{info.height}",
        "keyframes": len(info.keyframes),
        "probe_cpu_s": round(probe_s, 4),
        "fingerprint_cpu_s": round(_cpu(lambda: file_fingerprint(path), reps), 5),
    }
    runs = {
        "flow@40 (default)": dict(method="flow", width=40),
        "diff@40": dict(method="diff", width=40),
        "flow@80": dict(method="flow", width=80),
        f"flow@{info.width} (full size)": dict(method="flow", width=info.width),
    }
    motion = None
    for name, kw in runs.items():
        n = 2 if "full" in name else reps
        cpu = _cpu(lambda kw=kw: motion_energy(path, info=info, **kw), n)  # type: ignore[arg-type]
        res[name] = {"cpu_s": round(cpu, 4), "x_realtime": round(video_s / cpu, 1)}
        if motion is None:
            motion = motion_energy(path, info=info)
    assert motion is not None

    def sample() -> None:
        mine_samples(motion, cfg, path.name)

    res["samplers_cpu_s"] = round(_cpu(sample, reps), 4)
    full = res[f"flow@{info.width} (full size)"]["cpu_s"]
    res["speedup_vs_full_flow"] = round(full / res["flow@40 (default)"]["cpu_s"], 1)
    return res


def _warm(_: int) -> int:
    """A job that only makes a worker import what prep workers import (this module does)."""
    return os.getpid()


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def pool_start(workers: int) -> dict[str, float]:
    """Wall and CPU seconds to start ``workers`` spawned workers that import the prep stack."""
    t_wall, c0 = time.monotonic(), _children_cpu()
    list(imap_jobs(_warm, range(workers), workers))
    return {"wall_s": round(time.monotonic() - t_wall, 2), "cpu_s": round(_children_cpu() - c0, 2)}


def bench_prep(files: list[Path], copies: int, workers: int) -> dict[str, Any]:
    """A cold ``avssl-prep folder`` run over ``copies`` copies of each file."""
    with tempfile.TemporaryDirectory(dir="bench-out") as tmp:
        root = Path(tmp) / "videos"
        root.mkdir()
        for k in range(copies):
            for f in files:
                dst = root / f"c{k:02d}_{f.name}"
                shutil.copy(f, dst)
                with open(dst, "ab") as fh:  # distinct bytes: no shared motion cache entries
                    fh.write(k.to_bytes(4, "little"))  # (demuxers ignore trailing bytes)
        scan = scan_folder(root)
        video_s = 0.0
        for e in scan.entries:
            info = decode.probe(root / e.relpath)
            video_s += info.num_frames / info.fps
        decode.clear_caches()
        t_wall, t_cpu, c0 = time.monotonic(), time.process_time(), _children_cpu()
        prep_videos(scan, Path(tmp) / "out", workers=workers, progress=False)
        wall = time.monotonic() - t_wall
        cpu = time.process_time() - t_cpu + _children_cpu() - c0
    n = len(scan.entries)
    return {
        "workers": workers,
        "videos": n,
        "video_s": round(video_s, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "videos_per_s": round(n / wall, 2),
        "per_video_cpu_s": round(cpu / n, 4),
        "x_realtime_per_core": round(video_s / cpu, 1),
    }


def ucf101_estimate(one: dict[str, Any], start: dict[str, float], cores: int = 16) -> float:
    """Minutes for all of UCF-101 on ``cores`` cores: worker start-up plus the measured CPU per
    video-second (one worker, steady state), assuming the disk keeps up (~6.5 GB in total)."""
    cpu_per_video_s = one["cpu_s"] / one["video_s"]
    return round(
        (start["wall_s"] + UCF101_VIDEOS * UCF101_MEAN_S * cpu_per_video_s / cores) / 60, 1
    )


def bench_transcode(path: Path, reads: int) -> dict[str, Any]:
    from data_prep.transcode import transcode_video

    info = decode.probe(path)
    with tempfile.TemporaryDirectory(dir="bench-out") as tmp:
        cache = Path(tmp) / "cache.mp4"
        t = time.process_time()
        transcode_video(path, cache, info=info)
        tc_cpu = time.process_time() - t
        cinfo = decode.probe(cache)
        rng = np.random.default_rng(0)
        tuples = [np.sort(rng.choice(info.num_frames, 3, replace=False)) for _ in range(reads)]
        out = {}
        for name, p, i in (("source", path, info), ("cache", cache, cinfo)):
            decode.clear_caches()
            t = time.process_time()
            for tup in tuples:
                decode.read_frames(p, tup.tolist(), info=i)
            cpu = time.process_time() - t
            out[name] = {
                "bytes": p.stat().st_size,
                "keyframes": len(i.keyframes),
                "tuples_per_cpu_s": round(reads / cpu, 1),
            }
    return {
        "file": path.name,
        "transcode_cpu_s": round(tc_cpu, 3),
        **out,
        "read_speedup": round(
            out["cache"]["tuples_per_cpu_s"] / out["source"]["tuples_per_cpu_s"], 2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and copies")
    args = ap.parse_args(argv)
    reps, copies, reads = (3, 4, 100) if args.quick else (7, 12, 300)
    Path("bench-out").mkdir(exist_ok=True)
    import cv2

    cv2.setNumThreads(1)
    gen = [p for p, _ in media.build() if p.suffix == ".avi"]
    real, notes = media.real_clips()
    files = gen + [p for p, _ in real if p.suffix == ".avi"]
    for n in notes:
        print(n)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "files": [bench_file(f, reps) for f in files],
    }
    pool_start(2)  # the first start also fills the OS file cache; time the second
    results["pool_start_2"] = pool_start(2)
    results["prep"] = [bench_prep(files, copies, 1), bench_prep(files, 3 * copies, 2)]
    one, two = results["prep"]
    busy2 = (two["wall_s"] - results["pool_start_2"]["wall_s"]) / two["videos"]
    results["parallel_efficiency_2"] = round(one["wall_s"] / one["videos"] / (2 * busy2), 2)
    results["ucf101_16_cores_min"] = ucf101_estimate(one, results["pool_start_2"])
    results["transcode"] = [bench_transcode(f, reads) for f in files]
    Path("bench-out/mining.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report(results))
    return 0


def report(r: dict[str, Any]) -> str:
    methods = [k for k in r["files"][0] if "@" in k]
    lines = [
        "| file | frames | video s | keyframes | "
        + " | ".join(m.replace(" (full size)", " (full)") for m in methods)
        + " | default vs full | probe | samplers |",
        "|---" * (6 + len(methods)) + "|",
    ]
    for f in r["files"]:
        cells = []
        for m in methods:
            key = next(k for k in f if k.startswith(m.split(" ")[0]))
            cells.append(f"{f[key]['x_realtime']}x")
        lines.append(
            f"| {f['file']} | {f['frames']} | {f['video_s']} | {f['keyframes']} | "
            + " | ".join(cells)
            + f" | {f['speedup_vs_full_flow']}x | {f['probe_cpu_s'] * 1e3:.0f} ms | "
            f"{f['samplers_cpu_s'] * 1e3:.1f} ms |"
        )
    lines += [
        "",
        "| prep workers | videos | video s | wall s | CPU s | videos/s | CPU s per video | "
        "x real time per core |",
        "|---" * 8 + "|",
    ]
    for p in r["prep"]:
        lines.append(
            f"| {p['workers']} | {p['videos']} | {p['video_s']} | {p['wall_s']} | "
            f"{p['cpu_s']} | {p['videos_per_s']} | {p['per_video_cpu_s']} | "
            f"{p['x_realtime_per_core']}x |"
        )
    s = r["pool_start_2"]
    lines += [
        "",
        f"Starting 2 spawned workers (imports of torch, PyAV, OpenCV, SciPy): {s['wall_s']} s "
        f"wall, {s['cpu_s']} CPU s. Two workers, start-up excluded, run at "
        f"{r['parallel_efficiency_2']} of twice one worker's speed. Estimated full UCF-101 "
        f"prep (13,320 clips, {UCF101_MEAN_S} s mean) on 16 cores: "
        f"**{r['ucf101_16_cores_min']} min**.",
    ]
    lines += [
        "",
        "| file | source KB | cache KB | source keyframes | cache keyframes | "
        "source tuples/CPU-s | cache tuples/CPU-s | speed-up | transcode CPU s |",
        "|---" * 9 + "|",
    ]
    for t in r["transcode"]:
        s, c = t["source"], t["cache"]
        lines.append(
            f"| {t['file']} | {s['bytes'] / 1e3:.0f} | {c['bytes'] / 1e3:.0f} | "
            f"{s['keyframes']} | {c['keyframes']} | {s['tuples_per_cpu_s']} | "
            f"{c['tuples_per_cpu_s']} | {t['read_speedup']}x | "
            f"{t['transcode_cpu_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
