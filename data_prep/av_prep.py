"""Audio-visual pair mining for ``avssl-prep audioset``: per video (in a prep worker), then across
videos (:func:`pair_rows`: one correspondence negative per frame, seeded by (seed, video, frame)).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/av_prep.py".
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avssl import errors
from avssl.data import av_pairs
from avssl.data.av_pairs import AudioSpan
from avssl.data.manifest import atomic_output
from avssl.types import VideoInfo

from .scan import Entry

PAIR_TASKS = ("avc", "sync")
# 2: the stricter probe of data_prep.videos (bad-media corpus): old records are re-checked
RECORD_VERSION = 2


@dataclass(frozen=True)
class PairConfig:
    """How (frame, audio) pairs are sampled. Paper values: L3/AVE-Net use 1 s of audio at
    48 kHz around one frame, positives and negatives 50:50."""

    seed: int = 0
    window_s: float = 1.0
    frames_per_s: float = 1.0  # sampled frames per second of usable sound (10 per AudioSet clip)
    min_sync_offset_s: float = 0.5  # a synchronisation negative is shifted by at least this
    max_sync_offset_s: float = 2.0  # ... and at most this (whole frames, either sign)
    require_audible: bool = True  # quarantine digitally silent tracks (they teach nothing)
    # sample only frames whose window's peak reaches this level (dBFS); None: every window.
    # Windows of silence cannot be matched to anything (the built-in set: 46% of 1 s windows)
    min_window_peak_dbfs: float | None = None
    cache: bool = False  # written only with --cache DIR
    cache_short_side: int = 256  # frames resized so the short side is this (224 crops train)
    cache_sample_rate: int = 48000  # L3 / AVE-Net resample to 48 kHz
    # "jpeg" (quality 90, ~20x smaller, decoded per read) or "raw" (uint8 arrays, no decode)
    cache_format: str = "jpeg"

    def key(self) -> str:
        text = json.dumps([asdict(self), RECORD_VERSION], sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _path_key(relpath: str) -> int:
    return int(hashlib.blake2b(relpath.encode(), digest_size=8).hexdigest(), 16)


def usable_span(entry: Entry, info: VideoInfo) -> AudioSpan:
    """The AudioSet segment on the file's time axis (a cut file starts at the segment), within
    the first audio stream's decoded extent."""
    a = info.audio[0]
    lo, hi = 0.0, a.duration_s
    m = entry.meta
    if "segment_start_s" in m:
        if m.get("cut", True):
            seg_lo, seg_hi = 0.0, m["segment_end_s"] - m["segment_start_s"]
        else:
            seg_lo, seg_hi = m["segment_start_s"], m["segment_end_s"]
        lo, hi = max(lo, seg_lo), min(hi, seg_hi)
    return AudioSpan(origin_s=info.pts_s[0], lo_s=lo, hi_s=hi)


