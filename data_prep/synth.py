"""The built-in synthetic audio-visual dataset (``avssl-prep synth``).

Every clip is a small 2-D world with a floor, two or three coloured objects and one sound track.
It is the default data of the main job, the tests and the examples, so it is built to give each
self-supervised method something real to find, with the ground truth to check it:

* **Classes.** 8 object classes; each is a shape with its own colour *and* its own timbre
  (:data:`CLASSES`): disc/red/sine ping, square/blue/square wave, triangle/green/plucked string,
  star/yellow/FM bell, ring/magenta/noise burst, cross/cyan/buzz, diamond/orange/falling chirp,
  hexagon/white/low drum. Pitch varies +-3 semitones per clip, so the class is the timbre, not
  a frequency. The clip's class is the class of its sounding object (8 balanced classes).
* **Arrow of time.** Objects are dropped or tossed, fall under gravity and bounce with energy
  loss (restitution 0.45-0.65, friction on each bounce) until they rest. Played backwards, they
  gain height at every bounce. Between motions the scene is *exactly* still (identical source
  frames): at least 0.4 s at the start and at the end of every clip, so motion mining
  (Shuffle & Learn) has stretches to reject and windows to find.
* **Who sounds.** Exactly one object sounds: its timbre plays at each of its floor impacts, as
  loud as the impact is fast (onsets are sample-exact). The 1-2 other objects are *silent
  distractors* of other classes; most of them move too, with impacts kept >= 0.12 s away from the
  sounding ones, so a localizer must use the sound, not just motion. A -60 dBFS noise floor keeps
  the track non-silent.
* **Ground truth.** ``boxes/{clip_id}.json`` holds, for every object and frame, the box
  ``[x1, y1, x2, y2]`` normalised to [0, 1] (VGG-SS style) and in pixels (continuous coordinates:
  pixel (i, j) covers [i, i+1) x [j, j+1)), a moving flag per frame, impact times and speeds,
  sound onsets, and the runs of frames in which nothing moves.

Format: 128x128 RGB at 25 fps, 4 s = 100 frames; mono audio at 16 kHz (the rate of most
small-scale audio models; the timbres stay below 8 kHz). 3 clips in 4 are H.264/AAC ``.mp4``
(GOP 12, no B-frames); 1 in 4 -- the same share in every class, and already in a set of 4
clips -- is an MPEG-4 part 2 ``.avi`` tagged XVID with packed B-frames like real UCF-101 files,
with MP3 audio. The MP3 encoder delay, which AVI cannot signal, is pre-compensated so decoded
sound lines up with the frames in both containers. All videos are written through
:func:`avssl.data.encode.write_video` with single-threaded encoders.

Layout of ``--out DIR``::

    videos/{clip_id}.mp4|.avi   the clips
    boxes/{clip_id}.json        per-clip ground truth
    .done/{clip_id}.json        completion record: fingerprint and file sizes (for resuming)
    labels.csv                  one row per clip: id, file, class, split, sounding object, ...
    manifest.jsonl              the same rows with types kept (read with avssl.data.manifest)
    dataset.json                dataset card: version, seed, parameters, classes, split sizes

Determinism: scene ``i`` depends only on ``(seed, i)`` and the generator version, so the same
seed gives byte-identical labels and boxes and identical decoded frames, whatever the number of
workers or clips (encoders are single-threaded, so with the same PyAV build even the video bytes
repeat). Splits are stratified by class (70/15/15, seeded). Re-running on a directory resumes:
a clip is skipped when its completion record, written last, has this clip's fingerprint
(config + seed + index) and the sizes of its video and boxes files on disk.

Build time (2 x86-64 cores, 320 clips): about 40 s, ~70% of it in ``write_video`` (RGB->YUV
conversion, libx264, the AAC encoder); rendering and audio synthesis take ~20 ms per clip.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avssl.data.manifest import atomic_write_text, read_manifest, remove_stale_temps, write_manifest
from data_prep.parallel import Progress, default_workers, imap_jobs

__all__ = [
    "CLASSES",
    "SoundClass",
    "DEFAULT_NUM_CLIPS",
    "BuildResult",
    "SynthConfig",
    "build_synth",
    "default_root",
    "ensure_synth",
    "make_clip",
]

VERSION = 1  # bump whenever a change alters any clip: it invalidates resumable clips
DEFAULT_NUM_CLIPS = 320  # 40 per class; builds in about a minute on 2 cores


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


# ----------------------------------------------------------------------------------- physics
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


# ------------------------------------------------------------------------------------ shapes


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


# ------------------------------------------------------------------------------------- sound


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


# ------------------------------------------------------------------------------------- scene


def clip_id(index: int) -> str:
    """``{class}_{index:05d}``: the class of clip ``index`` is ``index % 8`` (balanced)."""
    return f"{CLASSES[index % len(CLASSES)].name}_{index:05d}"


def clip_container(cfg: SynthConfig, index: int) -> str:
    """``"avi"`` for 1 clip in ``avi_every``: every class gets one in each run of 8 * avi_every
    clips, and the first 8 clips hold two (so tiny test sets have AVIs too)."""
    k = cfg.avi_every
    return "avi" if k and (index + index // len(CLASSES)) % k == k - 1 else "mp4"


def _scene(cfg: SynthConfig, seed: int, index: int) -> tuple[list[_Body], np.random.Generator]:
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
    bodies, rng = _scene(cfg, seed, index)
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


# ------------------------------------------------------------------------------------- build


def default_root() -> Path:
    """``$AVSSL_DATA/synth``, or ``./avssl-data/synth`` when AVSSL_DATA is not set."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "synth"


