"""Per-frame motion energy of a video: where the temporal-order pretext samples come from.

Shuffle & Learn (Misra et al. 2016) mines its frame tuples only from high-motion windows, found
with *coarse* optical-flow magnitude; frame-difference energy is the usual cheap proxy. Both are
here, on small grey frames:

- ``"flow"`` (default): OpenCV Farneback flow between consecutive frames at ``width`` px wide
  (40 by default, 1/8 of UCF-101's 320), energy = mean flow magnitude in frame widths per frame.
  Coarse on purpose: the window choice only needs "is something moving", and full-resolution
  flow costs ~50x more (BENCHMARKS.md, "Mining").
- ``"diff"``: mean absolute grey-level difference of consecutive frames / 255.

``energy[t]`` is the motion between frame ``t - 1`` and ``t``; ``energy[0]`` repeats
``energy[1]`` so the array has one value per counted frame (the indices of
:func:`avssl.data.decode.probe`). Alongside, a tiny grey thumbnail of every frame (16 px wide)
lets the samplers reject near-duplicate frames without decoding again.

The grey frames come from one sequential pass (:func:`avssl.data.decode.iter_frames` with
``gray=True``): the luma plane is used as decoded, and MPEG-4 (UCF-101's Xvid) is decoded at
reduced size by the decoder itself.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from avssl.data.decode import DEFAULT_TIMEOUT_S, iter_frames, probe
from avssl.data.manifest import atomic_output
from avssl.types import VideoInfo

MotionMethod = Literal["flow", "diff"]
METHODS: tuple[str, ...] = ("flow", "diff")
THUMB_WIDTH = 16
VERSION = 1  # bump when a change alters the numbers: cached motion files are then recomputed

# Farneback at 40x30: two pyramid levels, a 9-px window, one iteration. Coarse flow by design;
# on UCF-101-like 320x240 Xvid the whole pass (decode + flow) runs at >= 100x real time per core.
# OpenCV's defaults in most examples (3 levels, 15 px, 3 iterations) cost ~2x more here for the
# same energies (a second iteration changes them by ~3%, and costs 25% of the pass).
# (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)
_FARNEBACK = (0.5, 2, 9, 1, 5, 1.1, 0)


@dataclass(frozen=True)
class Motion:
    """Motion energy and thumbnails of one video (one entry per counted frame)."""

    energy: np.ndarray  # (N,) float32
    thumbs: np.ndarray  # (N, th, tw) uint8 grey
    method: str
    width: int  # analysis width in pixels

    def __post_init__(self) -> None:
        if self.energy.ndim != 1 or self.thumbs.ndim != 3:
            raise ValueError(
                f"Motion: energy must be (N,) and thumbs (N, h, w), got "
                f"{self.energy.shape} and {self.thumbs.shape}"
            )
        if len(self.energy) != len(self.thumbs):
            raise ValueError(
                f"Motion: {len(self.energy)} energies but {len(self.thumbs)} thumbnails"
            )


def analysis_size(width: int, height: int, analysis_width: int) -> tuple[int, int]:
    """``(height, width)`` of the analysis frames: ``analysis_width`` wide, aspect kept, >= 8."""
    if analysis_width < 8:
        raise ValueError(f"motion analysis width must be >= 8 px, got {analysis_width}")
    w = min(analysis_width, width)
    h = max(8, round(height * w / max(width, 1)))
    return h, max(8, w)


def energy_between(prev: np.ndarray, cur: np.ndarray, method: str) -> float:
    """The motion energy between two grey frames of the same size (see the module docstring)."""
    import cv2

    if method == "flow":
        flow = cv2.calcOpticalFlowFarneback(prev, cur, None, *_FARNEBACK)  # type: ignore[call-overload]
        return float(cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0]) / prev.shape[1]
    if method == "diff":
        return float(cv2.mean(cv2.absdiff(prev, cur))[0]) / 255.0
    raise ValueError(f"unknown motion method {method!r}; expected one of {METHODS}")


def motion_energy(
    path: str | os.PathLike[str],
    *,
    method: MotionMethod = "flow",
    width: int = 40,
    info: VideoInfo | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Motion:
    """Decode ``path`` once (grey, small) and measure the motion energy of every frame."""
    import cv2

    if method not in METHODS:
        raise ValueError(f"unknown motion method {method!r}; expected one of {METHODS}")
    cv2.setNumThreads(1)  # parallelism comes from prep workers; cv2's pool only adds overhead
    if info is None:
        info = probe(path, timeout_s=timeout_s)
    size = analysis_size(info.width, info.height, width)
    th = max(1, round(size[0] * THUMB_WIDTH / size[1]))
    energy = np.zeros(info.num_frames, np.float32)
    thumbs = np.zeros((info.num_frames, th, THUMB_WIDTH), np.uint8)
    prev: np.ndarray | None = None
    for i, grey in iter_frames(path, size=size, gray=True, info=info, timeout_s=timeout_s):
        thumbs[i] = cv2.resize(grey, (THUMB_WIDTH, th), interpolation=cv2.INTER_AREA)
        if prev is not None:
            energy[i] = energy_between(prev, grey, method)
        prev = grey
    if len(energy) > 1:
        energy[0] = energy[1]
    return Motion(energy=energy, thumbs=thumbs, method=method, width=size[1])


def save_motion(path: str | os.PathLike[str], motion: Motion, *, key: str = "") -> None:
    """Write ``motion`` to an ``.npz`` atomically; ``key`` (e.g. the file fingerprint) is stored
    so that :func:`load_motion` can refuse a cache computed for another file or setting."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            energy=motion.energy,
            thumbs=motion.thumbs,
            meta=np.array([motion.method, str(motion.width), key, str(VERSION)]),
        )


def load_motion(path: str | os.PathLike[str], *, key: str = "") -> Motion | None:
    """The cached motion at ``path``, or None when absent, unreadable or made for another key."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            method, width, stored_key, version = (str(x) for x in z["meta"])
            if stored_key != key or version != str(VERSION):
                return None
            return Motion(energy=z["energy"], thumbs=z["thumbs"], method=method, width=int(width))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
