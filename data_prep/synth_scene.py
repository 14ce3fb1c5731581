"""The world of one synthetic clip (:mod:`data_prep.synth` builds the set): 8 sounding classes,
objects that fall and bounce, their shapes drawn frame by frame, a strike of the sounding
object's timbre at each of its impacts, and the ground truth (boxes, impacts, still runs).

Everything is seeded by ``(version, seed, index)``: :func:`make_clip` is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

VERSION = 1  # bump whenever a change alters any clip: it invalidates resumable clips


@dataclass(frozen=True)
class SoundClass:
    name: str  # also the shape that is drawn
    rgb: tuple[int, int, int]
    timbre: str
    f0_hz: float  # base pitch (jittered per clip)


CLASSES: tuple[SoundClass, ...] = (
    SoundClass("disc", (230, 40, 40), "sine ping, 0.12 s decay", 660.0),
    SoundClass("square", (40, 90, 240), "square wave, odd harmonics", 220.0),
    SoundClass("triangle", (40, 200, 60), "plucked string, upper harmonics die first", 196.0),
    SoundClass("star", (240, 220, 40), "FM bell, inharmonic, long ring", 520.0),
    SoundClass("ring", (220, 50, 220), "high noise burst (snare-like)", 3000.0),
    SoundClass("cross", (40, 220, 230), "sawtooth buzz with vibrato", 150.0),
    SoundClass("diamond", (250, 140, 20), "falling chirp", 1600.0),
    SoundClass("hexagon", (235, 235, 235), "low drum, pitch drop", 160.0),
)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a clip. Part of every clip's fingerprint."""

    width: int = 128
    height: int = 128
    fps: int = 25
    num_frames: int = 100
    sample_rate: int = 16000
    floor_px: int = 16  # height of the floor band at the bottom
    gravity_px_s2: float = 1500.0
    still_margin_s: float = 0.4  # nothing moves in the first and last 0.4 s
    avi_every: int = 4  # 1 clip in avi_every is an AVI, balanced over classes (0: none)
    version: int = VERSION

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


# Image coordinates, y down, in pixels (continuous: pixel (i, j) covers [i, i+1) x [j, j+1)).
# Every motion is piecewise analytic (hold, or a parabola until the next floor impact), so the
# impact times that trigger the sound are exact, not quantised to frames.

STOP_SPEED_PX_S = 90.0  # a bounce slower than this ends the motion: the object rests
FRICTION = 0.6  # horizontal speed kept at each bounce
MIN_SYNC_GAP_S = 0.12  # distractor impacts stay this far from the sounding object's impacts


@dataclass
class _Segment:
    t0: float
    t1: float
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    flying: bool = False


@dataclass
class _Body:
    cls: int
    radius: float
    lane: tuple[float, float]  # allowed range of the centre x (the lane's walls)
    y_rest: float  # centre y when resting on the floor
    restitution: float
    segments: list[_Segment] = field(default_factory=list)
    impacts: list[tuple[float, float]] = field(default_factory=list)  # (time s, speed px/s)


def _fold(u: float, lo: float, hi: float) -> tuple[float, float]:
    """Reflect ``u`` into ``[lo, hi]`` (elastic walls); return the position and direction sign."""
    span = hi - lo
    if span <= 0:
        return lo, 1.0
    m = (u - lo) % (2 * span)
    return (lo + m, 1.0) if m <= span else (lo + 2 * span - m, -1.0)


def _fly(
    body: _Body, t: float, x: float, y: float, vx: float, vy: float, g: float
) -> tuple[float, float]:
    """Append the flight from state (t, x, y, vx, vy) and all its bounces.

    Returns the time and the x at which the body comes to rest on the floor.
    """
    while True:
        # y + vy tau + g tau^2 / 2 = y_rest
        tau = (-vy + math.sqrt(vy * vy + 2 * g * max(body.y_rest - y, 0.0))) / g
        body.segments.append(_Segment(t, t + tau, x, y, vx, vy, True))
        speed = vy + g * tau
        x, sign = _fold(x + vx * tau, *body.lane)
        t, y = t + tau, body.y_rest
        body.impacts.append((t, speed))
        vx, vy = sign * vx * FRICTION, -body.restitution * speed
        if -vy < STOP_SPEED_PX_S:
            return t, x


def _position(body: _Body, t: float, g: float) -> tuple[float, float]:
    for s in body.segments:
        if s.t0 <= t < s.t1:
            if not s.flying:
                return s.x, s.y
            tau = t - s.t0
            return _fold(s.x + s.vx * tau, *body.lane)[0], s.y + s.vy * tau + 0.5 * g * tau * tau
    raise AssertionError(f"no segment covers t={t}")


