"""torchcodec's CUDA (NVDEC) decoding against its CPU decoding, measured on the same files.

    python -m benchmarks.nvdec [--videos DIR] [--files 8] [--frames 32] [--out bench-out]

For each of the first ``--files`` H.264 ``.mp4`` files under ``--videos`` (default: the built-in
set's videos, ``$AVSSL_DATA/synth/videos``), torchcodec's ``VideoDecoder`` on ``device="cpu"``
and on ``device="cuda"`` each decode ``--frames`` frames spread over the clip (one
``get_frames_at`` call, the access pattern of a temporal sample) and then every frame in order;
the CUDA timings include the copy-free output on the GPU and a ``torch.cuda.synchronize()``.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    ap.add_argument("--videos", type=Path, default=data / "synth" / "videos")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
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


if __name__ == "__main__":
    raise SystemExit(main())
