"""No leak: RSS stays flat over thousands of reads (every container is closed).

The long version, per backend and through the training loader with workers:
``python -m benchmarks.memory_soak`` (BENCHMARKS.md, "Memory soak")."""

from __future__ import annotations

import gc
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