def _plan_motion(
    rng: np.random.Generator,
    body: _Body,
    cfg: SynthConfig,
    x: float,
    y: float,
    events: int,
    avoid: list[float],
) -> int:
    """Give ``body``, still at (x, y) from t=0, up to ``events`` motions; return how many.

    A motion is a drop when the body is held in the air, else a toss from the floor. All motion
    lies between the still margins, motions are >= 0.3 s apart, and every impact is at least
    MIN_SYNC_GAP_S from each time in ``avoid``.
    """
    g, t_end = cfg.gravity_px_s2, cfg.duration_s - cfg.still_margin_s
    t, t_lo, done = 0.0, cfg.still_margin_s, 0
    for _ in range(events):
        if y < body.y_rest:  # held in the air: let go, with a little sideways push
            vx, vy = float(rng.uniform(-50, 50)), 0.0
        else:  # tossed up from the floor
            vx = float(rng.uniform(20, 80) * rng.choice([-1, 1]))
            vy = -float(rng.uniform(280, 440))  # rises 26-65 px
        trial = _Body(body.cls, body.radius, body.lane, body.y_rest, body.restitution)
        dur = _fly(trial, 0.0, x, y, vx, vy, g)[0]
        if t_lo + dur > t_end:
            break
        for _ in range(20):
            start = float(rng.uniform(t_lo, t_end - dur))
            if all(abs(start + ti - a) >= MIN_SYNC_GAP_S for ti, _ in trial.impacts for a in avoid):
                break
        else:
            break
        body.segments.append(_Segment(t, start, x, y))
        t, x = _fly(body, start, x, y, vx, vy, g)
        y, t_lo, done = body.y_rest, t + 0.3, done + 1
    body.segments.append(_Segment(t, math.inf, x, y))
    return done


def _circle(r: float, n: int = 40) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _outline(shape: str, r: float) -> list[np.ndarray]:
    """Polygons (relative to the centre, y down) that draw ``shape``; the first is the outer."""
    if shape == "disc":
        return [_circle(r)]
    if shape == "ring":
        return [_circle(r), _circle(0.55 * r)]  # fillPoly with two contours leaves a hole
    if shape == "square":
        s = 0.85 * r
        return [np.array([[-s, -s], [s, -s], [s, s], [-s, s]])]
    if shape == "diamond":
        return [np.array([[0, -r], [0.8 * r, 0], [0, r], [-0.8 * r, 0]])]
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return [np.stack([1.15 * r * np.cos(a), 1.15 * r * np.sin(a)], 1)]
    if shape == "star":
        a = np.deg2rad(-90 + 36 * np.arange(10))
        rr = np.where(np.arange(10) % 2 == 0, 1.15 * r, 0.5 * r)
        return [np.stack([rr * np.cos(a), rr * np.sin(a)], 1)]
    if shape == "cross":
        w, s = 0.33 * r, r
        pts = [(-w, -s), (w, -s), (w, -w), (s, -w), (s, w), (w, w),
               (w, s), (-w, s), (-w, w), (-s, w), (-s, -w), (-w, -w)]  # fmt: skip
        return [np.array(pts, dtype=float)]
    if shape == "hexagon":
        a = 2 * np.pi * np.arange(6) / 6
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
    raise ValueError(f"unknown shape {shape!r}")