def mine_pairs(
    src: Path, entry: Entry, info: VideoInfo, cfg: PairConfig, cache_dir: Path | None
) -> dict[str, Any]:
    """One video's part of the pair manifests (a record's ``pairs`` field); raises a
    MediaError subclass (quarantine) when the video cannot give a pair."""
    if not info.audio:
        raise errors.NoAudioStreamError(str(src), "no audio stream: no audio-visual pair")
    if cfg.require_audible and not info.audio[0].audible:
        raise errors.SilentAudioError(
            str(src), f"audio is digitally silent (peak {info.audio[0].peak_dbfs:.0f} dBFS)"
        )
    span = usable_span(entry, info)
    pts = np.asarray(info.pts_s)
    rngs = [np.random.default_rng([cfg.seed, _path_key(entry.relpath), t]) for t in range(2)]
    keep = None if cfg.min_window_peak_dbfs is None else _loud_enough(src, info, span, cfg)
    frames = av_pairs.sample_frames(
        pts,
        info.fps,
        span,
        cfg.window_s,
        cfg.frames_per_s,
        rngs[0],
        keep,
        avoid=info.damaged_frames,
    )
    if not frames:
        raise errors.NoUsableWindowError(
            str(src), f"no {cfg.window_s:g} s window centred on a frame fits the usable sound "
            f"[{span.lo_s:.2f}, {span.hi_s:.2f}] s (file shorter than its segment?)"
            + ("" if keep is None else f" with a peak >= {cfg.min_window_peak_dbfs:g} dBFS"),
        )  # fmt: skip
    starts = [av_pairs.centred_start(pts, i, info.fps, cfg.window_s) for i in frames]
    shifts = [
        av_pairs.sync_shift(
            s, span, info.fps, cfg.window_s, cfg.min_sync_offset_s, cfg.max_sync_offset_s, rngs[1]
        )  # fmt: skip
        for s in starts
        if s is not None
    ]
    out: dict[str, Any] = {
        "fps": info.fps,
        "span": [span.origin_s, span.lo_s, span.hi_s],
        "frames": frames,
        "frame_s": [float(pts[i]) for i in frames],
        "start_s": starts,
        "sync_shift": shifts,
    }
    if cache_dir is not None:
        out.update(_write_cache(src, entry, info, cfg, span, frames, cache_dir))
    return out


def _loud_enough(src: Path, info: VideoInfo, span: AudioSpan, cfg: PairConfig) -> Any:
    """``keep(start_s)``: whether the window from ``start_s`` peaks at or above the level."""
    from avssl.data.decode import read_audio

    sr = int(info.audio[0].sample_rate) or 16000
    x = np.abs(read_audio(src, span.lo_s, span.hi_s - span.lo_s, sample_rate=sr).data.numpy()[0])
    level = 10.0 ** (float(cfg.min_window_peak_dbfs or 0.0) / 20.0)
    n = round(cfg.window_s * sr)

    def keep(start_s: float) -> bool:
        k = round((start_s - span.lo_s) * sr)
        return bool(x[max(k, 0) : k + n].max(initial=0.0) >= level)

    return keep


