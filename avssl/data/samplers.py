"""Temporal-order pretext samples mined from one video's per-frame motion energy.

Pure functions: frame indices are 0-based, windows half-open ``(start, end)``, randomness comes
only from the explicit generator. Design notes: docs/design/data.md, "avssl.data.samplers".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from avssl.checks import float_arg, int_arg

Window = tuple[int, int]
T = TypeVar("T")


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_thumbs(thumbs: np.ndarray) -> int:
    if not isinstance(thumbs, np.ndarray) or thumbs.ndim != 3 or thumbs.dtype != np.uint8:
        got = (
            f"{thumbs.dtype} array of shape {thumbs.shape}"
            if isinstance(thumbs, np.ndarray)
            else type(thumbs).__name__
        )
        raise ValueError(f"thumbs must be a uint8 array of shape (N, h, w), got {got}")
    return int(thumbs.shape[0])


def _check_windows(windows: Sequence[Window], n: int) -> list[Window]:
    """Windows as python-int pairs, each non-empty and inside ``0..n`` (n = len(thumbs))."""
    out: list[Window] = []
    for w in windows:
        if len(w) != 2:
            raise ValueError(f"window must be a (start, end) pair, got {w!r}")
        s = int_arg("window start", w[0], 0)
        e = int_arg("window end", w[1], 0)
        if not s < e <= n:
            raise ValueError(f"window {w!r} must satisfy 0 <= start < end <= len(thumbs) = {n}")
        out.append((s, e))
    return out


def _common_args(
    windows: Sequence[Window],
    thumbs: np.ndarray,
    count: int,
    rng: object,
    dup_threshold: float,
    max_tries: int,
) -> tuple[list[Window], int, np.random.Generator, float, int]:
    """The arguments every sampler takes, checked, in this order."""
    wins = _check_windows(windows, _check_thumbs(thumbs))
    count = int_arg("count", count, 0)
    checked_rng = _check_rng(rng)
    dup_threshold = float_arg("dup_threshold", dup_threshold, 0.0)
    return wins, count, checked_rng, dup_threshold, int_arg("max_tries", max_tries, 1)


def _run_args(
    windows: Sequence[Window],
    thumbs: np.ndarray,
    count: int,
    rng: object,
    dup_threshold: float,
    max_tries: int,
    length: int,
    max_stride: int,
) -> tuple[list[Window], int, np.random.Generator, float, int, int, list[tuple[int, np.ndarray]]]:
    """:func:`_common_args`, then the run ``length`` and its stride tables (:func:`_draw_run`)."""
    wins, count, checked_rng, dup_threshold, max_tries = _common_args(
        windows, thumbs, count, rng, dup_threshold, max_tries
    )
    length = int_arg("length", length, 2)
    tables = _stride_tables(wins, length, int_arg("max_stride", max_stride, 1))
    return wins, count, checked_rng, dup_threshold, max_tries, length, tables


def _collect(
    count: int, max_tries: int, draw: Callable[[set[Hashable]], tuple[Hashable, T] | None]
) -> list[T]:
    """Up to ``count`` samples from ``draw(seen)``, which returns ``(key, sample)`` or None when
    it rejects the draw (it sees the keys taken so far, to reject repeats); stops after
    ``count * max_tries`` rejected draws."""
    out: list[T] = []
    seen: set[Hashable] = set()
    failures = 0
    while len(out) < count and failures < count * max_tries:
        got = draw(seen)
        if got is None:
            failures += 1
            continue
        seen.add(got[0])
        out.append(got[1])
    return out


def _mad(thumbs: np.ndarray, i: int, j: int) -> float:
    """Mean absolute difference of two thumbnails, in [0, 1]."""
    d = thumbs[i].astype(np.int16) - thumbs[j]  # exact integers: 5x cheaper than float means
    return float(np.abs(d).sum()) / (d.size * 255.0)


def _weighted_index(rng: np.random.Generator, cum: np.ndarray) -> int:
    """Index ``k`` with probability ``weights[k] / total``, given ``cum = cumsum(weights)``.

    Integer arithmetic throughout, so the choice is exact (no float renormalisation)."""
    r = int(rng.integers(int(cum[-1])))
    return int(np.searchsorted(cum, r, side="right"))


def _stride_tables(
    windows: list[Window], length: int, max_stride: int
) -> list[tuple[int, np.ndarray]]:
    """For each stride in 1..max_stride that fits somewhere: (stride, cumsum of placements).

    A run of ``length`` frames at stride ``s`` spans ``(length - 1) * s + 1`` frames, so a window
    ``[a, b)`` allows ``b - a - span + 1`` start frames. Strides that fit no window are dropped
    (the stride is drawn uniformly among the strides that fit, so an unfittable stride never wastes
    a draw); since the span grows with the stride, the kept strides are always ``1..k``."""
    tables: list[tuple[int, np.ndarray]] = []
    for stride in range(1, max_stride + 1):
        span = (length - 1) * stride + 1
        counts = np.array([max(0, e - s - span + 1) for s, e in windows], dtype=np.int64)
        if counts.sum() > 0:
            tables.append((stride, np.cumsum(counts)))
    return tables


def _draw_run(
    rng: np.random.Generator,
    windows: list[Window],
    tables: list[tuple[int, np.ndarray]],
    length: int,
) -> tuple[tuple[int, ...], Window]:
    """One in-order run ``start + stride * k`` (k = 0..length-1) inside one window.

    Stride uniform over the fitting strides; then the window with probability proportional to the
    number of start frames it allows at that stride; then the start uniform in that window, so
    every (window, start) placement of the chosen stride is equally likely."""
    stride, cum = tables[int(rng.integers(len(tables)))]
    s, e = windows[_weighted_index(rng, cum)]
    span = (length - 1) * stride + 1
    start = int(rng.integers(s, e - span + 1))
    return tuple(start + stride * k for k in range(length)), (s, e)


def _non_identity_permutation(rng: np.random.Generator, length: int) -> np.ndarray:
    """Uniform over the ``length! - 1`` non-identity permutations (length >= 2).

    Rejection sampling: each try is the identity with probability ``1 / length! <= 1/2``, so the
    expected number of tries is at most 2 and the loop ends with probability 1."""
    ident = np.arange(length)
    while True:
        perm = rng.permutation(length)
        if not np.array_equal(perm, ident):
            return perm


def exclude_frames(windows: Sequence[Window], frames: Collection[int]) -> list[Window]:
    """``windows`` with ``frames`` cut out (a window holding one is split around it; empty
    pieces are dropped). Samplers draw only inside windows, so frames the decoder flagged as
    concealed damage (``VideoInfo.damaged_frames``) are never sampled."""
    bad = sorted(set(frames))
    out: list[Window] = []
    for a, b in windows:
        lo = a
        for f in bad[bisect_left(bad, a) : bisect_left(bad, b)]:
            if f > lo:
                out.append((lo, f))
            lo = f + 1
        if b > lo:
            out.append((lo, b))
    return out


def high_motion_windows(
    energy: np.ndarray,
    *,
    smooth: int = 5,
    quantile: float = 0.5,
    floor: float = 0.0,
    merge_gap: int = 0,
    min_len: int = 1,
) -> list[Window]:
    """Maximal runs of frames whose smoothed motion energy is high.

    ``energy`` is smoothed with a moving average of ``smooth`` frames: frame ``t`` averages
    ``energy[t - (smooth - 1) // 2 : t + smooth // 2 + 1]`` (centred; for an even ``smooth`` the
    extra frame is the one after, since ``energy[t + 1]`` is the motion leaving frame ``t``), with
    the ends padded by repeating the first/last value ("nearest"), so the output has length N.
    A frame is *high-motion* when its smoothed energy is ``>= max(quantile of the smoothed
    energies, floor)`` **and** ``> 0`` (a still video, all zeros, has no high-motion frames
    whatever the quantile). Runs separated by at most ``merge_gap`` low frames are joined (a
    brief pause inside one action -- a hand turning round -- should not cut it in two; the
    joined window is still mostly high-motion). Returns the maximal (joined) runs as half-open
    ``(start, end)`` windows of at least ``min_len`` frames, sorted by start.
    """
    smooth = int_arg("smooth", smooth, 1)
    quantile = float_arg("quantile", quantile, 0.0, 1.0)
    floor = float_arg("floor", floor, 0.0)
    min_len = int_arg("min_len", min_len, 1)
    merge_gap = int_arg("merge_gap", merge_gap, 0)
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"energy must be 1-D (N,), got shape {e.shape}")
    if e.size == 0:
        return []
    if not np.all(np.isfinite(e)):
        bad = int(np.flatnonzero(~np.isfinite(e))[0])
        raise ValueError(f"energy must be finite, got energy[{bad}] = {e[bad]!r}")

    left, right = (smooth - 1) // 2, smooth // 2
    padded = np.pad(e, (left, right), mode="edge")
    # Direct sums (not a cumsum difference): a window of exact zeros sums to exactly 0, so the
    # "> 0" rule below is not defeated by rounding residue next to a spike.
    smoothed = np.convolve(padded, np.ones(smooth), mode="valid") / smooth
    threshold = max(float(np.quantile(smoothed, quantile)), floor)
    mask = (smoothed >= threshold) & (smoothed > 0)

    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    runs: list[Window] = []
    for s, t in zip(starts.tolist(), ends.tolist(), strict=True):
        if runs and s - runs[-1][1] <= merge_gap:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((s, t))
    return [(s, t) for s, t in runs if t - s >= min_len]


def near_duplicate(thumbs: np.ndarray, i: int, j: int, threshold: float) -> bool:
    """True when frames ``i`` and ``j`` look the same: mean |thumbs[i] - thumbs[j]| / 255 <
    ``threshold`` (so ``threshold = 0`` never calls two frames duplicates)."""
    n = _check_thumbs(thumbs)
    i = int_arg("i", i, 0)
    j = int_arg("j", j, 0)
    for name, v in (("i", i), ("j", j)):
        if v >= n:
            raise ValueError(f"{name} must be < len(thumbs) = {n}, got {v}")
    threshold = float_arg("threshold", threshold, 0.0)
    return _mad(thumbs, i, j) < threshold


@dataclass(frozen=True)
class ShuffleTuple:
    """One Shuffle & Learn training tuple.

    ``frames`` are shown to the network in this order; ``label`` 1 = temporally ordered (positive),
    0 = not. ``kind``: ``"pos_fwd"`` (b, c, d), ``"pos_rev"`` (d, c, b), ``"neg_a"`` (b, a, d) or
    ``"neg_e"`` (b, e, d). ``five`` = (a, b, c, d, e), a < b < c < d < e, all in ``window``."""

    frames: tuple[int, int, int]
    label: int
    kind: str
    five: tuple[int, int, int, int, int]
    window: Window


def shuffle_learn_tuples(
    windows: Sequence[Window],
    thumbs: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    positive_ratio: float = 0.25,
    tau_max: int = 60,
    tau_min: int = 15,
    dup_threshold: float = 0.01,
    max_tries: int = 20,
) -> list[ShuffleTuple]:
    """Up to ``count`` distinct Shuffle & Learn tuples (Misra et al. 2016), in generation order.

    Rules: five frames a < b < c < d < e in one window; positive span ``d - b <= tau_max`` and c
    strictly between b and d (the positive (b, c, d) or its mirror (d, c, b) -- both are
    "temporally coherent", the paper treats the reverse as positive too); negatives replace c by a
    frame *outside* [b, d]: ``b - a >= tau_min`` or ``e - d >= tau_min``, far enough that the wrong
    order is visible. A window can host a draw only if ``end - start >= 2 * tau_min + 3``.

    Sampling: the (b, d) pair is uniform over all valid placements in all windows (a window is
    picked with probability proportional to its number of (b, d) placements); then c, a and e are
    uniform in their ranges. Positive with probability ``positive_ratio`` (the paper uses 25 %
    positives), then (b, c, d) or (d, c, b) 50/50; else (b, a, d) or (b, e, d) 50/50. A draw is
    rejected when two of its three shown frames are near-duplicates (the order of identical frames
    cannot be learned) or when it repeats an earlier tuple's ``frames``. Stops after ``count``
    tuples or ``count * max_tries`` rejected draws.
    """
    wins, count, rng, dup_threshold, max_tries = _common_args(
        windows, thumbs, count, rng, dup_threshold, max_tries
    )
    positive_ratio = float_arg("positive_ratio", positive_ratio, 0.0, 1.0)
    tau_max = int_arg("tau_max", tau_max, 2)  # c needs a frame strictly between b and d
    tau_min = int_arg("tau_min", tau_min, 1)
    usable = _shuffle_placements(wins, tau_min, tau_max)
    if count == 0 or not usable:
        return []
    win_cum = np.cumsum([int(u[3][-1]) for u in usable])
    positive: bool | None = None
    streak = 0  # consecutive rejected draws of the current class

    def draw(seen: set[Hashable]) -> tuple[Hashable, ShuffleTuple] | None:
        nonlocal positive, streak
        # The class is drawn once per output tuple and kept through rejected draws: positives
        # (b, c, d) are close in time and fail the near-duplicate test more often than
        # negatives, so re-drawing it with each try would bias the set towards negatives
        # (measured: 12% positives instead of 25% on the built-in set).
        if positive is None or streak >= max_tries:  # a class with no room left is re-drawn
            positive, streak = bool(rng.random() < positive_ratio), 0
        (s, e), b_lo, hi_d, b_cum = usable[_weighted_index(rng, win_cum)]
        b = b_lo + _weighted_index(rng, b_cum)
        d = int(rng.integers(b + 2, min(b + tau_max, hi_d) + 1))
        c = int(rng.integers(b + 1, d))
        a = int(rng.integers(s, b - tau_min + 1))
        f = int(rng.integers(d + tau_min, e))
        first = bool(rng.random() < 0.5)
        if positive:
            kind, frames = ("pos_fwd", (b, c, d)) if first else ("pos_rev", (d, c, b))
        else:
            kind, frames = ("neg_a", (b, a, d)) if first else ("neg_e", (b, f, d))
        x, y, z = frames
        dup = min(_mad(thumbs, x, y), _mad(thumbs, x, z), _mad(thumbs, y, z)) < dup_threshold
        if frames in seen or dup:
            streak += 1
            return None
        label, positive = int(positive), None
        return frames, ShuffleTuple(frames, label, kind, (a, b, c, d, f), (s, e))

    return _collect(count, max_tries, draw)


def _shuffle_placements(
    wins: list[Window], tau_min: int, tau_max: int
) -> list[tuple[Window, int, int, np.ndarray]]:
    """Per window that can host a draw: (window, b_lo, hi_d, cumsum over b of its d choices).

    b ranges over [s + tau_min, hi_d - 2] (room for a before b and for c, d after), d over
    [b + 2, min(b + tau_max, hi_d)] with hi_d = end - 1 - tau_min (room for e after d)."""
    usable: list[tuple[Window, int, int, np.ndarray]] = []
    for s, e in wins:
        b_lo, hi_d = s + tau_min, e - 1 - tau_min
        if hi_d - 2 < b_lo:  # i.e. e - s < 2 * tau_min + 3
            continue
        bs = np.arange(b_lo, hi_d - 1, dtype=np.int64)
        usable.append(((s, e), b_lo, hi_d, np.cumsum(np.minimum(tau_max - 1, hi_d - bs - 1))))
    return usable


@dataclass(frozen=True)
class OddOneOutQuestion:
    """One O3N question: ``subsequences`` as shown (each ``length`` frame indices), exactly one of
    them -- number ``odd`` -- shuffled; ``windows[k]`` is the window subsequence ``k`` came from."""

    subsequences: tuple[tuple[int, ...], ...]
    odd: int
    windows: tuple[Window, ...]


def odd_one_out_questions(
    windows: Sequence[Window],
    thumbs: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    num_subsequences: int = 6,
    length: int = 6,
    max_stride: int = 4,
    dup_threshold: float = 0.01,
    max_tries: int = 20,
) -> list[OddOneOutQuestion]:
    """Up to ``count`` distinct odd-one-out questions (Fernando et al. 2017), generation order.

    Each subsequence is ``length`` frames ``start + s * k`` (k = 0..length-1) inside one
    high-motion window, stride s uniform over the strides in 1..max_stride that fit some window
    (O3N samples frames at random strides so spacing is not a cue), window picked proportional to
    its number of placements. ``num_subsequences - 1`` are in temporal order; exactly one, at a
    uniform position, is shown under a uniformly random non-identity permutation -- the identity
    would make the question unanswerable. Subsequences of one question may overlap (the paper
    samples them independently from the same video). The draw is rejected when two temporally
    consecutive frames of the odd subsequence are near-duplicates (swapping identical frames is
    invisible) or the question repeats an earlier one. Stops after ``count`` questions or
    ``count * max_tries`` rejected draws.
    """
    num_subsequences = int_arg("num_subsequences", num_subsequences, 2)
    wins, count, rng, dup_threshold, max_tries, length, tables = _run_args(
        windows, thumbs, count, rng, dup_threshold, max_tries, length, max_stride
    )
    if count == 0 or not tables:
        return []

    def draw(seen: set[Hashable]) -> tuple[Hashable, OddOneOutQuestion] | None:
        odd = int(rng.integers(num_subsequences))
        subs: list[tuple[int, ...]] = []
        froms: list[Window] = []
        for k in range(num_subsequences):
            run, win = _draw_run(rng, wins, tables, length)
            if k == odd:
                if any(_mad(thumbs, run[i], run[i + 1]) < dup_threshold for i in range(length - 1)):
                    return None
                perm = _non_identity_permutation(rng, length)
                run = tuple(run[int(p)] for p in perm)
            subs.append(run)
            froms.append(win)
        key = (tuple(subs), odd)
        return None if key in seen else (key, OddOneOutQuestion(tuple(subs), odd, tuple(froms)))

    return _collect(count, max_tries, draw)


@dataclass(frozen=True)
class ArrowClip:
    """One arrow-of-time clip: ``frames`` as shown (descending when ``reversed``), ``label``
    1 = forward, 0 = reversed, taken from ``window``."""

    frames: tuple[int, ...]
    reversed: bool
    label: int
    window: Window


def arrow_of_time_clips(
    windows: Sequence[Window],
    thumbs: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    length: int = 8,
    max_stride: int = 2,
    dup_threshold: float = 0.01,
    max_tries: int = 20,
) -> list[ArrowClip]:
    """Up to ``count`` distinct forward/backward clips, in generation order.

    ``length`` frames at a stride uniform over the strides in 1..max_stride that fit some window,
    inside one window (picked proportional to its placements), shown reversed with probability
    0.5 (balanced classes). Rejected when the first and last frame are near-duplicates: with no
    visible motion across the clip there is no arrow of time to detect (Wei et al. likewise keep
    only clips with enough flow), or when the shown frame tuple repeats an earlier clip's. Stops
    after ``count`` clips or ``count * max_tries`` rejected draws.
    """
    wins, count, rng, dup_threshold, max_tries, length, tables = _run_args(
        windows, thumbs, count, rng, dup_threshold, max_tries, length, max_stride
    )
    if count == 0 or not tables:
        return []

    def draw(seen: set[Hashable]) -> tuple[Hashable, ArrowClip] | None:
        run, win = _draw_run(rng, wins, tables, length)
        rev = bool(rng.random() < 0.5)
        shown = run[::-1] if rev else run
        if shown in seen or _mad(thumbs, run[0], run[-1]) < dup_threshold:
            return None
        return shown, ArrowClip(shown, rev, 0 if rev else 1, win)

    return _collect(count, max_tries, draw)