def _strike(cls: int, f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One strike of class ``cls`` at pitch ``f0``: float64, peak 1, attack under 2 ms."""
    name = CLASSES[cls].name
    n = int((0.6 if name == "star" else 0.35) * sr)
    t = np.arange(n) / sr

    def harmonics(ks: np.ndarray, decay_per_s: np.ndarray) -> np.ndarray:
        keep = ks * f0 < 0.45 * sr  # stay below Nyquist
        ks, d = ks[keep], decay_per_s[keep]
        return np.sum(np.sin(2 * np.pi * f0 * ks[:, None] * t) / ks[:, None]
                      * np.exp(-t * d[:, None]), 0)  # fmt: skip

    if name == "disc":  # pure sine ping
        y = np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.12)
    elif name == "square":  # odd harmonics 1/k: a square wave
        k = np.arange(1, 30, 2.0)
        y = harmonics(k, np.full_like(k, 10.0))
    elif name == "triangle":  # plucked string: upper harmonics die first
        k = np.arange(1, 16.0)
        y = harmonics(k, 6.0 + 5.0 * k)
    elif name == "star":  # FM bell: ratio 1.41 gives inharmonic partials, index decays
        index = 5.0 * np.exp(-t / 0.08)
        y = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * 1.41 * f0 * t))
        y *= np.exp(-t / 0.25)
    elif name == "ring":  # differenced white noise (bright hiss), fast decay: snare-like
        y = np.diff(rng.standard_normal(n + 1)) * np.exp(-t / 0.045)
    elif name == "cross":  # sawtooth with 7 Hz vibrato, held 0.15 s then released
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 7 * t))) / sr
        k = np.arange(1, 40.0)
        k = k[k * f0 < 0.45 * sr]
        y = np.sum(np.sin(k[:, None] * phase) / k[:, None], 0) * np.clip((0.2 - t) / 0.05, 0, 1)
    elif name == "diamond":  # chirp down two octaves in 0.2 s
        y = np.sin(2 * np.pi * np.cumsum(f0 * 0.25 ** (t / 0.2)) / sr) * np.exp(-t / 0.1)
    elif name == "hexagon":  # drum: pitch drops from f0 to 55 Hz
        freq = 55 + (f0 - 55) * np.exp(-t / 0.04)
        y = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.15)
    else:
        raise ValueError(f"no timbre for class {name!r}")
    y = y * np.minimum(1.0, t / 0.002)
    return y / max(float(np.abs(y).max()), 1e-9)


def clip_id(index: int) -> str:
    """``{class}_{index:05d}``: the class of clip ``index`` is ``index % 8`` (balanced)."""
    return f"{CLASSES[index % len(CLASSES)].name}_{index:05d}"


def clip_container(cfg: SynthConfig, index: int) -> str:
    """``"avi"`` for 1 clip in ``avi_every``: every class gets one in each run of 8 * avi_every
    clips, and the first 8 clips hold two (so tiny test sets have AVIs too)."""
    k = cfg.avi_every
    return "avi" if k and (index + index // len(CLASSES)) % k == k - 1 else "mp4"


def plan_scene(cfg: SynthConfig, seed: int, index: int) -> tuple[list[_Body], np.random.Generator]:
    """The objects and their motions of clip ``index``; body 0 is the sounding object."""
    rng = np.random.default_rng([cfg.version, seed, index])
    sound_cls = index % len(CLASSES)
    others = [c for c in range(len(CLASSES)) if c != sound_cls]
    n = 1 + int(rng.integers(1, 3))
    classes = [sound_cls, *(int(c) for c in rng.choice(others, n - 1, replace=False))]
    lanes = rng.permutation(n)  # one lane per object: objects never overlap
    lane_w = cfg.width / n
    floor_y = cfg.height - cfg.floor_px
    bodies: list[_Body] = []
    for k, cls in enumerate(classes):
        r = float(rng.uniform(10.0, min(16.0, lane_w / 2 - 3)))
        outer = _outline(CLASSES[cls].name, r)[0]
        left, right = lanes[k] * lane_w, (lanes[k] + 1) * lane_w
        lane = (float(left - outer[:, 0].min() + 1), float(right - outer[:, 0].max() - 1))
        body = _Body(
            cls, r, lane, floor_y - float(outer[:, 1].max()), float(rng.uniform(0.45, 0.65))
        )
        x = float(rng.uniform(*lane))
        y = body.y_rest - float(rng.uniform(35, 70)) if rng.random() < 0.5 else body.y_rest
        if k == 0:  # the sounding object always moves; twice when there is time
            if not _plan_motion(rng, body, cfg, x, y, 2 if rng.random() < 0.6 else 1, []):
                raise AssertionError(f"synth clip {index}: no room for the sounding motion")
        else:
            events = 0 if rng.random() < 0.25 else 1
            _plan_motion(rng, body, cfg, x, y, events, [t for t, _ in bodies[0].impacts])
        bodies.append(body)
    return bodies, rng


def _render(
    cfg: SynthConfig, bodies: list[_Body], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 RGB, boxes (n, T, 4) float pixels, moving (n, T) bool."""
    h, w, n_t = cfg.height, cfg.width, cfg.num_frames
    bg = np.empty((h, w, 3), np.uint8)
    bg[:] = rng.integers(10, 50, 3)  # dark sky, far from every object colour
    bg[h - cfg.floor_px :] = rng.integers(55, 95, 3)
    times = np.arange(n_t) / cfg.fps
    pos = np.array([[_position(b, t, cfg.gravity_px_s2) for t in times] for b in bodies])
    outlines = [_outline(CLASSES[b.cls].name, b.radius) for b in bodies]
    frames = np.repeat(bg[None], n_t, axis=0)
    for i in range(n_t):
        for b, polys, p in zip(bodies, outlines, pos[:, i], strict=True):
            # cv2 puts integer coordinates at pixel centres, hence -0.5; shift=4: 1/16 pixel.
            pts = [np.round((poly + p - 0.5) * 16).astype(np.int32) for poly in polys]
            cv2.fillPoly(frames[i], pts, CLASSES[b.cls].rgb, lineType=cv2.LINE_AA, shift=4)
    lo = np.array([o[0].min(0) for o in outlines])[:, None]  # (n, 1, 2)
    hi = np.array([o[0].max(0) for o in outlines])[:, None]
    boxes = np.concatenate([pos + lo, pos + hi], axis=2)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    moving = np.zeros(pos.shape[:2], bool)
    moving[:, 1:] = (pos[:, 1:] != pos[:, :-1]).any(2)
    return frames, boxes, moving


def _soundtrack(
    cfg: SynthConfig, body: _Body, f0: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[float]]:
    """Mono float32 track: a strike at each impact, as loud as the impact is fast, over a
    -60 dBFS noise floor. Returns the track and the onset times (s)."""
    n = round(cfg.duration_s * cfg.sample_rate)
    y = rng.standard_normal(n) * 1e-3
    onsets = []
    for t, speed in body.impacts:
        k = round(t * cfg.sample_rate)
        if k >= n:
            continue
        s = _strike(body.cls, f0, cfg.sample_rate, rng) * 0.8 * min(1.0, speed / 550.0)
        m = min(len(s), n - k)
        y[k : k + m] += s[:m]
        onsets.append(k / cfg.sample_rate)
    peak = float(np.abs(y).max())
    if peak > 0.95:  # overlapping strikes: limit, never clip
        y *= 0.95 / peak
    return y.astype(np.float32), onsets


def _runs(still: np.ndarray, min_len: int = 2) -> list[list[int]]:
    """Half-open runs [a, b) of frames that are all identical (``still[i]``: frame i == i - 1)."""
    runs, a = [], 0
    for i in range(1, len(still) + 1):
        if i == len(still) or not still[i]:
            if i - a >= min_len:
                runs.append([a, i])
            a = i
    return runs


def _r(x: Any, nd: int) -> Any:
    return np.round(np.asarray(x, float), nd).tolist()


def make_clip(
    cfg: SynthConfig, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render clip ``index``: frames (T, H, W, 3) uint8 RGB, audio (1, N) float32, ground truth.

    Pure and deterministic: depends only on ``(cfg, seed, index)``.
    """
    bodies, rng = plan_scene(cfg, seed, index)
    frames, boxes, moving = _render(cfg, bodies, rng)
    f0 = CLASSES[bodies[0].cls].f0_hz * 2 ** (float(rng.uniform(-3, 3)) / 12)
    audio, onsets = _soundtrack(cfg, bodies[0], f0, rng)
    scale = np.array([cfg.width, cfg.height, cfg.width, cfg.height], float)
    objects = []
    for k, b in enumerate(bodies):
        objects.append({
            "object": k,
            "class_id": b.cls,
            "class_name": CLASSES[b.cls].name,
            "rgb": list(CLASSES[b.cls].rgb),
            "sounding": k == 0,
            "radius_px": round(b.radius, 3),
            "impacts_s": _r([t for t, _ in b.impacts], 5),
            "impact_speeds_px_s": _r([v for _, v in b.impacts], 2),
            "boxes": _r(boxes[k] / scale, 5),
            "boxes_px": _r(boxes[k], 3),
            "moving": moving[k].astype(int).tolist(),
        })  # fmt: skip
    truth = {
        "clip_id": clip_id(index),
        "version": cfg.version,
        "seed": seed,
        "index": index,
        "class_id": bodies[0].cls,
        "class_name": CLASSES[bodies[0].cls].name,
        "fps": cfg.fps,
        "num_frames": cfg.num_frames,
        "width": cfg.width,
        "height": cfg.height,
        "sample_rate": cfg.sample_rate,
        "num_samples": int(audio.shape[0]),
        "f0_hz": round(f0, 3),
        "sounding_object": 0,
        "sound_onsets_s": _r(onsets, 5),
        "still_runs": _runs(~np.any(moving, axis=0)),
        "objects": objects,
    }
    return frames, audio[None], truth
