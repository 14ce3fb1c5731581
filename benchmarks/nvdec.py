"""torchcodec's CUDA (NVDEC) decoding against its CPU decoding, measured on the same files.

    python -m benchmarks.nvdec [--videos DIR] [--files 8] [--frames 32] [--out bench-out]

For each of the first ``--files`` H.264 ``.mp4`` files under ``--videos`` (default: the built-in
set's videos, ``$AVSSL_DATA/synth/videos``), torchcodec's ``VideoDecoder`` on ``device="cpu"``
and on ``device="cuda"`` each decode ``--frames`` frames spread over the clip (one
``get_frames_at`` call, the access pattern of a temporal sample) and then every frame in order;
the CUDA timings include the copy-free output on the GPU and a ``torch.cuda.synchronize()``.
Then ``--tuples`` random 3-frame tuples per file (span <= 60, a fresh decoder each) through
NVDEC, torchcodec on the CPU and avssl's CPU reader (``read_frames``: reference chains, one
thread), in alternating order, best of two.
The first file is decoded once untimed on both devices (the CUDA decoder's start-up). Results:
a table on stdout and ``OUT/nvdec.json``; rows say ``skipped`` with the reason when torchcodec,
CUDA or NVDEC is missing, so the script never fails a GPU check for lack of them. The frames
decoded on the two devices are compared too (mean absolute difference in 8-bit levels: NVDEC's
colour conversion is not bit-exact with FFmpeg's).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _decode(path: Path, device: str, frames: int) -> tuple[float, float, torch.Tensor]:
    """(seconds for ``frames`` spread frames, seconds for every frame, the spread frames)."""
    from torchcodec.decoders import VideoDecoder

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    dec = VideoDecoder(str(path), device=device)
    n = dec.metadata.num_frames or len(dec)
    idx = sorted({round(i * (n - 1) / max(frames - 1, 1)) for i in range(frames)})
    spread = dec.get_frames_at(indices=idx).data
    sync()
    t1 = time.perf_counter()
    dec = VideoDecoder(str(path), device=device)
    for _ in dec:
        pass
    sync()
    return t1 - t0, time.perf_counter() - t1, spread


def random_tuples(num_frames: int, n: int, seed: int = 0) -> list[list[int]]:
    """``n`` Shuffle & Learn 3-frame tuples (span <= 60), sorted, as benchmarks/decode.py draws."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        span = int(rng.integers(2, min(60, num_frames - 1) + 1))
        a = int(rng.integers(0, num_frames - span))
        out.append([a, int(rng.integers(a + 1, a + span)), a + span])
    return out


def tuples_s(path: Path, tuples: list[list[int]], device: str) -> float:
    """Seconds for ``tuples`` through torchcodec on ``device`` (``"avssl"``: avssl's CPU reader,
    one thread, files closed between tuples as for a loader drawing from many files); a fresh
    decoder per tuple, as for one sample."""
    t0 = time.perf_counter()
    if device == "avssl":
        from avssl.data.decode import clear_caches, probe, read_frames

        info = probe(path)
        t0 = time.perf_counter()
        for t in tuples:
            clear_caches()
            read_frames(path, t, info=info)
        return time.perf_counter() - t0
    from torchcodec.decoders import VideoDecoder

    for t in tuples:
        VideoDecoder(str(path), device=device, seek_mode="exact").get_frames_at(indices=t)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    ap.add_argument("--videos", type=Path, default=data / "synth" / "videos")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--tuples", type=int, default=50, help="random 3-frame tuples per file")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"videos": str(args.videos), "frames": args.frames, "rows": []}
    why = ""
    try:
        import torchcodec

        result["torchcodec"] = torchcodec.__version__
    except Exception as e:  # noqa: BLE001 - any import failure means: skip
        why = f"torchcodec not importable ({type(e).__name__}: {e})"
    if not why and not torch.cuda.is_available():
        why = "CUDA not available"
    files = sorted(args.videos.glob("*.mp4"))[: args.files]
    if not why and not files:
        why = f"no .mp4 files under {args.videos}"
    if not why:
        try:  # warm both decoders; a build without NVDEC support fails here
            _decode(files[0], "cpu", 2)
            _decode(files[0], "cuda", 2)
        except Exception as e:  # noqa: BLE001
            why = f"CUDA decoding failed ({type(e).__name__}: {str(e)[:300]})"
    if why:
        result["skipped"] = why
        print(f"nvdec: skipped: {why}")
    else:
        tot = {"cpu_spread": 0.0, "cpu_all": 0.0, "cuda_spread": 0.0, "cuda_all": 0.0}
        for f in files:
            cs, ca, cf = _decode(f, "cpu", args.frames)
            gs, ga, gf = _decode(f, "cuda", args.frames)
            diff = (cf.float() - gf.cpu().float()).abs().mean().item()
            result["rows"].append({"file": f.name, "cpu_spread_s": cs, "cpu_all_s": ca,
                                   "cuda_spread_s": gs, "cuda_all_s": ga,
                                   "mean_abs_diff": round(diff, 3)})  # fmt: skip
            for k, v in zip(tot, (cs, ca, gs, ga), strict=True):
                tot[k] += v
        result["totals_s"] = tot
        result["speedup_spread"] = round(tot["cpu_spread"] / max(tot["cuda_spread"], 1e-9), 2)
        result["speedup_all"] = round(tot["cpu_all"] / max(tot["cuda_all"], 1e-9), 2)
        tuple_rows(files, args.tuples, result)
        print(f"nvdec: {len(files)} files, {args.frames} spread frames each and every frame")
        print("| file | cpu spread s | cuda spread s | cpu all s | cuda all s | mean abs diff |")
        print("|---|---|---|---|---|---|")
        for r in result["rows"]:
            print(
                f"| {r['file']} | {r['cpu_spread_s']:.3f} | {r['cuda_spread_s']:.3f} | "
                f"{r['cpu_all_s']:.3f} | {r['cuda_all_s']:.3f} | {r['mean_abs_diff']} |"
            )
        print(f"CUDA / CPU speed-up: spread {result['speedup_spread']}x, "
              f"all frames {result['speedup_all']}x")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nvdec.json").write_text(json.dumps(result, indent=1))
    return 0


def tuple_rows(files: list[Path], n: int, result: dict[str, Any]) -> None:
    """Random 3-frame tuples (issue 25): NVDEC (torchcodec CUDA), torchcodec CPU and avssl's CPU
    reader (reference chains, one thread), tuples/s per file, in alternating order."""
    from avssl.data.decode import probe

    rows = []
    for f in files:
        tuples = random_tuples(probe(f).num_frames, n)
        secs: dict[str, list[float]] = {"cuda": [], "cpu": [], "avssl": []}
        for rep in range(2):
            for dev in ("cuda", "cpu", "avssl") if rep % 2 == 0 else ("avssl", "cpu", "cuda"):
                secs[dev].append(tuples_s(f, tuples, dev))
        rows.append({"file": f.name, **{f"{d}_tuples_per_s": n / min(v) for d, v in secs.items()}})
    result["tuple3"] = rows
    print("| file | NVDEC tuples/s | torchcodec CPU tuples/s | avssl CPU (1 thread) tuples/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['cuda_tuples_per_s']:.0f} | {r['cpu_tuples_per_s']:.0f} | "
              f"{r['avssl_tuples_per_s']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
