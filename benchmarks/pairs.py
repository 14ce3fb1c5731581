"""Audio-visual pair reading: from the videos vs from the ``--cache`` of ``avssl-prep audioset``.

    python -m benchmarks.pairs [--quick]      # ~2 min; results in bench-out/pairs.json

A training step of L3 / AVE-Net reads, per sample, one frame and one second of mono audio at
48 kHz. This times, on one thread in CPU seconds ("per core"), random pairs from the pair
manifest read (a) from the media files with ``read_frames`` + ``read_audio`` and (b) from the
cache (one row of a memory-mapped uint8 frame array, one slice of a memory-mapped int16 track,
converted to float), both with the files kept open as a data-loader worker would.

Files: the AudioSet-like generated clips of benchmarks/media.py (640x360 H.264, 10 s, AAC
44.1 kHz stereo; one keyframe, or one per second), copied N times with distinct bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data import decode
from avssl.data.manifest import read_manifest
from benchmarks import media
from data_prep.av_prep import PairConfig, load_cached_pair
from data_prep.scan import scan_folder
from data_prep.videos import prep_videos

SR = 48000


def _pairs_per_cpu_s(read: Any, rows: list[dict[str, Any]], reps: int) -> float:
    rates = []
    for _ in range(reps):
        t = time.process_time()
        for r in rows:
            read(r)
        rates.append(len(rows) / (time.process_time() - t))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer copies and pairs")
    args = ap.parse_args(argv)
    copies, n_pairs, reps = (2, 100, 3) if args.quick else (6, 400, 5)
    Path("bench-out").mkdir(exist_ok=True)
    files = [p for p, _ in media.build() if p.suffix == ".mp4"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir="bench-out") as tmp:
        root, out, cache = Path(tmp) / "videos", Path(tmp) / "out", Path(tmp) / "cache"
        root.mkdir()
        for k in range(copies):
            for f in files:
                dst = root / f"c{k:02d}_{f.name}"
                shutil.copy(f, dst)
                with open(dst, "ab") as fh:
                    fh.write(k.to_bytes(4, "little"))
        t_wall, t_cpu = time.monotonic(), time.process_time()
        prep_videos(scan_folder(root), out, config=PairConfig(), workers=1, cache_dir=cache,
                    progress=False)  # fmt: skip
        results["prep"] = {
            "videos": len(files) * copies,
            "wall_s": round(time.monotonic() - t_wall, 2),
            "cpu_s": round(time.process_time() - t_cpu, 2),
            "cache_bytes": sum(p.stat().st_size for p in cache.rglob("*.npy")),
            "media_bytes": sum(p.stat().st_size for p in root.iterdir()),
        }
        rows = read_manifest(out / "avc_train.jsonl")
        rng = np.random.default_rng(0)
        sample = [rows[int(i)] for i in rng.integers(len(rows), size=n_pairs)]
        infos = {r["video"]: r for r in read_manifest(out / "probe.jsonl")}
        from avssl.types import VideoInfo

        vinfo = {k: VideoInfo.from_dict({kk: vv for kk, vv in v.items() if kk != "video"})
                 for k, v in infos.items()}  # fmt: skip

        def from_media(r: dict[str, Any]) -> None:
            decode.read_frames(root / r["video"], [r["frame"]], info=vinfo[r["video"]])
            decode.read_audio(root / r["audio_video"], r["audio_start_s"], r["audio_s"],
                              sample_rate=SR)  # fmt: skip

        opened: dict[str, np.ndarray] = {}

        def from_cache(r: dict[str, Any]) -> None:
            frame, audio = load_cached_pair(cache, r, SR, opened)
            assert frame.ndim == 3 and audio.shape == (SR,)

        decode.clear_caches()
        results["media_pairs_per_cpu_s"] = round(_pairs_per_cpu_s(from_media, sample, reps), 1)
        results["cache_pairs_per_cpu_s"] = round(_pairs_per_cpu_s(from_cache, sample, reps), 1)
        results["cache_frame_shape"] = list(load_cached_pair(cache, sample[0], SR, opened)[0].shape)
    results["speedup"] = round(
        results["cache_pairs_per_cpu_s"] / results["media_pairs_per_cpu_s"], 1
    )
    Path("bench-out/pairs.json").write_text(json.dumps(results, indent=1) + "\n")
    p = results["prep"]
    print(
        f"| source | pairs / CPU-s (one core) |\n|---|---|\n"
        f"| media files (read_frames + read_audio, 640x360 H.264 + AAC) | "
        f"{results['media_pairs_per_cpu_s']} |\n"
        f"| cache (JPEG {results['cache_frame_shape']} frame + int16 48 kHz, memory-mapped) | "
        f"{results['cache_pairs_per_cpu_s']} |\n\n"
        f"speed-up {results['speedup']}x; prep with cache: {p['videos']} videos in "
        f"{p['cpu_s']} CPU s; cache {p['cache_bytes'] / 1e6:.1f} MB for "
        f"{p['media_bytes'] / 1e6:.1f} MB of media"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
