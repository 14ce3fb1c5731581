"""Benchmark media: synthetic files shaped like the datasets, plus the real third-party clips.

Generated (with :func:`avssl.data.encode.write_video`, cached under ``bench-out/media``):

- ``ucf_like_gop300.avi``: UCF-101-like, 320x240 Xvid AVI, 25 fps, 7 s (175 frames), DivX packed
  B-frames (2 B per anchor, like the real clip's 1 I / 55 P / 108 B), one keyframe (the real clip
  has one in 164 frames), ~350 kbit/s, MP3 44.1 kHz stereo.
- ``ucf_like_gop12.avi``: the same with a keyframe every 12 frames ("several keyframes").
- ``audioset_like_gop250.mp4``: AudioSet-like, 640x360 H.264 10 s 25 fps (250 frames), 3 B-frames,
  one keyframe (x264's default keyint is 250), AAC 44.1 kHz stereo.
- ``audioset_like_gop25.mp4``: the same with a keyframe every second.

Content: two layers of smooth multi-octave noise panning at different speeds, with a slowly
varying brightness, so that motion search, residuals and B-frames do real work (flat or static
frames would make decoding unrealistically cheap). Audio: filtered noise plus a few tones.

Real clips (``../shared/data/av-clips``, or ``$AVSSL_SHARED_DATA/av-clips``): the UCF-101 clip,
a two-keyframe H.264 clip, a 360p H.264 clip and a 720p VFR clip; absent ones are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avssl.data.encode import write_video

#: Bumped when the generated content or settings change, so cached files are rebuilt.
MEDIA_VERSION = 1


@dataclass(frozen=True)
class Spec:
    name: str
    width: int
    height: int
    fps: int
    num_frames: int
    codec: str
    gop: int
    max_b_frames: int
    packed_b_frames: bool
    sample_rate: int
    bitrate: int | None = None
    crf: int | None = None
    note: str = ""


SPECS: tuple[Spec, ...] = (
    Spec("ucf_like_gop300.avi", 320, 240, 25, 175, "mpeg4", 300, 2, True, 44100,
         bitrate=350_000, note="UCF-like Xvid, packed B, 1 keyframe"),
    Spec("ucf_like_gop12.avi", 320, 240, 25, 175, "mpeg4", 12, 2, True, 44100,
         bitrate=350_000, note="UCF-like Xvid, packed B, keyframe every 12"),
    Spec("audioset_like_gop250.mp4", 640, 360, 25, 250, "h264", 250, 3, False, 44100,
         crf=23, note="AudioSet-like H.264, 1 keyframe"),
    Spec("audioset_like_gop25.mp4", 640, 360, 25, 250, "h264", 25, 3, False, 44100,
         crf=23, note="AudioSet-like H.264, keyframe every 25"),
)  # fmt: skip

REAL_CLIPS: tuple[tuple[str, str], ...] = (
    ("mmaction2__test_ucf101_ApplyEyeMakeup.avi", "real UCF-101 clip (Xvid packed B, 1 keyframe)"),
    ("torchcodec__nasa_13013.mp4", "real H.264 320x180, 2 keyframes"),
    ("moviepy__chaplin.mp4", "real H.264 640x360, 1 keyframe"),
    ("moviepy__fire2.mp4", "real H.264 1280x720 VFR, 25 frames"),
)


def shared_data_dir() -> Path:
    env = os.environ.get("AVSSL_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def real_clips() -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, note) of the real clips present, and a reason line for each absent one."""
    found, missing = [], []
    folder = shared_data_dir() / "av-clips"
    for name, note in REAL_CLIPS:
        p = folder / name
        if p.is_file():
            found.append((p, note))
        else:
            missing.append(f"skipped real clip {name}: not found at {p}")
    return found, missing


def _noise_layer(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Smooth fractal noise in [0, 1], (h, w, 3) float32: octaves of upscaled random grids."""
    out = np.zeros((h, w, 3), np.float32)
    total = 0.0
    for o in range(octaves):
        cells = 4 * 2**o
        amp = 0.6**o
        grid = rng.random((max(2, h * cells // w), cells, 3), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def frames(spec: Spec, seed: int = 0):
    """Yield ``spec.num_frames`` RGB uint8 frames of panning noise (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    h, w, n = spec.height, spec.width, spec.num_frames
    # Background pans 2 px/frame right and 1 px/frame down; a smaller-scale foreground layer
    # moves the other way at 3 px/frame and shows through a soft moving mask.
    bg = _noise_layer(rng, h + n + 8, w + 2 * n + 8)
    fg = _noise_layer(rng, h + 3 * n + 8, w + 3 * n + 8, octaves=6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        b = bg[i : i + h, 2 * i : 2 * i + w]
        f = fg[3 * n - 3 * i : 3 * n - 3 * i + h, 3 * i : 3 * i + w]
        cx = w * (0.3 + 0.4 * (i / max(1, n - 1)))
        cy = h * (0.5 + 0.2 * np.sin(i / 9.0))
        r = 0.3 * min(h, w)
        mask = np.clip(1.5 - np.hypot(xx - cx, yy - cy) / r, 0, 1)[..., None]
        img = (1 - mask) * b + mask * f
        img = img * (0.85 + 0.15 * np.sin(i / 20.0))
        yield np.clip(img * 255.0, 0, 255).astype(np.uint8)


def audio(spec: Spec, seed: int = 0) -> np.ndarray:
    """Stereo float32 (2, samples): low-passed noise plus a few tones, as long as the video."""
    rng = np.random.default_rng(seed + 1)
    sr = spec.sample_rate
    n = int(round(spec.num_frames / spec.fps * sr))
    t = np.arange(n, dtype=np.float32) / sr
    noise = rng.standard_normal((2, n)).astype(np.float32)
    kernel = np.ones(8, np.float32) / 8
    noise = np.stack([np.convolve(c, kernel, mode="same") for c in noise])
    tones = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1230 * t * (1 + 0.1 * t))
    return np.clip(0.3 * noise + tones[None], -1, 1).astype(np.float32)


def build(folder: str | Path = "bench-out/media", *, log=print) -> list[tuple[Path, str]]:
    """Write the generated files into ``folder`` (kept when already there); (path, note) each."""
    folder = Path(folder) / f"v{MEDIA_VERSION}"
    out = []
    for spec in SPECS:
        path = folder / spec.name
        if not path.is_file():
            log(f"generating {path} ...")
            write_video(
                path,
                frames(spec),
                fps=spec.fps,
                codec=spec.codec,
                gop=spec.gop,
                max_b_frames=spec.max_b_frames,
                packed_b_frames=spec.packed_b_frames,
                bitrate=spec.bitrate,
                crf=spec.crf,
                audio=audio(spec),
                sample_rate=spec.sample_rate,
                options={"sc_threshold": "0"} if spec.codec == "h264" else None,
            )
        out.append((path, spec.note))
    return out


if __name__ == "__main__":
    for p, note in build():
        print(p, p.stat().st_size, note)
