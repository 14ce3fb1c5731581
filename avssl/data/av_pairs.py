"""Aligned (frame, audio window) pairs for audio-visual correspondence and synchronisation.

Pure functions (no I/O, explicit ``rng``); every window start lies on its video's frame grid.
Design notes: docs/design/data.md, "avssl.data.av_pairs".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AudioSpan:
    """Where audio windows of one video may be cut, on its time axis (seconds).

    ``lo_s``/``hi_s``: the usable stretch (the AudioSet segment intersected with the decoded
    audio); a window ``[start, start + window_s)`` must lie inside it. ``origin_s``: the time of
    the video's first frame, the zero of its frame grid."""

    origin_s: float
    lo_s: float
    hi_s: float

    def fits(self, start_s: float, window_s: float, eps: float = 1e-6) -> bool:
        return start_s >= self.lo_s - eps and start_s + window_s <= self.hi_s + eps


def on_grid(start_s: float, origin_s: float, fps: float, tol: float = 1e-6) -> bool:
    """Whether ``start_s`` is ``origin_s + m / fps`` for an integer ``m``."""
    m = (start_s - origin_s) * fps
    return abs(m - round(m)) < tol * max(1.0, fps)


def centred_start(pts_s: np.ndarray, frame: int, fps: float, window_s: float) -> float | None:
    """Start of the window centred on ``frame``: the time of frame ``frame - h``,
    ``h = round(window_s * fps / 2)``; None when that frame does not exist."""
    h = int(round(window_s * fps / 2))
    k = frame - h
    return float(pts_s[k]) if 0 <= k < len(pts_s) else None


def sample_frames(
    pts_s: np.ndarray,
    fps: float,
    span: AudioSpan,
    window_s: float,
    rate_hz: float,
    rng: np.random.Generator,
    keep: Callable[[float], bool] | None = None,
    avoid: Collection[int] = (),
) -> list[int]:
    """Frames at about ``rate_hz`` per second whose centred window fits ``span`` (and, with
    ``keep``, whose window start ``s`` passes ``keep(s)``: e.g. only windows with sound).
    Frames in ``avoid`` (damage the decoder concealed, ``VideoInfo.damaged_frames``) are never
    drawn.

    The usable stretch is cut into slots of ``1 / rate_hz`` s; from each slot one eligible frame
    is drawn uniformly (frames are always on the video's own grid: they are frame indices).
    Sorted, distinct, deterministic for the generator's state.
    """
    if rate_hz <= 0 or window_s <= 0:
        raise ValueError(f"rate_hz and window_s must be > 0, got {rate_hz}, {window_s}")
    eligible = []
    avoid = frozenset(avoid)
    for i in range(len(pts_s)):
        if i in avoid:
            continue
        s = centred_start(pts_s, i, fps, window_s)
        if s is not None and span.fits(s, window_s) and (keep is None or keep(s)):
            eligible.append(i)
    if not eligible:
        return []
    times = np.asarray(pts_s)[eligible]
    t0 = float(times[0])
    slots = np.floor((times - t0) * rate_hz + 1e-9).astype(np.int64)
    out = []
    for slot in np.unique(slots):
        members = np.flatnonzero(slots == slot)
        out.append(eligible[int(members[int(rng.integers(len(members)))])])
    return out


def grid_starts(span: AudioSpan, fps: float, window_s: float) -> tuple[int, int] | None:
    """The range ``[m_lo, m_hi]`` of integers m for which ``span.origin_s + m / fps`` is a
    window start that fits ``span``; None when no window fits."""
    eps = 1e-6  # seconds, the tolerance of AudioSpan.fits: the range is exactly what fits
    m_lo = math.ceil((span.lo_s - eps - span.origin_s) * fps)
    m_hi = math.floor((span.hi_s + eps - window_s - span.origin_s) * fps)
    return (m_lo, m_hi) if m_hi >= m_lo else None


def sync_shift(
    start_s: float,
    span: AudioSpan,
    fps: float,
    window_s: float,
    min_offset_s: float,
    max_offset_s: float,
    rng: np.random.Generator,
) -> int | None:
    """A shift in whole frames for a synchronisation negative of the window at ``start_s``:
    ``min_offset_s <= |shift| / fps <= max_offset_s``, either sign, the shifted window inside
    ``span``; uniform over the shifts that fit. None when none fits."""
    if not 0 < min_offset_s <= max_offset_s:
        raise ValueError(
            f"need 0 < min_offset_s <= max_offset_s, got {min_offset_s} and {max_offset_s}"
        )
    k_min = math.ceil(min_offset_s * fps - 1e-6)
    k_max = math.floor(max_offset_s * fps + 1e-6)
    shifts = [s * k for k in range(k_min, k_max + 1) for s in (-1, 1)]
    ok = [k for k in shifts if span.fits(start_s + k / fps, window_s)]
    if not ok:
        return None
    return int(ok[int(rng.integers(len(ok)))])