def _write_cache(
    src: Path, entry: Entry, info: VideoInfo, cfg: PairConfig, span: AudioSpan,
    frames: list[int], cache_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """The sampled frames and the span's mono audio (int16) as .npy files.

    Frames: ``raw`` -- one (K, H, W, 3) uint8 array; ``jpeg`` -- the K JPEGs concatenated in a
    1-D uint8 array, frame k being bytes ``offsets[k]:offsets[k + 1]`` (``cache_offsets``)."""
    import cv2

    from avssl.data.decode import read_audio, read_frames

    from .transcode import cache_size

    if cfg.cache_format not in ("jpeg", "raw"):
        raise ValueError(f"cache_format must be 'jpeg' or 'raw', got {cfg.cache_format!r}")
    stem = Path(entry.relpath).with_suffix("")
    f_path, a_path = cache_dir / f"{stem}.frames.npy", cache_dir / f"{stem}.audio.npy"
    size = cache_size(info.width, info.height, cfg.cache_short_side)
    rgb = read_frames(src, frames, size=size, info=info).data.permute(0, 2, 3, 1).numpy()
    extra: dict[str, Any] = {}
    if cfg.cache_format == "jpeg":
        jpegs = [
            cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, 90])[1].reshape(-1)
            for f in rgb
        ]  # fmt: skip
        extra["cache_offsets"] = np.cumsum([0] + [len(j) for j in jpegs]).tolist()
        array = np.concatenate(jpegs)
    else:
        array = rgb
    with atomic_output(f_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    audio = read_audio(src, span.lo_s, span.hi_s - span.lo_s,
                       sample_rate=cfg.cache_sample_rate, mono=True)  # fmt: skip
    pcm = np.clip(np.round(audio.data.numpy()[0] * 32767.0), -32768, 32767).astype(np.int16)
    with atomic_output(a_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, pcm)
    return {
        "cache_frames": f_path.relative_to(cache_dir).as_posix(),
        "cache_audio": a_path.relative_to(cache_dir).as_posix(),
        "cache_audio_start_s": audio.start_s,  # sample 0 of cache_audio is at this time
        "cache_size": list(size),
        "cache_format": cfg.cache_format,
        **extra,
    }


def pair_rows(
    records: list[dict[str, Any]], cfg: PairConfig, v: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """The ``avc`` and ``sync`` rows of one role's videos (records sorted by path), and the
    number of positives per label. Correspondence negatives come from another video of the same
    list, cut on the frame's grid; with a single video there are none."""
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in PAIR_TASKS}
    per_label: Counter[str] = Counter()
    n = len(records)
    for ai, rec in enumerate(records):
        p, video = rec["pairs"], rec["video"]
        fps = p["fps"]
        for k, (frame, frame_s, start) in enumerate(
            zip(p["frames"], p["frame_s"], p["start_s"], strict=True)
        ):
            base = {"v": v, "video": rec["relpath"], "frame": frame, "frame_s": frame_s,
                    "audio_s": cfg.window_s, "labels": video.get("labels", []), "fps": fps,
                    "span": p["span"]}  # fmt: skip
            if "cache_frames" in p:
                base.update(cache_frames=p["cache_frames"], cache_row=k)
                if "cache_offsets" in p:  # jpeg: the frame's bytes in cache_frames
                    base["cache_bytes"] = p["cache_offsets"][k : k + 2]
            pos = {**base, **_audio_ref(rec, start, cfg), "target": 1, "kind": "pos"}
            rows["avc"].append(pos)
            rows["sync"].append(pos)
            per_label.update(video.get("labels", []))
            rng = np.random.default_rng([cfg.seed, _path_key(rec["relpath"]), frame, 2])
            for _ in range(8 if n > 1 else 0):  # another video whose sound fits a window
                bi = int(rng.integers(n - 1))
                other = records[bi + (bi >= ai)]
                o_origin, o_lo, o_hi = other["pairs"]["span"]
                rng_m = av_pairs.grid_starts(AudioSpan(o_origin, o_lo, o_hi), fps, cfg.window_s)
                if rng_m is None:
                    continue
                m = int(rng.integers(rng_m[0], rng_m[1] + 1))
                neg_start = o_origin + m / fps
                rows["avc"].append({**base, **_audio_ref(other, neg_start, cfg), "target": 0,
                                    "kind": "other",
                                    "audio_labels": other["video"].get("labels", [])})  # fmt: skip
                break
            shift = p["sync_shift"][k]
            if shift is not None:
                rows["sync"].append({**base, **_audio_ref(rec, start + shift / fps, cfg),
                                     "target": 0, "kind": "sync",
                                     "offset_s": round(shift / fps, 6)})  # fmt: skip
    return rows, dict(per_label)


def _audio_ref(rec: dict[str, Any], start_s: float, cfg: PairConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"audio_video": rec["relpath"], "audio_start_s": round(start_s, 9)}
    p = rec["pairs"]
    if "cache_audio" in p:
        out["cache_audio"] = p["cache_audio"]
        out["cache_audio_start_s"] = p["cache_audio_start_s"]
        out["cache_audio_sample"] = int(
            round((start_s - p["cache_audio_start_s"]) * cfg.cache_sample_rate)
        )
    return out


def load_cached_pair(
    cache_dir: Path, row: dict[str, Any], sample_rate: int, opened: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A pair manifest row's frame (H, W, 3) uint8 RGB and audio (samples,) float32 from the
    cache; ``opened`` keeps the memory maps between calls (one dict per data-loader worker)."""

    def mm(rel: str) -> np.ndarray:
        if rel not in opened:
            opened[rel] = np.load(cache_dir / rel, mmap_mode="r")
        return opened[rel]

    from avssl.data.dataset import cached_frame

    frame = cached_frame(mm(row["cache_frames"]), row, cache_dir)
    k = row["cache_audio_sample"]
    n = int(round(row["audio_s"] * sample_rate))
    audio = mm(row["cache_audio"])[k : k + n].astype(np.float32) / 32767.0
    return frame, audio
