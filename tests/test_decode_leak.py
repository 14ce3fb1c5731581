"""No leak: RSS stays flat over thousands of reads (every container is closed), and the C heap
in use does not grow per read (every demuxer that a read stops early is closed).

The long version, per backend and through the training loader with workers:
``python -m benchmarks.memory_soak`` (BENCHMARKS.md, "Memory soak")."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from avssl.data.decode import clear_caches, probe, read_audio, read_frames
from avssl.data.encode import write_video
from benchmarks.memory_soak import rss_mb


def _rss_mb() -> float:
    mb = rss_mb()
    if mb is None:
        pytest.skip("no psutil and no /proc/self/status on this platform")
    return mb


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (60, 48, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((1, 44100 * 60 // 25))).astype(np.float32)
    path = tmp_path_factory.mktemp("leak") / "clip.mp4"
    write_video(path, frames, fps=25, codec="h264", gop=10, max_b_frames=2, audio=audio)
    return path


def test_rss_flat_over_thousands_of_reads(clip: Path) -> None:
    info = probe(clip)
    rng = np.random.default_rng(1)

    def burst(n: int) -> None:
        for _ in range(n):
            idx = np.sort(rng.choice(info.num_frames, 3, replace=False))
            read_frames(clip, idx, info=info)
            read_audio(clip, float(rng.uniform(0, 2)), 0.5, sample_rate=16000)

    burst(200)  # warm-up: allocator pools, swscale contexts, lazy imports (torchaudio)
    gc.collect()
    marks = [_rss_mb()]
    for _ in range(4):
        burst(250)
        gc.collect()
        marks.append(_rss_mb())
    # A leaked container (demuxer + decoder buffers) costs > 50 kB per read here: 1000 leaks
    # would add > 50 MB, growing at every mark. Allocator noise stays within a few MB.
    grown = marks[-1] - marks[0]
    assert grown < 15, f"RSS grew by {grown:.1f} MB over 1000 reads of {clip}: {marks}"


def test_rss_flat_over_repeated_probes(clip: Path) -> None:
    def burst(n: int) -> None:
        for _ in range(n):
            clear_caches()
            probe(clip)

    burst(10)
    gc.collect()
    before = _rss_mb()
    burst(100)
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 15, f"RSS grew by {grown:.1f} MB over 100 probes of {clip}"


# --------------------------------------------------------------------------------------------
# C heap in use (glibc mallinfo2): exact live bytes, blind to what the allocator retains
# --------------------------------------------------------------------------------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _heap_in_use_fn() -> Callable[[], int]:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    fn = getattr(libc, "mallinfo2", None)
    if fn is None:
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    fn.restype = _MallInfo2

    def in_use() -> int:
        gc.collect()
        m = fn()
        return int(m.uordblks + m.hblkhd)  # bytes malloc'ed and not freed, all arenas

    return in_use


def _heap_growth_per_call(call: Callable[[], object], warmup: int, steps: int, per: int) -> float:
    """Median over ``steps`` bursts of ``per`` calls of the C-heap growth, in bytes per call.

    A leak grows every burst; a one-off (a dict resize, a cache filling) moves one burst only,
    so the median ignores it."""
    in_use = _heap_in_use_fn()
    for _ in range(warmup):
        call()
    marks = [in_use()]
    for _ in range(steps):
        for _ in range(per):
            call()
        marks.append(in_use())
    growth = sorted(b - a for a, b in zip(marks, marks[1:], strict=False))
    return growth[len(growth) // 2] / per


@pytest.fixture(scope="module")
def all_key_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every frame a keyframe: reading every other frame is 30 seeks, each stopping its demuxer
    after one frame."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 255, (60, 48, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((1, 44100 * 60 // 25))).astype(np.float32)
    path = tmp_path_factory.mktemp("leak") / "all_key.mp4"
    write_video(path, frames, fps=25, codec="h264", gop=1, audio=audio)
    return path


# PyAV's demux frees its read packet (~150 B of C heap) only when the generator is exhausted
# or closed; a bare `for pk in c.demux(...)` left by `break`/`return` leaked it once per decode
# run (measured without the fix: ~4.4 kB per read_frames call here, ~8.6 kB per probe, ~190 B
# per read_audio call). With every demuxer closed the heap does not move after warm-up.
def test_heap_flat_over_seeking_reads(all_key_clip: Path) -> None:
    info = probe(all_key_clip)
    assert len(info.seek_points) == info.num_frames == 60
    idx = list(range(0, info.num_frames, 2))
    per_read = _heap_growth_per_call(lambda: read_frames(all_key_clip, idx, info=info), 20, 5, 40)
    assert per_read < 512, f"C heap grew {per_read:.0f} B per read_frames call (30 seeks each)"


def test_heap_flat_over_audio_reads(all_key_clip: Path) -> None:
    rng = np.random.default_rng(3)

    def read() -> object:
        return read_audio(all_key_clip, float(rng.uniform(0.5, 2.0)), 0.2, sample_rate=16000)

    per_read = _heap_growth_per_call(read, 300, 5, 200)
    assert per_read < 64, f"C heap grew {per_read:.0f} B per read_audio call"


def test_heap_flat_over_repeated_probes(all_key_clip: Path) -> None:
    def fresh_probe() -> object:
        clear_caches()
        return probe(all_key_clip)

    per_probe = _heap_growth_per_call(fresh_probe, 5, 5, 10)
    assert per_probe < 1024, f"C heap grew {per_probe:.0f} B per probe (60 seek points checked)"
