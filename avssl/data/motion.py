"""Per-frame motion energy and tiny grey thumbnails of a video, for temporal-order samples.

``energy[t]`` is the motion between frames ``t - 1`` and ``t``; ``energy[0]`` repeats ``energy[1]``.
Design notes: docs/design/data.md, "avssl.data.motion".
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

# Coarse Farneback flow by design (docs/design/data.md, "Farneback settings"):
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
