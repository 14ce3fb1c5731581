"""Decoding benchmark: clips/s per access pattern, backend and file, against the physical bound.

Run from the repository root::

    python -m benchmarks.decode            # default (~5-6 min on 2 busy cores)
    python -m benchmarks.decode --quick    # 1 timing per cell, no slow naive cells (< 1 min)

Access patterns (a fixed seeded list of requests per file, the same for every backend):

- ``sequential``: the whole video in order, one request;
- ``tuple3``: a random 3-frame tuple, span <= 60 frames, in Shuffle & Learn orders (b,c,d),
  (d,c,b), (c,b,d);
- ``clip16``: 16 consecutive frames from a random start;
- ``frame+audio``: one frame and the 1 s of audio centred on it at 48 kHz (``read_audio``).

Backends: ``auto``, ``pyav``, ``decord``, ``opencv``, ``torchcodec`` through
:func:`avssl.data.decode.read_frames`, and ``naive``: the common user code (PyAV, a fresh container
per request, for each frame ``container.seek(pts, backward=True)`` then decode until
``frame.pts >= pts``). A backend that ``backend_refusal`` refuses for a file is still timed (its
refusal lifted for the timing) but marked, and never counted as usable. The first requests of each
cell are compared with a sequential PyAV decode of the whole file, so the tables show exactness.

Physical bound: single-thread ``ffmpeg -threads 1 -benchmark`` decode of the file (frames per
second of user CPU time, best of several runs interleaved with the timings) divided by the
fewest frames any decoder must decode for the request: from the keyframe at or before each wanted
frame, or on from the last decoded frame, whichever is fewer; each request starts fresh. For
``frame+audio`` the bound adds 1 s of audio at ffmpeg's audio decode rate.

Files are cold: avssl's per-thread open-file cache is emptied (``clear_caches``) before every
request, for every backend, as for a loader drawing from thousands of files (``--warm-files``
keeps it: all requests of a cell hit the same file).

Everything runs single-threaded (``torch.set_num_threads(1)``, as in a data-loader worker) and
every number is a median over repeats interleaved across backends, in CPU time of this process
(user + system; ffmpeg's bound is its user time), so other jobs on the machine disturb it less
than wall time (kept in the JSON). Output: markdown tables on
stdout, ``bench-out/decode.json``, and a component profile (``--no-profile`` to skip; off in
``--quick`` unless ``--profile``) used for the diagnosis in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from avssl.data import decode
from avssl.data.decode import (
    available_backends,
    backend_refusal,
    choose_backend,
    probe,
    read_audio,
    read_frames,
)
from avssl.data.decode import (
    reader as dec_reader,
)
from avssl.data.decode.chains import chain_frames
from avssl.types import VideoInfo
from benchmarks import media
from tests.exact import naive_seek

PATTERNS = ("sequential", "tuple3", "clip16", "frame+audio")
BACKENDS = ("auto", "every-frame", "pyav", "decord", "opencv", "torchcodec", "naive")
#: ``every-frame``: avssl's pyav reader without the reference map (``frame_refs``), i.e. decoding
#: every frame on the way as before issue 25 (and as for a manifest written before it): the
#: "today" baseline, timed in the same alternating blocks.
OWN = ("auto", "every-frame", "naive")
AUDIO_RATE = 48000
CHECK_REQUESTS = 3  # requests per cell compared with the sequential reference (quick: 1)
#: Seconds one timing (all requests of a cell) would take at the bound; actual backends are
#: 1.2-10x slower. (default, quick)
TARGET_S = (0.03, 0.008)
#: Most CPU seconds one backend may spend on one cell's repeats (default, quick).
CAP_S = (1.5, 0.4)


# --------------------------------------------------------------------------------------------
# Requests and their bound
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    indices: tuple[int, ...]
    audio_start_s: float | None = None  # frame+audio: start of the 1 s window


def make_requests(pattern: str, info: VideoInfo, rng: np.random.Generator, n: int) -> list[Request]:
    num = info.num_frames
    out: list[Request] = []
    for _ in range(n):
        if pattern == "sequential":
            out.append(Request(tuple(range(num))))
        elif pattern == "tuple3":
            span = int(rng.integers(2, min(60, num - 1) + 1))
            a = int(rng.integers(0, num - span))
            d = a + span
            c = int(rng.integers(a + 1, d))
            order = [(a, c, d), (d, c, a), (c, a, d)][int(rng.integers(0, 3))]
            out.append(Request(order))
        elif pattern == "clip16":
            length = min(16, num)
            s = int(rng.integers(0, num - length + 1))
            out.append(Request(tuple(range(s, s + length))))
        elif pattern == "frame+audio":
            i = int(rng.integers(0, num))
            out.append(Request((i,), audio_start_s=info.pts_s[i] - 0.5))
        else:
            raise ValueError(pattern)
    return out


def min_frames(indices: tuple[int, ...], keyframes: tuple[int, ...]) -> int:
    """Fewest frames any decoder decodes to serve one request (starting fresh), counting every
    frame: for each wanted frame in sorted order, go on from the frame after the last decoded
    one, or jump to the keyframe at or before it, whichever decodes fewer frames (the sequential
    bound; :func:`chain_frames` with the file's ``frame_refs`` is the reference-chain bound)."""
    return chain_frames(indices, keyframes, "")[0]


# --------------------------------------------------------------------------------------------
# The physical bound: single-thread ffmpeg
# --------------------------------------------------------------------------------------------
_BENCH = re.compile(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s")
_FRAMES = re.compile(r"frame=\s*(\d+)")


@dataclass
class BoundRuns:
    """ffmpeg runs on one file (video, and audio where present)."""

    tool: str  # "ffmpeg" or "pyav-fallback"
    loops: int = 1
    video: list[dict[str, float]] = field(default_factory=list)  # frames, utime, stime, rtime
    audio_loops: int = 1
    audio: list[dict[str, float]] = field(default_factory=list)  # audio_s, utime, ...
    noref: list[dict[str, float]] = field(default_factory=list)  # -skip_frame noref runs

    def chain_costs(self, num_frames: int) -> tuple[float, float] | None:
        """(seconds per reference frame, per non-reference frame) from the best default and
        ``noref`` runs: a reference costs what the skipping decode spent per frame it gave out
        (skipping the others' packets included); a non-reference frame what skipping saved per
        skipped frame. None without ``noref`` runs."""
        if not self.noref:
            return None
        full = min(self.video, key=lambda r: r["utime"] / max(r["frames"], 1))
        best = min(self.noref, key=lambda r: r["utime"] / max(r["frames"], 1))
        per_file = full["utime"] / max(full["frames"], 1) * num_frames
        refs_out = best["frames"] / self.loops
        t_ref = best["utime"] / max(best["frames"], 1)
        skipped = num_frames - refs_out
        t_nonref = max(per_file - t_ref * refs_out, 0.0) / max(skipped, 1)
        return t_ref, t_nonref

    def best_video_fps(self) -> float:
        return max(r["frames"] / max(r["utime"], 1e-4) for r in self.video)

    def best_video_fps_rtime(self) -> float:
        return max(r["frames"] / max(r["rtime"], 1e-4) for r in self.video)

    def best_audio_rate(self) -> float | None:
        if not self.audio:
            return None
        return max(r["audio_s"] / max(r["utime"], 1e-4) for r in self.audio)


def _ffmpeg_run(
    path: Path, what: str, loops: int, *, rgb: bool = False, noref: bool = False
) -> dict[str, float]:
    """One ``ffmpeg -benchmark`` decode of stream ``0:what:0`` (``loops`` times over the file).

    ``rgb``: also convert every frame to rgb24 (swscale), as a reader that returns RGB must.
    ``noref``: skip the non-reference frames (``-skip_frame noref``): the reference chain.
    """
    exe = shutil.which("ffmpeg")
    assert exe is not None
    cmd = [exe, "-hide_banner", "-nostdin", "-threads", "1", "-benchmark"]
    if noref:
        cmd += ["-skip_frame", "noref"]
    cmd += ["-stream_loop", str(loops - 1), "-i", str(path), "-map", f"0:{what}:0"]
    if what == "v":
        cmd += ["-fps_mode", "passthrough", "-filter_threads", "1"]
        if rgb:
            cmd += ["-pix_fmt", "rgb24"]
    cmd += ["-threads", "1", "-f", "null", "-"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    err = r.stderr.replace("\r", "\n")
    m = _BENCH.search(err)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"ffmpeg failed on {path}: {err[-500:]}")
    frames = _FRAMES.findall(err)
    return {
        "frames": float(frames[-1]) if frames else 0.0,
        "utime": float(m.group(1)),
        "stime": float(m.group(2)),
        "rtime": float(m.group(3)),
    }


def _pyav_seq_run(path: Path, loops: int) -> dict[str, float]:
    """Fallback bound: PyAV single-thread sequential decode, no pixel conversion."""
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(loops):
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            vs.thread_type = "SLICE"
            vs.codec_context.thread_count = 1
            for pk in c.demux(vs):
                n += len(pk.decode())
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"frames": float(n), "utime": cpu, "stime": 0.0, "rtime": wall}


class Bound:
    def __init__(self, path: Path, info: VideoInfo, *, min_s: float) -> None:
        self.path, self.info = path, info
        self.runs = BoundRuns(tool="ffmpeg" if shutil.which("ffmpeg") else "pyav-fallback")
        first = self._video(1)
        rate = first["frames"] / max(first["utime"], first["rtime"] * 0.5, 1e-3)
        self.runs.loops = max(1, min(200, math.ceil(min_s * rate / max(1, info.num_frames))))
        if info.audio and self.runs.tool == "ffmpeg":
            a = _ffmpeg_run(path, "a", 1)
            arate = info.audio[0].duration_s / max(a["utime"], a["rtime"] * 0.5, 1e-3)
            self.runs.audio_loops = max(
                1, min(200, math.ceil(min_s * arate / max(0.1, info.audio[0].duration_s)))
            )

    def _video(self, loops: int) -> dict[str, float]:
        if self.runs.tool == "ffmpeg":
            r = _ffmpeg_run(self.path, "v", loops)
            if r["frames"] != loops * self.info.num_frames:
                print(
                    f"  note: ffmpeg decoded {r['frames']:.0f} frames of {self.path.name} "
                    f"x{loops}, probe counts {self.info.num_frames}",
                    file=sys.stderr,
                )
            return r
        return _pyav_seq_run(self.path, loops)

    def measure(self) -> None:
        """One more run of each (called between timing rounds; the best run counts)."""
        self.runs.video.append(self._video(self.runs.loops))
        if self.info.frame_refs and self.runs.tool == "ffmpeg":
            self.runs.noref.append(_ffmpeg_run(self.path, "v", self.runs.loops, noref=True))
        if self.info.audio and self.runs.tool == "ffmpeg":
            a = _ffmpeg_run(self.path, "a", self.runs.audio_loops)
            a["audio_s"] = self.info.audio[0].duration_s * self.runs.audio_loops
            self.runs.audio.append(a)

    def seconds(self, req: Request) -> float:
        """Bound time of one request (video frames, plus 1 s of audio when asked)."""
        t = min_frames(req.indices, self.info.keyframes) / self.runs.best_video_fps()
        return t + self._audio_s(req)

    def chain_seconds(self, req: Request) -> float:
        """Reference-chain bound of one request: its reference frames and wanted non-reference
        frames at ffmpeg's cost for each kind (the sequential bound where nothing can be
        skipped)."""
        costs = self.runs.chain_costs(self.info.num_frames)
        if costs is None:
            return self.seconds(req)
        n_ref, n_nonref = chain_frames(req.indices, self.info.keyframes, self.info.frame_refs)
        return n_ref * costs[0] + n_nonref * costs[1] + self._audio_s(req)

    def _audio_s(self, req: Request) -> float:
        arate = self.runs.best_audio_rate()
        return 1.0 / arate if req.audio_start_s is not None and arate else 0.0


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def lifted_refusals() -> Iterator[None]:
    """Let read_frames use a refused backend (timing only; its frames are marked, not used)."""
    saved = decode._REFUSALS
    decode._REFUSALS = ()
    try:
        yield
    finally:
        decode._REFUSALS = saved


def naive_read(path: Path, indices: tuple[int, ...], info: VideoInfo) -> torch.Tensor:
    """What users commonly write: seek to each frame's pts, decode until pts >= it."""
    out = []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "SLICE"
        vs.codec_context.thread_count = 1
        tb = vs.time_base
        for i in indices:
            target = round(info.pts_s[i] / tb)
            got = naive_seek(c, vs, target)
            if got is None:
                raise RuntimeError(f"naive: no frame at or after pts {target}")
            out.append(got)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def reader(
    backend: str, path: Path, info: VideoInfo, *, cold: bool = True
) -> Callable[[Request], torch.Tensor]:
    """One request through ``backend``. ``cold``: first close the files avssl keeps open.

    avssl keeps a few files open per thread; a benchmark that sends every request to the same
    file would hit that cache every time, while a data loader drawing from thousands of files
    almost never does. Closing is part of what an evicting cache costs, so it is timed.
    """
    evict = getattr(decode, "clear_caches", None) if cold else None
    plain = replace(info, frame_refs="", frame_pts=())

    def run(req: Request) -> torch.Tensor:
        if evict is not None:
            evict()
        if backend == "naive":
            data = naive_read(path, req.indices, info)
        elif backend == "every-frame":
            data = read_frames(path, req.indices, backend="pyav", info=plain).data
        else:
            data = read_frames(path, req.indices, backend=backend, info=info).data  # type: ignore[arg-type]
        if req.audio_start_s is not None:
            read_audio(path, req.audio_start_s, 1.0, sample_rate=AUDIO_RATE)
        return data

    return run


def refusal(backend: str, info: VideoInfo) -> str | None:
    if backend in OWN:
        return None
    return backend_refusal(backend, info)


# --------------------------------------------------------------------------------------------
# Exactness against a sequential PyAV decode
# --------------------------------------------------------------------------------------------
class Reference:
    """A sequential PyAV decode of the whole file, kept as (3, H, W) frames and thumbnails.

    Frames are ``to_ndarray(format="rgb24")`` of the video stream avssl reads, turned by the
    display rotation as the read contract says (``VideoInfo.rotation``, counter-clockwise).
    """

    def __init__(self, path: Path, info: VideoInfo) -> None:
        frames = []
        k = (getattr(info, "rotation", 0) // 90) % 4
        with av.open(str(path)) as c:
            vs = next(s for s in c.streams.video if s.index == info.video_stream_index)
            for f in c.decode(vs):
                rgb = f.to_ndarray(format="rgb24")
                if k:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
                chw = np.empty((3, rgb.shape[0], rgb.shape[1]), np.uint8)
                cv2.split(rgb, list(chw))
                frames.append(chw)
        if len(frames) != info.num_frames:
            raise RuntimeError(f"{path}: reference decoded {len(frames)} != {info.num_frames}")
        self.frames = frames
        self.thumbs = np.stack([_thumb(f) for f in frames])

    def check(self, indices: tuple[int, ...], data: torch.Tensor) -> dict[str, int]:
        """Count returned frames that are exact, rotated, another frame, or otherwise differ.

        ``wrong``: closer (mean |error| on a 2x-subsampled grid) to another frame of the file
        (among the 8 on either side and the nearest by thumbnail) than to the one asked for.
        ``rotated``: the frame asked for, turned by the display matrix (PyAV ignores it).
        ``differs``: neither (e.g. another YUV->RGB conversion); ``max_err`` is the largest
        pixel difference to the frame asked for.
        """
        got = data.numpy()
        res = {"frames": 0, "exact": 0, "differs": 0, "rotated": 0, "wrong": 0, "max_err": 0}
        if got.shape[0] != len(indices):
            res["frames"] = res["wrong"] = len(indices)
            return res
        for j, i in enumerate(indices):
            res["frames"] += 1
            g, ref = got[j], self.frames[i]
            if g.shape == ref.shape and np.array_equal(g, ref):
                res["exact"] += 1
                continue
            if any(
                r.shape == g.shape and _mean_err(g, r) < 3.0
                for r in (ref[:, ::-1, ::-1], ref.transpose(0, 2, 1)[:, ::-1, :],
                          ref.transpose(0, 2, 1)[:, :, ::-1])
            ):  # fmt: skip
                res["rotated"] += 1
                continue
            if g.shape != ref.shape:
                res["wrong"] += 1
                res["max_err"] = 255
                continue
            res["max_err"] = max(
                res["max_err"], int(cv2.absdiff(np.ascontiguousarray(g), ref).max())
            )
            d = np.abs(self.thumbs - _thumb(g)[None]).mean(axis=(1, 2, 3))
            near = set(range(max(0, i - 8), min(len(self.frames), i + 9))) | {int(np.argmin(d))}
            errs = {k: _mean_err(g, self.frames[k]) for k in near}
            k = min(errs, key=errs.__getitem__)
            if k != i and errs[k] < errs[i] and _mean_err(self.frames[k], ref) > 0.1:
                res["wrong"] += 1
            else:
                res["differs"] += 1
        return res


def _mean_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a[:, ::2, ::2].astype(np.int16) - b[:, ::2, ::2]).mean())