def fingerprint(cfg: SynthConfig, seed: int, index: int) -> str:
    """What clip ``index`` depends on; a clip built with another fingerprint is rebuilt."""
    text = json.dumps([asdict(cfg), seed, index], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paths(root: Path, cfg: SynthConfig, index: int) -> tuple[Path, Path, Path]:
    cid = clip_id(index)
    video = root / "videos" / f"{cid}.{clip_container(cfg, index)}"
    return video, root / "boxes" / f"{cid}.json", root / ".done" / f"{cid}.json"


def _is_done(root: Path, cfg: SynthConfig, seed: int, index: int) -> bool:
    """A clip is done when its completion record (written last) names this fingerprint and the
    size of the video and boxes files on disk."""
    video, boxes, done = _paths(root, cfg, index)
    try:
        rec = json.loads(done.read_text())
        return bool(
            rec["fingerprint"] == fingerprint(cfg, seed, index)
            and video.stat().st_size == rec["video_bytes"] > 0
            and boxes.stat().st_size == rec["boxes_bytes"] > 0
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_clip(job: tuple[Path, SynthConfig, int, int]) -> int:
    """Render and write one clip (video, then boxes, then the completion record)."""
    from avssl.data.encode import MP3_AVI_DELAY_SAMPLES, write_video

    root, cfg, seed, index = job
    frames, audio, truth = make_clip(cfg, seed, index)
    video, boxes, done = _paths(root, cfg, index)
    video.parent.mkdir(parents=True, exist_ok=True)
    if video.suffix == ".avi":
        # MP3 in AVI decodes late by the codec delay (AVI cannot signal it). Start the track that
        # much early -- the cut is the silent still margin -- so decoded sound lines up with the
        # frames and the onsets in boxes/ hold for both containers.
        d = MP3_AVI_DELAY_SAMPLES
        audio = np.concatenate([audio[:, d:], np.zeros((1, d), np.float32)], axis=1)
        write_video(video, frames, fps=cfg.fps, codec="mpeg4", gop=12, max_b_frames=1,
                    packed_b_frames=True, audio=audio, sample_rate=cfg.sample_rate)  # fmt: skip
    else:
        write_video(video, frames, fps=cfg.fps, codec="h264", gop=12, max_b_frames=0,
                    audio=audio, sample_rate=cfg.sample_rate)  # fmt: skip
    atomic_write_text(boxes, json.dumps(truth, separators=(",", ":")) + "\n")
    record = {
        "fingerprint": fingerprint(cfg, seed, index),
        "video_bytes": video.stat().st_size,
        "boxes_bytes": boxes.stat().st_size,
    }
    atomic_write_text(done, json.dumps(record) + "\n")
    return index


def _splits(num_clips: int, seed: int, fractions: tuple[float, float] = (0.15, 0.15)) -> list[str]:
    """Per clip "train" / "val" / "test": 70/15/15 within each class, seeded."""
    out = ["train"] * num_clips
    n_cls = len(CLASSES)
    for c in range(n_cls):
        idx = np.arange(c, num_clips, n_cls)
        idx = np.random.default_rng([seed, 1_000_003, c]).permutation(idx)
        n_val, n_test = (round(f * len(idx)) for f in fractions)
        for i in idx[:n_test]:
            out[int(i)] = "test"
        for i in idx[n_test : n_test + n_val]:
            out[int(i)] = "val"
    return out


def _row(cfg: SynthConfig, seed: int, index: int, split: str) -> dict[str, Any]:
    """One line of labels.csv / manifest.jsonl (computed from the scene, without rendering)."""
    bodies, _ = _scene(cfg, seed, index)
    video, boxes, _ = _paths(Path("."), cfg, index)
    mp4 = video.suffix == ".mp4"
    return {
        "clip_id": clip_id(index),
        "file": video.as_posix(),
        "boxes": boxes.as_posix(),
        "split": split,
        "class_id": bodies[0].cls,
        "class_name": CLASSES[bodies[0].cls].name,
        "container": video.suffix[1:],
        "video_codec": "h264" if mp4 else "mpeg4",
        "audio_codec": "aac" if mp4 else "mp3",
        "sounding_object": 0,
        "num_objects": len(bodies),
        "distractors": ";".join(CLASSES[b.cls].name for b in bodies[1:]),
        "num_sounds": sum(t < cfg.duration_s for t, _ in bodies[0].impacts),
        "fps": cfg.fps,
        "num_frames": cfg.num_frames,
        "width": cfg.width,
        "height": cfg.height,
        "duration_s": cfg.duration_s,
        "sample_rate": cfg.sample_rate,
        "seed": seed,
    }


@dataclass
class BuildResult:
    root: Path
    num_clips: int
    built: int
    skipped: int
    seconds: float
    rows: list[dict[str, Any]]

    def summary(self) -> str:
        """A one-screen summary of the build."""
        n = self.num_clips
        rate = self.built / self.seconds if self.seconds > 0 and self.built else 0.0
        size = sum((self.root / r["file"]).stat().st_size for r in self.rows)
        splits = {s: sum(r["split"] == s for r in self.rows) for s in ("train", "val", "test")}
        kinds = {k: sum(r["container"] == k for r in self.rows) for k in ("mp4", "avi")}
        per_class = {c.name: sum(r["class_name"] == c.name for r in self.rows) for c in CLASSES}
        r0 = self.rows[0] if self.rows else {}
        lines = [
            f"synth dataset in {self.root}",
            f"  clips     {n} ({self.built} built, {self.skipped} already done) in "
            f"{self.seconds:.1f} s ({rate:.1f} clips/s)",
            f"  format    {r0.get('width')}x{r0.get('height')} @ {r0.get('fps')} fps, "
            f"{r0.get('num_frames')} frames, audio {r0.get('sample_rate')} Hz mono",
            f"  files     {kinds['mp4']} mp4 (H.264/AAC), {kinds['avi']} avi (Xvid packed-B/MP3), "
            f"{size / 1e6:.1f} MB",
            f"  splits    train {splits['train']}, val {splits['val']}, test {splits['test']}",
            "  classes   " + ", ".join(f"{k} {v}" for k, v in per_class.items()),
            "  labels    labels.csv, manifest.jsonl; boxes/{clip_id}.json; card dataset.json",
        ]
        return "\n".join(lines)


def _card(cfg: SynthConfig, seed: int, num_clips: int, rows: list[dict[str, Any]]) -> dict:
    return {
        "name": "avssl-synth",
        "version": cfg.version,
        "seed": seed,
        "num_clips": num_clips,
        "config": asdict(cfg),
        "classes": [
            {"id": i, "name": c.name, "rgb": list(c.rgb), "timbre": c.timbre, "f0_hz": c.f0_hz}
            for i, c in enumerate(CLASSES)
        ],
        "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
        "box_format": "[x1, y1, x2, y2]; 'boxes' normalised to [0, 1] by (W, H, W, H) like VGG-SS, "
        "'boxes_px' in pixels where pixel (i, j) covers [i, i+1) x [j, j+1)",
        "audio_alignment": "sample 0 of the decoded track is at video time 0 in both containers "
        "(the AVI's MP3 delay is pre-compensated)",
        "files": {
            "videos/": "{clip_id}.mp4 (H.264/AAC) or .avi (MPEG-4 ASP XVID, packed B, MP3)",
            "boxes/": "{clip_id}.json: per-object per-frame boxes, moving flags, impacts, onsets, "
            "still_runs",
            "labels.csv": "one row per clip (all values as text)",
            "manifest.jsonl": "the same rows with types (avssl.data.manifest.read_manifest)",
        },
        "description": (__doc__ or "").strip().split("\n\n")[0],
    }


def build_synth(
    root: str | os.PathLike[str] | None = None,
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    config: SynthConfig | None = None,
    progress: bool = True,
    on_clip: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build (or finish building) the synthetic set in ``root``; see the module docstring.

    ``workers`` processes render and encode clips (default: all CPU cores, at most 8). Clips that
    are already complete are skipped, so an interrupted build resumes where it stopped.
    ``on_clip(index)`` is called in this process after each clip is written.
    """
    cfg = config or SynthConfig()
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(root) if root is not None else default_root()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # a killed run's half-written files
    workers = default_workers(workers)
    t0 = time.monotonic()
    todo = [i for i in range(num_clips) if not _is_done(out, cfg, seed, i)]
    bar = Progress("synth", len(todo), "clips built") if progress and todo else None
    if bar is not None:
        print(f"synth: building {len(todo)} of {num_clips} clips in {out} with {workers} "
              f"worker(s)", file=bar.stream)  # fmt: skip
    for index in imap_jobs(_build_clip, [(out, cfg, seed, i) for i in todo], workers):
        if on_clip is not None:
            on_clip(index)
        if bar is not None:
            bar.step()
    splits = _splits(num_clips, seed)
    rows = [_row(cfg, seed, i, splits[i]) for i in range(num_clips)]
    write_manifest(out / "labels.csv", rows)
    write_manifest(out / "manifest.jsonl", rows)
    card = _card(cfg, seed, num_clips, rows)
    atomic_write_text(out / "dataset.json", json.dumps(card, indent=1) + "\n")
    return BuildResult(
        out, num_clips, len(todo), num_clips - len(todo), time.monotonic() - t0, rows
    )


def ensure_synth(
    root: str | os.PathLike[str] | None = None,
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Return the root of a complete synthetic set, building it first when needed.

    Cheap when the set exists: it compares the dataset card with the arguments and checks that
    every file of the manifest is there; otherwise it (re)builds only what is missing.
    """
    out = Path(root) if root is not None else default_root()
    try:
        card = json.loads((out / "dataset.json").read_text())
        rows = read_manifest(out / "manifest.jsonl")
        if (
            card["seed"] == seed
            and card["num_clips"] == num_clips
            and card["config"] == asdict(SynthConfig())
            and len(rows) == num_clips
            and all((out / r["file"]).is_file() and (out / r["boxes"]).is_file() for r in rows)
        ):
            return out
    except (OSError, ValueError, KeyError):
        pass
    result = build_synth(out, num_clips=num_clips, seed=seed, workers=workers, progress=progress)
    if progress:
        print(result.summary(), file=sys.stderr)
    return out