def _thumb(chw: np.ndarray) -> np.ndarray:
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    return cv2.resize(hwc, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = max(out.get(k, 0), v) if k == "max_err" else out.get(k, 0) + v
    return out


@contextlib.contextmanager
def count_decoded() -> Iterator[dict[str, int]]:
    """Count frames the pyav reader decodes and the decode runs (seeks) it starts (either way of
    decoding: every frame, or the reference chain)."""
    counts = {"frames": 0, "runs": 0}
    origs = {name: getattr(dec_reader, name) for name in ("_decode_from", "_decode_chain")}

    def counting(orig: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(*a: Any, **k: Any) -> Iterator[Any]:
            counts["runs"] += 1
            for item in orig(*a, **k):
                counts["frames"] += 1
                yield item

        return run

    for name, orig in origs.items():
        setattr(dec_reader, name, counting(orig))
    try:
        yield counts
    finally:
        for name, orig in origs.items():
            setattr(dec_reader, name, orig)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def _sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


@dataclass
class Cell:
    backend: str
    refused: str | None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sys: list[float] = field(default_factory=list)  # the kernel's part of cpu (page faults)
    check: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    decoded: dict[str, float] | None = None  # pyav/auto: frames decoded and runs per request

    def clips_per_s(self, n: int) -> float | None:
        """Requests per CPU second of this process (median over repeats)."""
        return n / statistics.median(self.cpu) if self.cpu else None

    def clips_per_s_wall(self, n: int) -> float | None:
        return n / statistics.median(self.wall) if self.wall else None


def bench_pattern(
    path: Path,
    info: VideoInfo,
    reqs: list[Request],
    backends: list[str],
    bound: Bound,
    ref: Reference,
    *,
    reps: int,
    n_check: int,
    cap_s: float,
    same_requests: bool,
    quick: bool = False,
    cold: bool = True,
) -> dict[str, Cell]:
    """Check, then time every backend on ``reqs``; repeats interleaved across backends.

    The check pass (untimed, it also warms imports and caches) compares the first ``n_check``
    requests with the reference. A backend whose timings would take more than ``cap_s`` in all
    gets fewer repeats (at least one); when even one would (naive seeks on a long GOP are
    quadratic) and all requests are the same (``sequential``), the check pass's own timing is
    used instead. ``quick``: the check pass covers all requests and is the only timing.
    """
    cells = {b: Cell(b, refusal(b, info)) for b in backends}
    runs = {b: reader(b, path, info, cold=cold) for b in backends}
    budget = dict.fromkeys(backends, 0 if quick else reps)
    checked = reqs if quick else reqs[:n_check]
    for b in backends:
        cell = cells[b]
        ctx = lifted_refusals() if cell.refused else contextlib.nullcontext()
        counter = (
            count_decoded() if b in ("auto", "every-frame", "pyav") else contextlib.nullcontext()
        )
        cpu = wall = sys_s = 0.0
        try:
            with ctx, counter as counts:
                for req in checked:
                    c0, t0, s0 = time.process_time(), time.perf_counter(), _sys_s()
                    data = runs[b](req)
                    cpu += time.process_time() - c0
                    wall += time.perf_counter() - t0
                    sys_s += _sys_s() - s0
                    cell.check = _merge(cell.check, ref.check(req.indices, data))
                    del data
            if counts is not None:
                cell.decoded = {k: v / len(checked) for k, v in counts.items()}
        except Exception as e:  # noqa: BLE001 - a failing backend is a result, not a crash
            cell.error = f"{type(e).__name__}: {str(e)[:200]}"
            continue
        scale = len(reqs) / len(checked)
        if quick:
            cell.cpu.append(cpu)
            cell.wall.append(wall)
            cell.sys.append(sys_s)
        elif cpu * scale * reps > cap_s:
            budget[b] = max(1, int(cap_s / max(cpu * scale, 1e-9)))
            if cpu * scale > cap_s and same_requests:
                budget[b] = 0
                cell.cpu.append(cpu * scale)
                cell.wall.append(wall * scale)
                cell.sys.append(sys_s * scale)
    live = [b for b in backends if cells[b].error is None]
    for rep in range(0 if quick else reps):
        order = live[rep % len(live) :] + live[: rep % len(live)] if live else []
        for b in order:
            cell = cells[b]
            if rep >= budget[b] or cell.error:
                continue
            ctx = lifted_refusals() if cell.refused else contextlib.nullcontext()
            run = runs[b]
            try:
                with ctx:
                    c0, t0, s0 = time.process_time(), time.perf_counter(), _sys_s()
                    for req in reqs:
                        run(req)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    sys_s = _sys_s() - s0
            except Exception as e:  # noqa: BLE001
                cell.error = f"{type(e).__name__}: {str(e)[:200]}"
                continue
            cell.wall.append(wall)
            cell.cpu.append(cpu)
            cell.sys.append(sys_s)
        if rep == reps // 2:
            bound.measure()  # one ffmpeg run in the middle of each pattern's repeats
    return cells


def n_requests(pattern: str, info: VideoInfo, bound: Bound, quick: bool) -> tuple[int, float]:
    """How many requests make one timing of about `target` seconds at the bound."""
    probe_reqs = make_requests(pattern, info, np.random.default_rng(12345), 64)
    mean_s = statistics.fmean(bound.seconds(r) for r in probe_reqs)
    target = TARGET_S[1] if quick else TARGET_S[0]
    lo, hi = (1, 8) if quick else (2, 30)
    if pattern == "sequential":
        lo, hi = (1, 2) if quick else (1, 4)
    return max(lo, min(hi, round(target / mean_s))), mean_s


def bench_file(
    path: Path, note: str, backends: list[str], patterns: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    t_file = time.perf_counter()
    info = probe(path)
    ref = Reference(path, info)
    bound = Bound(path, info, min_s=0.04 if args.quick else 0.08)
    bound.measure()
    if args.quick:  # the only runs in --quick (default: one more per pattern)
        bound.measure()
    seed = zlib.crc32(path.name.encode()) ^ args.seed
    result: dict[str, Any] = {
        "file": path.name,
        "note": note,
        "kind": info.kind,
        "size": f"{info.width}x{info.height}",
        "num_frames": info.num_frames,
        "keyframes": len(info.keyframes),
        "seek_points": len(info.seek_points),
        "auto_backend": choose_backend(info),
        "refusals": {b: refusal(b, info) for b in backends if refusal(b, info)},
        "patterns": {},
    }
    for pattern in patterns:
        n, _ = n_requests(pattern, info, bound, args.quick)
        rng = np.random.default_rng([seed, PATTERNS.index(pattern)])
        reqs = make_requests(pattern, info, rng, n)
        # naive seeks per frame: whole videos and 16-frame clips on a long GOP take seconds
        # per request (quadratic), so --quick leaves them out
        slow_naive = args.quick and pattern in ("sequential", "clip16")
        pat_backends = [b for b in backends if not (slow_naive and b == "naive")]
        cells = bench_pattern(
            path,
            info,
            reqs,
            pat_backends,
            bound,
            ref,
            reps=args.reps,
            n_check=1 if args.quick or pattern == "sequential" else CHECK_REQUESTS,
            cap_s=CAP_S[1] if args.quick else CAP_S[0],
            same_requests=pattern == "sequential",
            quick=args.quick,
            cold=not args.warm_files,
        )
        mean_min = statistics.fmean(min_frames(r.indices, info.keyframes) for r in reqs)
        mean_chain = statistics.fmean(
            sum(chain_frames(r.indices, info.keyframes, info.frame_refs)) for r in reqs
        )
        result["patterns"][pattern] = {
            "requests": n,
            "mean_min_frames": mean_min,
            "mean_chain_frames": mean_chain,
            "reqs": [list(r.indices) for r in reqs],
            "cells": cells,
        }
    # The bound uses every ffmpeg run made for this file (the best one).
    fps = bound.runs.best_video_fps()
    result["bound"] = {
        "tool": bound.runs.tool,
        "fps_utime": fps,
        "fps_rtime": bound.runs.best_video_fps_rtime(),
        "audio_rate_x": bound.runs.best_audio_rate(),
        "runs": len(bound.runs.video),
        "loops": bound.runs.loops,
        "chain_costs_us": [c * 1e6 for c in bound.runs.chain_costs(info.num_frames) or ()],
    }
    for pattern, pr in result["patterns"].items():
        reqs = [Request(tuple(ix), 0.0 if pattern == "frame+audio" else None) for ix in pr["reqs"]]
        bound_s = statistics.fmean(bound.seconds(r) for r in reqs)
        pr["bound_clips_per_s"] = 1.0 / bound_s
        pr["chain_clips_per_s"] = 1.0 / statistics.fmean(bound.chain_seconds(r) for r in reqs)
        out = {}
        for b, cell in pr["cells"].items():
            cps = cell.clips_per_s(pr["requests"])
            cps_wall = cell.clips_per_s_wall(pr["requests"])
            out[b] = {
                "clips_per_s": cps,
                "clips_per_s_wall": cps_wall,
                "ratio": cps / pr["bound_clips_per_s"] if cps else None,
                "ratio_wall": cps_wall / pr["bound_clips_per_s"] if cps_wall else None,
                "ratio_chain": cps / pr["chain_clips_per_s"] if cps else None,
                # best repeat against the best bound run: less sensitive to intermittent load
                "ratio_best": pr["requests"] / min(cell.cpu) / pr["bound_clips_per_s"]
                if cell.cpu
                else None,
                "refused": cell.refused,
                "check": cell.check,
                "error": cell.error,
                "decoded_per_request": cell.decoded,
                "wall_s": cell.wall,
                "cpu_s": cell.cpu,
                "sys_s": cell.sys,
                "sys_per_request_s": statistics.median(cell.sys) / pr["requests"]
                if cell.sys
                else None,
                "timings": len(cell.cpu),
            }
        pr["cells"] = out
        del pr["reqs"]
    result["seconds"] = time.perf_counter() - t_file
    return result


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _cell_text(c: dict[str, Any], reps: int) -> str:
    if c["error"] and c["clips_per_s"] is None:
        return "✗ error" + (" (refused)" if c["refused"] else "")
    text = f"{c['clips_per_s']:.3g} ({c['ratio']:.2f})"
    if c["timings"] < reps:
        text += "†"
    chk = c["check"]
    marks = []
    if chk.get("wrong"):
        marks.append(f"✗ wrong frames {chk['wrong']}/{chk['frames']}")
    elif c["refused"]:
        marks.append("✗ refused")
    if chk.get("rotated"):
        marks.append(f"⟳ rotated {chk['rotated']}/{chk['frames']}")
    if chk.get("differs"):
        marks.append(f"≠ pixels {chk['differs']}/{chk['frames']} (max Δ {chk['max_err']})")
    return " ".join([text] + marks)


def file_table(res: dict[str, Any], backends: list[str], reps: int) -> str:
    b = res["bound"]
    head = (
        f"### {res['file']}\n\n{res['note']}: {res['kind']}, {res['size']}, "
        f"{res['num_frames']} frames, {res['keyframes']} keyframe(s) "
        f"({res['seek_points']} verified seek points); auto → {res['auto_backend']}. "
        f"Bound ({b['tool']}, 1 thread): {b['fps_utime']:.0f} frames/s user time "
        f"({b['fps_rtime']:.0f} wall)"
    )
    if b["audio_rate_x"]:
        head += f", audio {b['audio_rate_x']:.0f}× real time"
    head += ".\n\n"
    cols = ["pattern", "n", "min frames", "bound clips/s", "chain frames", "chain bound clips/s"]
    cols += backends + ["auto / chain bound", "auto / every-frame", "auto / naive", "auto / decord"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for pattern, pr in res["patterns"].items():
        cells = pr["cells"]
        row = [
            pattern,
            str(pr["requests"]),
            f"{pr['mean_min_frames']:.1f}",
            f"{pr['bound_clips_per_s']:.4g}",
            f"{pr['mean_chain_frames']:.1f}",
            f"{pr['chain_clips_per_s']:.4g}",
        ]
        row += [_cell_text(cells[x], reps) if x in cells else "—" for x in backends]
        a = cells.get("auto", {})
        row.append(f"{a['ratio_chain']:.2f}" if a.get("ratio_chain") else "")
        for other in ("every-frame", "naive", "decord"):
            o = cells.get(other, {})
            wrong = o.get("refused") or o.get("check", {}).get("wrong")
            exact = other in OWN or not wrong
            if a.get("clips_per_s") and o.get("clips_per_s") and exact:
                row.append(f"{a['clips_per_s'] / o['clips_per_s']:.2f}×")
            else:
                row.append("" if other in OWN or not o else "(not exact)")
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    errors: dict[str, list[str]] = {}
    for pattern, pr in res["patterns"].items():
        for x, c in pr["cells"].items():
            if c["error"]:
                errors.setdefault(f"{x}: {c['error']}", []).append(pattern)
    for msg, pats in errors.items():
        notes.append(f"- {msg} ({', '.join(pats)})")
    for x, why in res["refusals"].items():
        notes.append(f"- {x} refused here: {why}")
    return head + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


# --------------------------------------------------------------------------------------------
# Component profile (for the diagnosis)
# --------------------------------------------------------------------------------------------
def _median_us(fn: Callable[[], Any], reps: int, inner: int = 1) -> float:
    """Median CPU µs of one call of ``fn`` (``inner`` calls per sample)."""
    ts = []
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(inner):
            fn()
        ts.append((time.process_time() - t0) / inner)
    return statistics.median(ts) * 1e6


def _interleaved_us(funcs: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median CPU µs of each function, the functions run in turn in every repeat."""
    samples: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(reps):
        for k, fn in funcs.items():
            t0 = time.process_time()
            fn()
            samples[k].append(time.process_time() - t0)
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


def profile_file(path: Path, info: VideoInfo, bound: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Per-file component costs in CPU µs, each a median of interleaved repeats."""
    reps = 3 if quick else 5
    p = Path(path)
    n = info.num_frames
    out: dict[str, Any] = {"file": p.name, "ffmpeg_us_per_frame": 1e6 / bound["fps_utime"]}
    if bound["tool"] == "ffmpeg":  # what converting to rgb24 costs ffmpeg itself
        plain, rgb = [], []
        for _ in range(3):
            plain.append(_ffmpeg_run(p, "v", bound["loops"]))
            rgb.append(_ffmpeg_run(p, "v", bound["loops"], rgb=True))
        frames = plain[0]["frames"]
        out["ffmpeg_rgb24_us_per_frame"] = (
            (
                statistics.median(r["utime"] for r in rgb)
                - statistics.median(r["utime"] for r in plain)
            )
            / max(1.0, frames)
            * 1e6
        )

    def opener() -> None:
        with dec_reader._open(p) as c:
            dec_reader._video_stream(c, p)

    def opener_small_probe() -> None:
        opts = {"probesize": "32", "analyzeduration": "0"}
        with av.open(str(p), metadata_errors="ignore", options=opts) as c:
            dec_reader._video_stream(c, p)

    def demux_only() -> int:
        with dec_reader._open(p) as c:
            vs = dec_reader._video_stream(c, p)
            return sum(1 for _ in c.demux(vs))

    def decode_only(skip: str | None = None) -> int:
        k = 0
        with dec_reader._open(p) as c:
            vs = dec_reader._video_stream(c, p)
            if skip:
                vs.codec_context.skip_frame = skip
            for pk in c.demux(vs):
                k += len(pk.decode())
        return k

    def decode_from_start() -> int:
        k = 0
        with dec_reader._open(p) as c:
            vs = dec_reader._video_stream(c, p)
            for _i, _f in dec_reader._decode_from(c, vs, p, None, math.inf):
                k += 1
        return k

    n_pk = demux_only()
    n_nonref = decode_only("NONREF")
    med = _interleaved_us(
        {
            "open": opener,
            "open_small_probe": opener_small_probe,
            "demux": demux_only,
            "decode": decode_only,
            "decode_nonref": lambda: decode_only("NONREF"),
            "decode_from": decode_from_start,
        },
        reps,
    )
    out["packets"] = n_pk
    out["open_us"] = med["open"]
    out["open_probesize32_us"] = med["open_small_probe"]
    out["demux_us_per_packet"] = (med["demux"] - med["open"]) / max(1, n_pk)
    out["pyav_decode_us_per_frame"] = (med["decode"] - med["open"]) / n
    out["pyav_vs_ffmpeg_us_per_frame"] = (
        out["pyav_decode_us_per_frame"] - out["ffmpeg_us_per_frame"]
    )
    out["decode_from_us_per_frame"] = (med["decode_from"] - med["open"]) / n
    out["nonref_frames_out"] = n_nonref
    out["nonref_skip_time_ratio"] = (med["decode_nonref"] - med["open"]) / max(
        1.0, med["decode"] - med["open"]
    )

    # Per-frame output costs on decoded frames kept in memory (at most 32).
    with dec_reader._open(p) as c:
        vs = dec_reader._video_stream(c, p)
        kept = []
        for f in c.decode(vs):
            kept.append(f)
            if len(kept) >= 32:
                break
    h, w = kept[0].height, kept[0].width  # as decoded (before any display rotation)
    rgb = [f.to_ndarray(format="rgb24") for f in kept]

    def assemble_copy() -> torch.Tensor:  # copy into (T, H, W, 3), a (T, 3, H, W) view
        o = np.empty((len(rgb), h, w, 3), np.uint8)
        for j, x in enumerate(rgb):
            o[j] = x
        return torch.from_numpy(o).permute(0, 3, 1, 2)

    def assemble_torch() -> torch.Tensor:  # the same, then a transposing copy to NCHW
        return assemble_copy().contiguous()

    def assemble_cv2_split() -> np.ndarray:  # alternative: de-interleave into (T,3,H,W)
        o = np.empty((len(rgb), 3, h, w), np.uint8)
        for j, x in enumerate(rgb):
            cv2.split(x, list(o[j]))
        return o

    def gbrp_planar() -> np.ndarray:  # alternative: swscale to planar RGB, copy 3 planes
        o = np.empty((len(kept), 3, h, w), np.uint8)
        for j, f in enumerate(kept):
            g = f.reformat(format="gbrp")
            for ci, pi in ((0, 2), (1, 0), (2, 1)):  # gbrp planes are G, B, R
                pl = g.planes[pi]
                o[j, ci] = np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[:, :w]
        return o

    shared = VideoReformatter()

    def rgb24_shared() -> list[np.ndarray]:  # one SwsContext for all frames
        return [shared.reformat(f, format="rgb24").to_ndarray() for f in kept]

    ref = np.stack(rgb).transpose(0, 3, 1, 2)
    out["gbrp_equals_rgb24"] = bool(np.array_equal(gbrp_planar(), ref))
    out["shared_reformatter_equals_rgb24"] = all(
        np.array_equal(a, b) for a, b in zip(rgb24_shared(), rgb, strict=True)
    )
    med = _interleaved_us(
        {
            "rgb24": lambda: [f.to_ndarray(format="rgb24") for f in kept],
            "rgb24_shared": rgb24_shared,
            "assemble_copy": assemble_copy,
            "assemble_torch": assemble_torch,
            "assemble_cv2": assemble_cv2_split,
            "gbrp": gbrp_planar,
        },
        reps,
    )
    out["rgb24_us_per_frame"] = med["rgb24"] / len(kept)
    out["rgb24_shared_us_per_frame"] = med["rgb24_shared"] / len(kept)
    out["copy_us_per_frame"] = med["assemble_copy"] / len(rgb)
    out["assemble_us_per_frame"] = med["assemble_torch"] / len(rgb)
    one = read_frames(p, [0], info=info).data
    out["read_frames_contiguous"] = bool(one.is_contiguous())
    out["assemble_cv2_split_us_per_frame"] = med["assemble_cv2"] / len(rgb)
    out["gbrp_to_chw_us_per_frame"] = med["gbrp"] / len(kept)
    k_rot = (getattr(info, "rotation", 0) // 90) % 4
    if k_rot:
        out["rotate_us_per_frame"] = _median_us(
            lambda: [np.ascontiguousarray(np.rot90(x, k=k_rot)) for x in rgb], reps
        ) / len(rgb)
    out["fingerprint_us"] = _median_us(lambda: dec_reader._fingerprint(kept[0]), reps, 20)
    out["check_file_us"] = _median_us(lambda: dec_reader._check_file(p), reps, 50)

    # Seek cost: seek to the last verified seek point on an open container (no decode).
    sp = info.seek_points[-1] if info.seek_points else None
    if sp is not None:
        with dec_reader._open(p) as c:
            vs = dec_reader._video_stream(c, p)
            out["seek_us"] = _median_us(
                lambda: c.seek(sp.ts, stream=vs, backward=True, any_frame=False), reps, 10
            )
            if info.packed_b_frames:
                headers = info.prime_headers
                out["prime_us"] = _median_us(lambda: dec_reader._prime(vs, headers), reps, 5)

    # A whole read_frames call for one keyframe (open + seek + decode 1 + RGB + assembly).
    first = info.seek_points[-1].frame_index if info.seek_points else 0
    out["read_frames_1_keyframe_us"] = _median_us(
        lambda: read_frames(p, [first], info=info), reps, 5
    )

    # Audio: read_audio(1 s at 48 kHz), at the native rate, and the resampling alone.
    if info.audio:
        mid = info.duration_s / 2
        sr_in = info.audio[0].sample_rate
        out["audio_in_rate"] = sr_in
        out["read_audio_1s_us"] = _median_us(
            lambda: read_audio(p, mid, 1.0, sample_rate=AUDIO_RATE), reps, 3
        )
        out["read_audio_1s_native_rate_us"] = _median_us(
            lambda: read_audio(p, mid, 1.0, sample_rate=sr_in), reps, 3
        )
        if sr_in != AUDIO_RATE:  # what read_audio uses: scipy's polyphase resampler
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(sr_in, AUDIO_RATE)
            x = np.zeros((1, int(1.1 * sr_in)), np.float32)
            out["resample_1s_us"] = _median_us(
                lambda: resample_poly(x, AUDIO_RATE // g, sr_in // g, axis=1), reps, 3
            )
    return out


def profile_backends_open(path: Path, quick: bool) -> dict[str, float]:
    """Fixed per-call cost of each other backend: construct its reader and close it."""
    reps = 3 if quick else 5
    p = str(path)
    out: dict[str, float] = {}
    have = set(available_backends())
    if "decord" in have:
        import decord

        out["decord_reader_us"] = _median_us(
            lambda: decord.VideoReader(p, ctx=decord.cpu(0), num_threads=1), reps
        )
    if "opencv" in have:
        out["opencv_capture_us"] = _median_us(
            lambda: cv2.VideoCapture(p, cv2.CAP_FFMPEG).release(), reps
        )
    if "torchcodec" in have:
        from torchcodec.decoders import VideoDecoder

        out["torchcodec_exact_us"] = _median_us(
            lambda: VideoDecoder(p, seek_mode="exact", num_ffmpeg_threads=1), reps
        )
    return out


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def versions() -> dict[str, Any]:
    v: dict[str, Any] = {
        "python": platform.python_version(),
        "pyav": av.__version__,
        "pyav_ffmpeg_libs": {k: ".".join(map(str, x)) for k, x in av.library_versions.items()},
        "opencv": cv2.__version__,
        "torch": torch.__version__,
    }
    with contextlib.suppress(Exception):
        import decord

        v["decord"] = decord.__version__
    with contextlib.suppress(Exception):
        import torchcodec

        v["torchcodec"] = torchcodec.__version__
    exe = shutil.which("ffmpeg")
    if exe:
        first = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout
        v["ffmpeg_cli"] = first.splitlines()[0] if first else "?"
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parents[1]
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "avssl"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        v["avssl_commit"] = head + ("+dirty" if dirty else "")
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    v["cpu"] = cpu
    v["cores"] = os.cpu_count()
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests and repeats (< 1 min)")
    ap.add_argument("--media", default="bench-out/media", help="folder for generated media")
    ap.add_argument("--out", default="bench-out/decode.json", help="JSON results")
    ap.add_argument("--reps", type=int, default=None, help="timing repeats (default 5; quick: 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", nargs="*", default=None, help="only files whose name has these")
    ap.add_argument("--patterns", nargs="*", default=list(PATTERNS), choices=PATTERNS)
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--no-real", action="store_true", help="skip the real clips")
    ap.add_argument(
        "--warm-files",
        action="store_true",
        help="let avssl keep files open between requests (default: close them before each "
        "request, as when a loader reads from thousands of files)",
    )
    ap.add_argument("--no-profile", action="store_true", help="skip the component profile")
    ap.add_argument("--profile", action="store_true", help="run the profile in --quick too")
    args = ap.parse_args(argv)
    args.reps = 1 if args.quick else (args.reps or 5)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    t_all = time.perf_counter()
    load_start = _loadavg()

    files = media.build(args.media, log=lambda s: print(s, file=sys.stderr))
    if not args.no_real:
        found, missing = media.real_clips()
        files += found
        for m in missing:
            print(m)
    if args.files:
        files = [(p, n) for p, n in files if any(s in p.name for s in args.files)]
    have = set(available_backends()) | set(OWN)
    backends = [b for b in args.backends if b in have]
    for b in args.backends:
        if b not in have:
            print(f"backend {b} not installed: skipped")
    if not shutil.which("ffmpeg"):
        print("ffmpeg not found: the bound is PyAV's single-thread decode without conversion")

    ver = versions()
    if files:  # first calls load libraries (torchaudio for resampling, torchcodec's ops, ...)
        warm_path = files[0][0]
        warm_info = probe(warm_path)
        for b in backends:
            with contextlib.suppress(Exception), lifted_refusals():
                reader(b, warm_path, warm_info)(Request((0,), audio_start_s=0.0))
    # The backends' imports (torch._dynamo via torchcodec) leave ~10^6 objects that would make
    # every full collection during the timings cost ~0.1 s: freeze them out of the collector.
    gc.collect()
    gc.freeze()
    print(
        f"# decode benchmark ({'quick' if args.quick else 'default'}), {ver['cpu']}, "
        f"{ver['cores']} cores, avssl {ver.get('avssl_commit', '?')}, "
        f"{'warm' if args.warm_files else 'cold'} files"
    )
    results = []
    profiles = []
    for path, note in files:
        res = bench_file(path, note, backends, list(args.patterns), args)
        results.append(res)
        print(file_table(res, backends, args.reps))
        sys.stdout.flush()
        if (args.profile or not args.quick) and not args.no_profile:
            prof = profile_file(path, probe(path), res["bound"], args.quick)
            prof.update(profile_backends_open(path, args.quick))
            profiles.append(prof)
    if profiles:
        print(profile_table(profiles))
        print(breakdown_table(results, profiles))
    total = time.perf_counter() - t_all
    print(f"total {total:.0f} s; load average at start {load_start}, at end {_loadavg()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "versions": ver,
        "args": vars(args),
        "results": results,
        "profile": profiles,
        "total_s": total,
    }
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {out}")
    return 0


PROFILE_COLUMNS = (
    ("ffmpeg_us_per_frame", "ffmpeg 5.1 decode µs/frame (bound)"),
    ("pyav_decode_us_per_frame", "PyAV demux+decode µs/frame"),
    ("pyav_vs_ffmpeg_us_per_frame", "PyAV − ffmpeg µs/frame"),
    ("demux_us_per_packet", "PyAV demux µs/packet"),
    ("decode_from_us_per_frame", "decode._decode_from µs/frame"),
    ("nonref_skip_time_ratio", "decode time with skip_frame=NONREF (×)"),
    ("nonref_frames_out", "frames left with NONREF skipped"),
    ("rgb24_us_per_frame", "frame.to_ndarray(rgb24) µs/frame (new sws context each)"),
    ("rgb24_shared_us_per_frame", "rgb24 with one shared VideoReformatter µs/frame"),
    ("rotate_us_per_frame", "np.rot90 + copy µs/frame"),
    ("ffmpeg_rgb24_us_per_frame", "ffmpeg's own rgb24 conversion µs/frame"),
    ("copy_us_per_frame", "copy into (T,H,W,3) µs/frame"),
    ("assemble_us_per_frame", "… then .contiguous() NCHW (torch) µs/frame"),
    ("assemble_cv2_split_us_per_frame", "… with cv2.split µs/frame"),
    ("gbrp_to_chw_us_per_frame", "gbrp planar → CHW µs/frame"),
    ("open_us", "open µs"),
    ("open_probesize32_us", "open, probesize=32 µs"),
    ("seek_us", "seek µs"),
    ("prime_us", "_prime µs"),
    ("fingerprint_us", "fingerprint µs"),
    ("check_file_us", "_check_file µs"),
    ("read_frames_1_keyframe_us", "read_frames(1 keyframe) µs"),
    ("read_audio_1s_us", "read_audio 1 s@48k µs"),
    ("read_audio_1s_native_rate_us", "read_audio 1 s native µs"),
    ("resample_1s_us", "resample µs"),
    ("decord_reader_us", "decord VideoReader µs"),
    ("opencv_capture_us", "cv2 VideoCapture µs"),
    ("torchcodec_exact_us", "torchcodec exact µs"),
)


def breakdown_table(results: list[dict[str, Any]], profiles: list[dict[str, Any]]) -> str:
    """Where auto's time goes: measured ms/request vs a sum of profiled components."""
    prof = {p["file"]: p for p in profiles}
    cols = ["file", "pattern", "auto ms", "bound ms", "ratio", "frames decoded / min", "open",
            "decode", "seeks", "rgb24", "assembly", "audio", "rest", "of which kernel"]  # fmt: skip
    lines = ["### Where auto's time goes (ms per request; components from the profile)", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for res in results:
        pf = prof.get(res["file"])
        if pf is None:
            continue
        for pattern, pr in res["patterns"].items():
            c = pr["cells"].get("auto")
            if not c or not c["clips_per_s"] or not c["decoded_per_request"]:
                continue
            ms = 1e3 / c["clips_per_s"]
            bound_ms = 1e3 / pr["bound_clips_per_s"]
            dec = c["decoded_per_request"]
            t = {"sequential": res["num_frames"], "tuple3": 3, "clip16": 16}.get(pattern, 1)
            t = min(t, res["num_frames"])
            per_seek = pf.get("seek_us", 0) + pf.get("fingerprint_us", 0) + pf.get("prime_us", 0)
            parts = {
                "open": pf["open_us"] * (2 if pattern == "frame+audio" else 1),
                "decode": dec["frames"] * pf["pyav_decode_us_per_frame"],
                "seeks": dec["runs"] * per_seek,
                "rgb24": t
                * (
                    pf.get("rgb24_shared_us_per_frame", pf["rgb24_us_per_frame"])
                    + pf.get("rotate_us_per_frame", 0.0)
                ),
                "assembly": t
                * (
                    pf["assemble_us_per_frame"]
                    if pf.get("read_frames_contiguous", True)
                    else pf["copy_us_per_frame"]
                ),
                "audio": pf.get("read_audio_1s_us", 0) - pf["open_us"]
                if pattern == "frame+audio"
                else 0.0,
            }
            rest = ms * 1e3 - sum(parts.values())
            row = [res["file"], pattern, f"{ms:.2f}", f"{bound_ms:.2f}", f"{c['ratio']:.2f}",
                   f"{dec['frames']:.0f} / {pr['mean_min_frames']:.0f}"]  # fmt: skip
            row += [f"{v / 1e3:.2f}" for v in parts.values()] + [f"{rest / 1e3:.2f}"]
            sys_ms = (c.get("sys_per_request_s") or 0.0) * 1e3
            row.append(f"{sys_ms:.2f}")
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "open: av.open + stream setup (twice with audio: read_audio opens the file again); "
        "decode: frames the reader decoded x PyAV's µs/frame; seeks: runs x (seek + "
        "fingerprint + _prime); rgb24: conversion with one shared VideoReformatter (+ rotation) "
        "per wanted frame; assembly: copy into (T,H,W,3) (+ a transposing .contiguous() when "
        "read_frames returns NCHW-contiguous tensors); "
        "audio: read_audio(1 s) minus its open; "
        "rest: what the components do not explain (Python, allocation, noise); of which kernel: "
        "the system-time part of auto's CPU time (page faults on fresh buffers), included in "
        "the components and the rest."
    )
    return "\n".join(lines) + "\n"


def profile_table(profiles: list[dict[str, Any]]) -> str:
    cols = ["component"] + [p["file"] for p in profiles]
    lines = ["### Component costs", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, label in PROFILE_COLUMNS:
        vals = [p.get(key) for p in profiles]
        if all(v is None for v in vals):
            continue
        cells = ["" if v is None else (f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}") for v in vals]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
