"""The one door to the video and audio decoders.

Public API (every other module and every user calls only these):

- :func:`probe` ``(path) -> VideoInfo``: streams, exact frame count (counted by decoding), per-frame
  times, keyframes and *verified* seek points, audio streams with an audibility flag.
- :func:`read_frames` ``(path, indices) -> Clip``: RGB uint8 ``(T, C, H, W)`` in the order asked.
- :func:`read_audio` ``(path, start_s, duration_s, sample_rate=...) -> Audio``: float32
  ``(channels, samples)``, sample-exact at the requested rate.

**Exact frames are the contract.** On real UCF-101 files (Xvid AVI with packed B-frames) several
decoders return wrong frames after a seek without raising (../shared/METHODS.md). The reference
backend here, ``pyav``, never trusts a timestamp to name a frame: frames are *counted* in display
order from a keyframe, and :func:`probe` decodes the file once sequentially, then seeks to every
keyframe and checks that every frame decoded from there matches the sequential decode (a checksum
of subsampled luma). Keyframes that fail are not used as seek targets. Other backends (decord,
OpenCV, torchcodec) are used only for kinds of file on which they passed the exact-frame suite
(tests/test_decode_exact.py); :func:`backend_refusal` says why one is refused.

Random access is cheap: a read sorts the wanted indices, and for each one either goes on decoding
from where the decoder stands or seeks to the verified keyframe at or before it, whichever decodes
fewer frames; all wanted frames are served in one forward pass and no frame is decoded twice.
Only wanted frames are converted to RGB.

The work is split by job under this door: :mod:`avssl.data.media_io` (safe opening, container
size checks), :mod:`avssl.data.frame_folder` (folders of numbered images),
:mod:`avssl.data.audio_decode` (``probe_audio``, ``read_audio``); import them from here.

Audio: one mono mix everywhere, the *mean* of the channels (librosa/soundfile convention, not
(L+R)/sqrt 2). Windows that run past either end of the stream are zero-padded
(``out_of_range="pad"``) or refused (``"error"``).
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
import zlib
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

import av
import numpy as np
import torch

from avssl import errors
from avssl.data import frame_folder
from avssl.data.audio_decode import (
    AUDIBLE_PEAK_DBFS,
    _audio_info,
    _audio_stats_add,
    _AudioStats,
    probe_audio,
    read_audio,
)
from avssl.data.media_io import (
    DEFAULT_TIMEOUT_S,
    _check_deadline,
    _demux,
    _open,
    _truncation,
    _video_stream,
    check_source,
)
from avssl.data.suffixes import VIDEO_SUFFIXES
from avssl.types import (
    FRAME_FOLDER_CONTAINER,
    Clip,
    SeekPoint,
    VideoInfo,
)

__all__ = [
    "AUDIBLE_PEAK_DBFS",
    "BACKENDS",
    "VIDEO_SUFFIXES",
    "DEFAULT_TIMEOUT_S",
    "available_backends",
    "backend_refusal",
    "check_source",
    "choose_backend",
    "clear_caches",
    "iter_frames",
    "media_identity",
    "probe",
    "probe_audio",
    "read_audio",
    "read_frames",
]

BackendName = Literal["auto", "pyav", "decord", "opencv", "torchcodec"]
BACKENDS: tuple[str, ...] = ("pyav", "decord", "opencv", "torchcodec")


_MPEG4_VOP = b"\x00\x00\x01\xb6"


# --------------------------------------------------------------------------------------------
# Backends: which are installed, and where each may be used.
# --------------------------------------------------------------------------------------------
def available_backends() -> tuple[str, ...]:
    """The backends whose packages import here (pyav always)."""
    return tuple(name for name in BACKENDS if _importable(name))


@functools.cache
def _importable(name: str) -> bool:
    if name == "pyav":
        return True
    try:
        _import_backend(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def _import_backend(name: str) -> Any:
    if name == "decord":
        import decord

        return decord
    if name == "opencv":
        import cv2

        return cv2
    if name == "torchcodec":
        from torchcodec.decoders import VideoDecoder

        return VideoDecoder
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


# Refusals found by the exact-frame suite (tests/test_decode_exact.py, BENCHMARKS.md "Exactness").
# Each rule: (backend, predicate on VideoInfo, reason). A backend is used for a file only when no
# rule refuses it. Keep this table in step with the suite's measured table.
# Containers (FFmpeg demuxer names, by prefix) on which the suite has run every backend.
_CHECKED_CONTAINERS = ("mov,mp4", "matroska", "avi", "mpeg", "mxf", "ogg", "flv", "asf")
_REFUSALS: tuple[tuple[str, Any, str], ...] = (
    *(
        (name, lambda i: i.is_frame_folder, f"{name} reads video files, not folders of images")
        for name in ("decord", "opencv", "torchcodec")
    ),
    (
        "torchcodec",
        lambda i: i.b_frames and i.codec == "mpeg4",
        "torchcodec 0.17 returns wrong frames on MPEG-4 Part 2 (Xvid/DivX) with B-frames",
    ),
    (
        "decord",
        lambda i: i.b_frames and i.codec == "mpeg4",
        "decord 0.6 returns wrong frames on MPEG-4 Part 2 (Xvid/DivX) AVI with B-frames, packed "
        "(real UCF-101 files) or not",
    ),
    (
        "decord",
        lambda i: i.num_video_streams > 1,
        "decord reads the 'best' video stream, not the first one that avssl reads",
    ),
    (
        "opencv",
        lambda i: i.vfr,
        "OpenCV's frame seek (CAP_PROP_POS_FRAMES) converts the index to a time at the average "
        "rate and lands on the wrong frame in VFR video",
    ),
    (
        "decord",
        lambda i: i.container in ("mpeg", "mpegts", "mxf"),
        "decord 0.6 returns wrong frames in MPEG program/transport streams and MXF (measured: "
        "MPEG-2 .mpg frame i+2 for i, real GRID MPEG-1 .mpg frame i+12, H.264 .ts frame i+25, "
        "MPEG-2 .mxf frame i-10)",
    ),
    (
        "decord",
        lambda i: i.container == "ogg",
        "decord 0.6 cannot open Ogg video ('Failed to measure duration/frame-count')",
    ),
    (
        "opencv",
        lambda i: i.container in ("mpeg", "mpegts"),
        "OpenCV's frame seek lands on the wrong frame in MPEG program/transport streams "
        "(measured: the next keyframe or later instead of frames 1..12 of .mpg and .ts)",
    ),
    (
        "torchcodec",
        lambda i: i.container in ("mpeg", "mpegts"),
        "torchcodec 0.17 returns wrong frames and raises 'Requested next frame while there are "
        "no more frames' in MPEG program/transport streams (measured on .mpg and .ts)",
    ),
    *(
        (
            name,
            lambda i: not any(i.container.startswith(k) for k in _CHECKED_CONTAINERS),
            "this container has not been through the exact-frame suite "
            "(tests/test_decode_exact.py); only pyav is trusted on it",
        )
        for name in ("decord", "opencv", "torchcodec")
    ),
)

# Preference of `auto` among the backends that are allowed for a file (fastest first, from
# benchmarks/decode.py). pyav's keyframe-aware reader is exact by construction (verified seek
# points), so it is always the last resort.
_AUTO_ORDER: tuple[str, ...] = ("pyav",)


def backend_refusal(backend: str, info: VideoInfo) -> str | None:
    """Why ``backend`` may not decode this file (None when it may)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    for name, refuses, reason in _REFUSALS:
        if name == backend and refuses(info):
            return f"{reason} (file kind {info.kind})"
    return None


def choose_backend(info: VideoInfo) -> str:
    """The backend ``backend="auto"`` uses for this file: the fastest one that is exact here."""
    # Only the candidates are imported: torchcodec alone takes seconds (torch._dynamo), which
    # every data-loader worker would pay on its first read.
    for name in _AUTO_ORDER:
        if _importable(name) and backend_refusal(name, info) is None:
            return name
    return "pyav"


# --------------------------------------------------------------------------------------------
# Opening files: every failure becomes a typed error that names the file.
# --------------------------------------------------------------------------------------------


def _fingerprint(frame: av.VideoFrame) -> int:
    """Checksum of the frame's luma (plane 0) on a 2x2-subsampled grid, padding excluded."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return zlib.crc32(np.ascontiguousarray(rows[::2, : plane.width : 2]).data)


# --------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------
@dataclass
class _KeyPacket:
    pts: int | None
    dts: int | None
    pos: int


_PROBE_CACHE: OrderedDict[tuple[str, int, int, bool, bool, float | None], VideoInfo] = OrderedDict()
_PROBE_CACHE_SIZE = 4096
_PROBE_LOCK = threading.Lock()


def probe(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    strict: bool = True,
    conceal: bool = True,
    fps: float | None = None,
) -> VideoInfo:
    """Decode the whole file once and describe it (cached per process by path, size and mtime).

    Frames are counted by decoding, never taken from the header. Every keyframe is then tried as
    a seek target, and only those from which decoding reproduces the sequential frames exactly
    become ``seek_points``. With ``strict`` (the default) a decode that fails (an error the
    decoder raises, a truncated packet) raises :class:`~avssl.errors.CorruptMediaError`; without
    it the decodable frames are kept. Damage the decoder conceals (it logs an error and paints
    the picture over) is *recorded*, not fatal: ``decode_warnings`` counts it and
    ``damaged_frames`` lists the frames it touched. ``conceal=False`` (with ``strict``) makes
    that damage fatal too (FFmpeg ``err_detect=explode``): ``avssl-prep --strict-decode``.

    ``path`` may also be a folder of numbered images (:mod:`avssl.data.frame_folder`); ``fps``
    is then its frame rate when the folder has no sidecar (default 25). AVI index entries
    without data (held frames) are time: ``pts_s`` keeps their gaps and ``vfr`` is set.
    """
    p = check_source(path)
    return _probe_cached(p, timeout_s, strict, strict and not conceal, fps if p.is_dir() else None)


def media_identity(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(size, mtime) that a probe is cached under and that ``VideoInfo.size_bytes`` /
    ``mtime_ns`` record: a file's own, or a frame folder's (its images' total bytes, the newest
    mtime of the folder, its images and sidecars). A changed pair means: probe again."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        return frame_folder.folder_stat(Path(path))
    return st.st_size, st.st_mtime_ns


def _unchanged(p: Path, info: VideoInfo) -> bool:
    """Whether a probe still describes ``p`` (checked on every read, so cheap): a file's size
    and mtime; a frame folder's file list, unchanged while the folder's own mtime is not newer
    than the probe's identity (adding, removing or renaming an image bumps it; each image is
    decoded as it is now). A full scan of the folder cost 0.8 ms per read at 196 images."""
    if info.is_frame_folder:
        return os.stat(p).st_mtime_ns <= info.mtime_ns
    return media_identity(p) == (info.size_bytes, info.mtime_ns)


def _probe_cached(
    p: Path, timeout_s: float, strict: bool, explode: bool, fps: float | None
) -> VideoInfo:
    size, mtime = media_identity(p)
    key = (str(p.resolve()), size, mtime, strict, explode, fps)
    with _PROBE_LOCK:
        if key in _PROBE_CACHE:
            _PROBE_CACHE.move_to_end(key)
            return _PROBE_CACHE[key]
    if p.is_dir():
        info = _probe_folder(p, size, mtime, strict=strict, fps=fps)
    else:
        info = _probe_uncached(p, size, mtime, timeout_s=timeout_s, strict=strict, explode=explode)
    with _PROBE_LOCK:
        _PROBE_CACHE[key] = info
        while len(_PROBE_CACHE) > _PROBE_CACHE_SIZE:
            _PROBE_CACHE.popitem(last=False)
    return info


def _probe_folder(p: Path, size: int, mtime: int, *, strict: bool, fps: float | None) -> VideoInfo:
    """A frame folder: list, check the numbering, decode every image once (sizes, damage)."""
    fl = frame_folder.list_frames(p, fps=fps)
    if fl.gaps and strict:
        raise errors.FrameGapError(str(p), f"frame numbers have gaps: {fl.gap_text()}")
    sizes: Counter[tuple[int, int]] = Counter()
    first_of: dict[tuple[int, int], str] = {}
    codecs: Counter[str] = Counter()
    for name in fl.names:
        f = frame_folder.decode_image(p / name)
        sizes[(f.width, f.height)] += 1
        first_of.setdefault((f.width, f.height), name)
        codecs[_image_codec(name)] += 1
    if len(sizes) > 1:
        (w, h), n = sizes.most_common(1)[0]
        odd = ", ".join(f"{a}x{b} x{k} (first {first_of[(a, b)]})"
                        for (a, b), k in sizes.most_common()[1:3])  # fmt: skip
        raise errors.MixedFrameSizeError(
            str(p), f"frames differ in size: {w}x{h} x{n}, then {odd}; a video has one size"
        )
    (w, h), n = sizes.most_common(1)[0]
    pts_s = fl.pts_s()
    return VideoInfo(
        path=str(p), size_bytes=size, mtime_ns=mtime,
        container=FRAME_FOLDER_CONTAINER, codec=codecs.most_common(1)[0][0], codec_tag="",
        width=w, height=h, fps=fl.fps, num_frames=n, header_num_frames=n, num_packets=n,
        pts_s=pts_s, pts_trusted=True, keyframes=tuple(range(n)), seek_points=(),
        b_frames=False, packed_b_frames=False, vfr=bool(fl.gaps),
        duration_s=pts_s[-1] + 1.0 / fl.fps, video_stream_index=0, frame_files=fl.names,
    )  # fmt: skip


def _image_codec(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return {".jpg": "mjpeg", ".jpeg": "mjpeg", ".tif": "tiff"}.get(ext, ext.lstrip("."))


@dataclass
class _Pass:
    """What the sequential pass of probe collects."""

    pts: list[int | None] = field(default_factory=list)  # per decoded frame, display order
    keyframes: list[int] = field(default_factory=list)
    prints: list[int] = field(default_factory=list)  # luma checksums of the frames
    key_packets: list[_KeyPacket] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)  # AVI: index entry number of each packet
    n_packets: int = 0
    packed: bool = False
    headers: bytes = b""
    rotation: int = 0
    errors: list[str] = field(default_factory=list)  # decode failures (fatal when strict)
    warnings: list[str] = field(default_factory=list)  # damage the decoder concealed
    damage_at: list[int] = field(default_factory=list)  # first display index each one touched


def _probe_uncached(
    p: Path, size: int, mtime: int, *, timeout_s: float, strict: bool, explode: bool = False
) -> VideoInfo:
    deadline = time.monotonic() + timeout_s
    cut = _truncation(p, size)
    if cut and strict:
        raise errors.TruncatedMediaError(str(p), f"truncated: {cut}")
    with _open(p, full=True) as c:
        vs = _video_stream(c, p)
        if explode:
            vs.codec_context.options = {**vs.codec_context.options, "err_detect": "explode"}
        astreams = list(c.streams.audio)
        tb = vs.time_base or Fraction(1, 1000)
        audio_acc = {s.index: _AudioStats() for s in astreams}
        sp = _sequential_pass(c, vs, p, audio_acc, deadline)
        pts = sp.pts
        _refuse_failed_pass(sp, p, strict=strict, explode=explode)
        num_frames = len(pts)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        pts_s, pts_ok, held = _timeline(sp, c.format.name == "avi", tb, rate)
        fps, vfr = _rate_of(pts_s, tb, rate, trusted=pts_ok or held > 0)
        vfr = vfr or held > 0  # a held picture lasts longer than the others
        b_frames = (not pts_ok and _reorders(pts)) or _has_b_frames(vs)
        prime = sp.headers if sp.packed else b""
        seek_points = _verify_seek_points(p, sp.key_packets, sp.keyframes, sp.prints, prime,
                                          deadline)  # fmt: skip
        audio = tuple(
            _audio_info(s, audio_acc[s.index]) for s in astreams if audio_acc[s.index].samples > 0
        )
        video_end = pts_s[-1] + (1.0 / fps if fps > 0 else 0.0)
        rotation = sp.rotation
        return VideoInfo(
            path=str(p),
            size_bytes=size,
            mtime_ns=mtime,
            container=c.format.name,
            codec=vs.codec_context.name,
            codec_tag=_fourcc(vs),
            width=vs.codec_context.height if rotation in (90, 270) else vs.codec_context.width,
            height=vs.codec_context.width if rotation in (90, 270) else vs.codec_context.height,
            fps=fps,
            num_frames=num_frames,
            header_num_frames=int(vs.frames or 0),
            num_packets=sp.n_packets,
            pts_s=pts_s,
            pts_trusted=pts_ok,
            keyframes=tuple(sp.keyframes),
            seek_points=seek_points,
            b_frames=b_frames,
            packed_b_frames=sp.packed,
            vfr=vfr,
            duration_s=max([video_end] + [a.duration_s for a in audio]),
            video_stream_index=vs.index,
            audio=audio,
            rotation=rotation,
            num_video_streams=len(c.streams.video),
            prime_headers=prime,
            decode_warnings=len(sp.warnings) + (len(sp.errors) if not strict else 0),
            damaged_frames=_damaged(sp, num_frames),
            held_frames=held,
        )


def _refuse_failed_pass(sp: _Pass, p: Path, *, strict: bool, explode: bool) -> None:
    """Raise when the pass decoded nothing, or (``strict``) when decoding failed somewhere --
    or, with ``explode``, when the decoder concealed damage."""
    if not sp.pts:
        raise errors.CorruptMediaError(
            str(p), "no video frame could be decoded" + _first(sp.errors + sp.warnings)
        )
    fatal = sp.errors + (sp.warnings if explode else [])
    if fatal and strict:
        cls = (
            errors.TruncatedMediaError
            if any("truncated" in m or "partial" in m for m in fatal)
            else errors.CorruptMediaError
        )
        raise cls(
            str(p),
            f"{len(fatal)} decode error(s) after {len(sp.pts)} good frames" + _first(fatal),
        )


def _timeline(sp: _Pass, avi: bool, tb: Fraction, rate: Any) -> tuple[tuple[float, ...], bool, int]:
    """(pts_s per display index, container pts trusted?, held frames).

    AVI has no presentation times: FFmpeg hands out index-entry counters, which are off by the
    B-frame delay (plain B-frames) or out of order (packed) per frame. Sorted, the entries of the
    packets are the frames' times; an empty entry between them holds the last picture (a held
    frame: time, not a lost frame). Elsewhere the decoded frames' pts, when all are known and
    increasing; else index / rate.
    """
    n = len(sp.pts)
    known = [t for t in sp.pts if t is not None]
    pts_ok = (
        not avi and len(known) == n and all(b > a for a, b in zip(known, known[1:], strict=False))
    )
    if pts_ok and n > 1:
        return tuple(float(t * tb) for t in known), True, 0
    if avi and len(sp.entries) == n and len(set(sp.entries)) == n:
        entries = sorted(sp.entries)
        step = 1.0 / float(rate) if rate else float(tb)
        held = entries[-1] - entries[0] + 1 - n
        return tuple((e - entries[0]) * step for e in entries), pts_ok, held
    step = 1.0 / float(rate) if rate else 1 / 25.0
    return tuple(i * step for i in range(n)), pts_ok, 0


def _rate_of(
    pts_s: tuple[float, ...], tb: Fraction, rate: Any, *, trusted: bool
) -> tuple[float, bool]:
    """(average frame rate, variable rate?) of frames at ``pts_s``."""
    n = len(pts_s)
    if not trusted or n < 2:
        return (float(rate) if rate else 25.0), False
    span = pts_s[-1] - pts_s[0]
    fps = (n - 1) / span if span > 0 else float(rate or 0)
    durations = np.diff(np.asarray(pts_s))
    # Containers store times in ticks (mkv: 1 ms), so a 30 fps file alternates 33/34 ms:
    # that is rounding, not a variable rate.
    slack = max(0.01 * durations.mean(), 1.5 * float(tb))
    return fps, bool(np.abs(durations - durations.mean()).max() > slack)


def _damaged(sp: _Pass, num_frames: int) -> tuple[int, ...]:
    """Frames touched by concealed damage: from each damaged picture up to the next keyframe
    (later pictures are predicted from it), or to the end when none follows."""
    out: set[int] = set()
    keys = sorted(sp.keyframes)
    for d in sp.damage_at:
        d = min(max(d, 0), num_frames - 1)
        k = bisect_right(keys, d)
        end = keys[k] if k < len(keys) else num_frames
        out.update(range(d, end))
    return tuple(sorted(out))


def _sequential_pass(
    c: av.container.InputContainer,
    vs: av.video.stream.VideoStream,
    p: Path,
    audio_acc: dict[int, _AudioStats],
    deadline: float,
) -> _Pass:
    """Demux and decode everything once, in order; collect frames, keyframes and damage."""
    sp = _Pass()
    try:
        with _decoder_log() as logs:
            for pk in _demux(c, vs, *c.streams.audio):
                _check_deadline(deadline, p, "probe")
                if pk.stream.type == "audio":
                    _audio_stats_add(audio_acc[pk.stream.index], pk)
                    continue
                _packet_facts(sp, vs, pk)
                n_logs = len(logs)
                try:
                    frames = cast(list[av.VideoFrame], pk.decode())
                except av.error.FFmpegError as e:
                    sp.errors.append(f"frame {len(sp.pts)}: {e}")
                    sp.damage_at.append(len(sp.pts))
                    continue
                new = [m for lvl, _, m in logs[n_logs:] if lvl <= av.logging.ERROR]
                if new:
                    sp.warnings.extend(f"near frame {len(sp.pts)}: {m.strip()}" for m in new)
                    sp.damage_at.append(_display_index(sp, pk, frames))
                for f in frames:
                    if not sp.pts:
                        sp.rotation = round(float(getattr(f, "rotation", 0) or 0) / 90) * 90 % 360
                    if f.key_frame:
                        sp.keyframes.append(len(sp.pts))
                    if f.is_corrupt:
                        sp.warnings.append(f"frame {len(sp.pts)}: flagged corrupt by the decoder")
                        sp.damage_at.append(len(sp.pts))
                    sp.prints.append(_fingerprint(f))
                    sp.pts.append(f.pts)
    except av.error.FFmpegError as e:
        sp.errors.append(f"demux stopped after {sp.n_packets} video packets: {e}")
    return sp


def _packet_facts(sp: _Pass, vs: av.video.stream.VideoStream, pk: av.Packet) -> None:
    if not pk.size:
        return
    sp.n_packets += 1
    sp.entries.append(pk.pts if pk.pts is not None else (pk.dts if pk.dts is not None else -1))
    if pk.is_corrupt:
        sp.errors.append(f"truncated packet at byte {pk.pos}")
    if pk.is_keyframe:
        sp.key_packets.append(_KeyPacket(pk.pts, pk.dts, pk.pos if pk.pos is not None else -1))
    if vs.codec_context.name == "mpeg4":
        data = bytes(pk)
        sp.packed = sp.packed or data.count(_MPEG4_VOP) > 1
        if sp.n_packets == 1:  # VOS/VOL headers and user data before the 1st VOP
            sp.headers = data[: max(data.find(_MPEG4_VOP), 0)]


def _display_index(sp: _Pass, pk: av.Packet, frames: list[av.VideoFrame]) -> int:
    """The display index of the picture a damaged packet carries: the frame with its pts when
    one has come out, else the earliest frame this packet could be (the next one out)."""
    if pk.pts is not None:
        for i in range(len(sp.pts) - 1, max(len(sp.pts) - 16, -1), -1):
            if sp.pts[i] == pk.pts:
                return i
        for j, f in enumerate(frames):
            if f.pts == pk.pts:
                return len(sp.pts) + j
    return len(sp.pts)


@contextmanager
def _decoder_log() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's errors logged on this thread while the block runs (PyAV logs nothing unless a
    level is set; the previous level is restored after)."""
    prev, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=True) as logs:
            yield cast(list[tuple[int, str, str]], logs)
    finally:
        av.logging.set_level(prev)
        av.logging.set_skip_repeated(skip)


def _first(msgs: list[str]) -> str:
    return f"; first: {msgs[0]}" if msgs else ""


def _reorders(pts: Sequence[int | None]) -> bool:
    vals = [t for t in pts if t is not None]
    return any(b < a for a, b in zip(vals, vals[1:], strict=False))


def _has_b_frames(vs: av.video.stream.VideoStream) -> bool:
    return bool(getattr(vs.codec_context, "has_b_frames", False))


def _fourcc(vs: av.video.stream.VideoStream) -> str:
    tag = getattr(vs.codec_context, "codec_tag", "") or ""
    return tag if isinstance(tag, str) and tag.isprintable() else ""


def _verify_seek_points(
    p: Path,
    key_packets: list[_KeyPacket],
    keyframes: list[int],
    prints: list[int],
    prime: bytes,
    deadline: float,
) -> tuple[SeekPoint, ...]:
    """Seek to every keyframe packet and keep those that reproduce the sequential decode.

    The n-th keyframe packet (decode order) should give the n-th keyframe out of the decoder
    (display order): keyframes are never reordered among themselves. A candidate is kept when,
    on a freshly opened file (as a read finds it), the first packet read after the seek is the
    keyframe packet itself and every frame decoded from there up to the next kept seek point
    matches the sequential decode's checksum. Frames after a seek are counted, never looked up
    by timestamp (AVI timestamps are packet counters). Candidates are checked from the last to
    the first, so that each one is checked over the whole stretch a read may decode from it.
    """
    if len(key_packets) != len(keyframes):
        return ()  # ambiguous pairing: read from the start only (exact, slower)
    kept: list[SeekPoint] = []
    for kp, idx in reversed(list(zip(key_packets, keyframes, strict=True))):
        end = kept[-1].frame_index if kept else len(prints)
        for ts in dict.fromkeys(t for t in (kp.pts, kp.dts) if t is not None):
            sp = SeekPoint(ts=ts, frame_index=idx, packet_pos=kp.pos, fingerprint=prints[idx])
            if _reproduces(p, sp, end, prints, prime, deadline):
                kept.append(sp)
                break
    return tuple(reversed(kept))


def _reproduces(
    p: Path, sp: SeekPoint, end: int, prints: list[int], prime: bytes, deadline: float
) -> bool:
    nxt = sp.frame_index
    try:
        with _open(p) as c:
            vs = _video_stream(c, p)
            for i, f in _decode_from(c, vs, p, sp, deadline, prime=prime, check_pos=True):
                if i >= end or _fingerprint(f) != prints[i]:
                    break
                nxt = i + 1
    except (_SeekMismatch, errors.CorruptMediaError, av.error.FFmpegError):
        return False
    return nxt >= end


def _prime(vs: av.video.stream.VideoStream, headers: bytes) -> None:
    """Feed the stream's in-band headers to the decoder before a seek.

    Packed B-frame AVI says it is packed only in user data at the start of the stream; a decoder
    that seeks straight into the middle never learns it and drops frames (measured on Xvid). The
    headers alone (no picture) teach it; FFmpeg reports "invalid data" for a packet without a
    VOP after parsing them, which is expected here.
    """
    try:
        vs.codec_context.decode(av.Packet(headers))
    except av.error.FFmpegError:
        pass


def _decode_from(
    c: av.container.InputContainer,
    vs: av.video.stream.VideoStream,
    p: Path,
    sp: SeekPoint | None,
    deadline: float,
    *,
    prime: bytes = b"",
    check_pos: bool = False,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield (display index, frame) from a seek point (or from the start of a fresh file).

    After a seek, frames before the first key frame (leading frames of an open GOP, which refer
    to pictures before the keyframe) are dropped and the key frame's checksum is checked again;
    a mismatch raises _SeekMismatch rather than returning a wrong frame.
    """
    started = sp is None
    idx = 0 if sp is None else sp.frame_index
    if sp is not None:
        if prime:
            _prime(vs, prime)
        c.seek(sp.ts, stream=vs, backward=True, any_frame=False)
    first_packet = True
    for pk in _demux(c, vs):
        _check_deadline(deadline, p, "read")
        if check_pos and first_packet and pk.size and sp is not None:
            first_packet = False
            if sp.packet_pos >= 0 and (pk.pos or -1) >= 0 and pk.pos != sp.packet_pos:
                raise _SeekMismatch(sp.frame_index)
        try:
            frames = cast(list[av.VideoFrame], pk.decode())
        except av.error.FFmpegError as e:
            raise errors.CorruptMediaError(str(p), f"decode failed near frame {idx}: {e}") from None
        for f in frames:
            if not started:
                if not f.key_frame:
                    continue
                assert sp is not None
                if _fingerprint(f) != sp.fingerprint:
                    raise _SeekMismatch(sp.frame_index)
                started = True
            yield idx, f
            idx += 1


class _SeekMismatch(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Audio statistics during probe
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# read_frames
# --------------------------------------------------------------------------------------------
def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    backend: BackendName = "auto",
    size: tuple[int, int] | None = None,
    info: VideoInfo | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Clip:
    """Frames at display ``indices`` (0-based, repeats allowed) as RGB uint8 ``(T, 3, H, W)``.

    ``size=(height, width)`` resizes with area interpolation after decoding (the same code for
    every backend). ``info`` skips the (cached) probe when the caller already has it, e.g. from
    a manifest. ``backend="auto"`` picks the fastest backend that passed the exact-frame suite
    for this kind of file; naming a backend that is refused for it raises BackendRefusedError.
    """
    p = check_source(path)
    if info is not None and not _unchanged(p, info):
        info = None  # the file changed since that probe: its index no longer applies
    if info is None:
        info = probe(p, timeout_s=timeout_s)
    idx = _as_indices(indices, p, info)
    if backend == "auto":
        name = choose_backend(info)
    else:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected 'auto' or one of {BACKENDS}")
        reason = backend_refusal(backend, info)
        if reason is not None:
            raise errors.BackendRefusedError(str(p), f"backend {backend!r} refused: {reason}")
        name = backend
    wanted = sorted(set(idx))
    h, w = (info.height, info.width) if size is None else size
    if name == "pyav" and size is None:
        # Convert each wanted frame straight into its slot: one copy per frame. When the
        # request is already sorted and unique (sequential clips, sorted tuples) that buffer
        # is the result.
        buf = np.empty((len(wanted), h, w, 3), np.uint8)
        _read_pyav(p, info, wanted, time.monotonic() + timeout_s, buf)
        if idx == wanted:
            out = buf
        else:
            slot = {i: k for k, i in enumerate(wanted)}
            out = buf[[slot[i] for i in idx]]
    else:
        if name == "pyav":
            frames = _read_pyav(p, info, wanted, time.monotonic() + timeout_s, None)
        else:
            frames = _OTHER_READERS[name](p, info, wanted) if wanted else {}
        out = np.empty((len(idx), h, w, 3), np.uint8)
        for j, i in enumerate(idx):
            out[j] = frames[i] if size is None else _resize(frames[i], size)
    # (T, C, H, W) in channels_last memory: no transposing copy (which cost more than the
    # colour conversion). .contiguous() gives the NCHW-strided layout where needed.
    data = torch.from_numpy(out).permute(0, 3, 1, 2)
    pts = torch.tensor([info.pts_s[i] for i in idx], dtype=torch.float64)
    return Clip(data=data, pts_s=pts, indices=torch.tensor(idx, dtype=torch.int64), backend=name)


#: Codecs whose FFmpeg decoder can skip detail and output 1/2, 1/4 or 1/8 size pictures
#: (``lowres``); H.264/HEVC/VP9 cannot, they decode at full size and are resized after.
_LOWRES_CODECS = frozenset({"mpeg4", "h263", "h263p", "mjpeg", "mpeg1video", "mpeg2video"})


def iter_frames(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    gray: bool = False,
    info: VideoInfo | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame in display order, ``(index, frame)``, decoded sequentially from the start.

    For whole-video passes (motion energy, transcoding) where :func:`read_frames` would hold
    every frame at once. Frames are RGB ``(H, W, 3)`` or, with ``gray``, the luma plane
    ``(H, W)`` read straight from the decoder (no colour conversion: ~4x cheaper), both uint8
    and rotated like :func:`read_frames`. ``size=(height, width)`` resizes with area
    interpolation; in gray mode an MPEG-4/MPEG-2/MJPEG decoder first shrinks by 2, 4 or 8 itself
    (``lowres``: half the decode time at 1/4 size on UCF-101 Xvid), never below ``size``.

    Indices are the counted frames of :func:`probe`; the pass raises CorruptMediaError if it
    yields a different number of frames than the probe counted (``info``, probed if absent).
    """
    p = check_source(path)
    if info is None:
        info = probe(p, timeout_s=timeout_s)
    deadline = time.monotonic() + timeout_s
    n = 0
    for idx, f in _sequential_frames(p, info, gray=gray, size=size, deadline=deadline):
        if gray:
            img = _gray(f)
            if info.rotation % 360:
                img = _rotate(img, info.rotation)
            img = _resize(img, size) if size is not None else img
            if not img.flags.owndata:
                img = img.copy()  # a view of the decoder's picture, which it reuses
        else:
            img = _to_rgb(f, info.rotation)
            if size is not None:
                img = _resize(img, size)
        n = idx + 1
        yield idx, img
    if n != info.num_frames:
        raise errors.CorruptMediaError(
            str(p), f"a sequential pass gave {n} frames, the probe counted {info.num_frames}"
        )


def _sequential_frames(
    p: Path, info: VideoInfo, *, gray: bool, size: tuple[int, int] | None, deadline: float
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(index, decoded frame) from the first to the last frame: a file's decoder, or a frame
    folder's images one by one."""
    if info.is_frame_folder:
        for i, f in frame_folder.iter_images(p, info.frame_files, list(range(info.num_frames))):
            _check_deadline(deadline, p, "read")
            yield i, f
        return
    with _open(p) as c:
        vs = _video_stream(c, p)
        cc = vs.codec_context
        lowres = 0
        if gray and size is not None and cc.name in _LOWRES_CODECS:
            coded = (cc.height, cc.width) if info.rotation in (0, 180) else (cc.width, cc.height)
            fits = lambda k: all(d >> k >= t for d, t in zip(coded, size, strict=True))  # noqa: E731
            while lowres < 3 and fits(lowres + 1):
                lowres += 1
            if lowres:
                cc.options = {"lowres": str(lowres)}
        yield from _decode_from(c, vs, p, None, deadline)


#: Pixel formats whose first plane is the luma (8-bit): read straight from the decoder.
_LUMA_FIRST = ("yuv", "nv", "gray")


def _gray(f: av.VideoFrame) -> np.ndarray:
    """The frame's 8-bit luma: the first plane of YUV pictures (no conversion), a converted
    grey picture for RGB, palette (GIF, PNG) and other formats, whose first plane is not luma."""
    name = f.format.name
    if not (name.startswith(_LUMA_FIRST) and f.format.components[0].bits == 8):
        f = _reformatter().reformat(f, format="gray")
    plane = f.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


def _as_indices(indices: Any, p: Path, info: VideoInfo) -> list[int]:
    arr = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"{p}: indices must be a 1-D sequence of integers, got {arr.dtype}{arr.shape}"
        )
    idx = [int(i) for i in arr]
    bad = [i for i in idx if i < 0 or i >= info.num_frames]
    if bad:
        claim = (
            f" (the header claims {info.header_num_frames}, but only {info.num_frames} decode)"
            if info.header_num_frames > info.num_frames
            else ""
        )
        raise errors.FrameIndexError(
            str(p), f"frame index {bad[0]} out of range 0..{info.num_frames - 1}{claim}"
        )
    return idx


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    interp = cv2.INTER_AREA if h < frame.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(frame, (w, h), interpolation=interp)


_LOCAL = threading.local()


def _reformatter() -> av.video.reformatter.VideoReformatter:
    """This thread's swscale reformatter (``frame.reformat`` builds a new context per frame)."""
    r = getattr(_LOCAL, "reformatter", None)
    if r is None:
        r = _LOCAL.reformatter = av.video.reformatter.VideoReformatter()
    return r


def _to_rgb(f: av.VideoFrame, rotation: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """RGB24 with swscale's default flags (FAST_BILINEAR changes pixels on yuv444p sources).

    One reformatter per thread: ``frame.to_ndarray(format=...)`` builds a new swscale context
    for every frame, which costs more than the conversion itself on small frames. The picture
    is read straight from the converted frame's buffer into ``out`` when given.
    """
    conv = _reformatter().reformat(f, format="rgb24")
    plane = conv.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    rgb: np.ndarray = rows[: conv.height, : conv.width * 3].reshape(conv.height, conv.width, 3)
    if rotation % 360:
        # The display matrix rotates counter-clockwise by `rotation` degrees; players (and
        # decord, OpenCV, torchcodec) show the turned picture, so do we. cv2.rotate gives the
        # same pixels as np.rot90 + copy at 1/40 of the cost (7 ms per 720p frame).
        rgb = _rotate(rgb, rotation)
    if out is None:
        return np.array(rgb)  # a copy: the converted frame's buffer is reused by swscale
    out[...] = rgb
    return out


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    import cv2

    code = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    return cv2.rotate(np.ascontiguousarray(rgb), code[rotation % 360])


def _plan(info: VideoInfo, wanted: list[int]) -> list[tuple[SeekPoint | None, list[int]]]:
    """Split sorted ``wanted`` into decode runs: continue, or jump to a later verified keyframe.

    The first run starts from the file's beginning when no seek point at or before its first
    index exists. A jump is taken whenever the keyframe before the next wanted frame lies beyond
    the decoder's position, which always decodes fewer frames.
    """
    starts = [sp.frame_index for sp in info.seek_points]
    runs: list[tuple[SeekPoint | None, list[int]]] = []
    pos = -1  # next index the decoder would give; -1: nothing opened yet
    for w in wanted:
        k = bisect_right(starts, w) - 1
        sp = info.seek_points[k] if k >= 0 else None
        if pos < 0:  # a fresh file decodes from frame 0 without a seek
            runs.append((sp if sp is not None and sp.frame_index > 0 else None, [w]))
        elif sp is not None and sp.frame_index > pos:
            runs.append((sp, [w]))
        else:
            runs[-1][1].append(w)
        pos = w + 1
    return runs


def _read_pyav(
    p: Path, info: VideoInfo, wanted: list[int], deadline: float, buf: np.ndarray | None
) -> dict[int, np.ndarray]:
    """Frames ``wanted`` (sorted, unique); written into ``buf[k]`` for ``wanted[k]`` if given."""
    slots = None if buf is None else {i: buf[k] for k, i in enumerate(wanted)}
    if info.is_frame_folder:  # every image stands alone: exact by construction
        out: dict[int, np.ndarray] = {}
        for i, f in frame_folder.iter_images(p, info.frame_files, wanted):
            _check_deadline(deadline, p, "read")
            out[i] = _to_rgb(f, 0, None if slots is None else slots[i])
        return out
    try:
        return _read_pyav_plan(p, info, _plan(info, wanted), deadline, slots)
    except _SeekMismatch:
        # The file changed behaviour since probe (or a decoder is not deterministic): never
        # return a guessed frame; decode from the start instead.
        return _read_pyav_plan(p, info, [(None, wanted)], deadline, slots)


def _read_pyav_plan(
    p: Path,
    info: VideoInfo,
    runs: list[tuple[SeekPoint | None, list[int]]],
    deadline: float,
    slots: dict[int, np.ndarray] | None,
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    h = _handle(p, info)
    try:
        for sp, run in runs:
            if sp is None and not h.fresh:
                # Decoding "from the start" needs a fresh file or a seek point at frame 0.
                sp0 = info.seek_points[0] if info.seek_points else None
                if sp0 is not None and sp0.frame_index == 0:
                    sp = sp0
                else:
                    h = _handle(p, info, reopen=True)
            prime = info.prime_headers if h.fresh and sp is not None else b""
            h.fresh = False
            need = iter(run)
            nxt = next(need)
            for i, f in _decode_from(h.c, h.vs, p, sp, deadline, prime=prime):
                if i == nxt:
                    out[i] = _to_rgb(f, info.rotation, None if slots is None else slots[i])
                    nxt = next(need, -1)
                    if nxt < 0:
                        break
            if nxt >= 0:
                raise errors.CorruptMediaError(
                    str(p), f"decoding stopped before frame {nxt} (probe counted {info.num_frames})"
                )
    except BaseException:
        _drop_handle(p, info)  # its state is unknown now
        raise
    return out


# Open files kept per thread (and per process: a forked data-loader worker starts with none).
# Opening costs 0.3-1 ms (more for MP4 with a large index), as much as decoding a dozen small
# frames, so random reads of the same files reuse them. Each is closed when evicted.
_OPEN_FILES_PER_THREAD = 4


@dataclass
class _Handle:
    c: av.container.InputContainer
    vs: av.video.stream.VideoStream
    fresh: bool = True  # nothing read since it was opened


def _handles() -> OrderedDict[tuple[str, int, int], _Handle]:
    if getattr(_LOCAL, "pid", None) != os.getpid():
        _LOCAL.pid = os.getpid()
        _LOCAL.handles = OrderedDict()
    handles: OrderedDict[tuple[str, int, int], _Handle] = _LOCAL.handles
    return handles


def _handle(p: Path, info: VideoInfo, *, reopen: bool = False) -> _Handle:
    handles = _handles()
    key = (info.path, info.size_bytes, info.mtime_ns)
    h = handles.get(key)
    if h is not None and not reopen:
        handles.move_to_end(key)
        return h
    if h is not None:
        _drop_handle(p, info)
    c = _open(p)
    h = _Handle(c=c, vs=_video_stream(c, p))
    handles[key] = h
    while len(handles) > _OPEN_FILES_PER_THREAD:
        handles.popitem(last=False)[1].c.close()
    return h


def _drop_handle(p: Path, info: VideoInfo) -> None:
    h = _handles().pop((info.path, info.size_bytes, info.mtime_ns), None)
    if h is not None:
        h.c.close()


# --------------------------------------------------------------------------------------------
# Other backends. Each returns {index: (H, W, 3) uint8 RGB} for sorted unique ``wanted``.
# --------------------------------------------------------------------------------------------
def _read_decord(p: Path, info: VideoInfo, wanted: list[int]) -> dict[int, np.ndarray]:
    decord = _backend_module("decord", p)
    vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=1)
    try:
        batch = vr.get_batch(wanted).asnumpy()
    except decord.DECORDError as e:
        raise errors.CorruptMediaError(str(p), f"decord failed: {e}") from None
    finally:
        del vr
    return {i: batch[j] for j, i in enumerate(wanted)}


def _read_opencv(p: Path, info: VideoInfo, wanted: list[int]) -> dict[int, np.ndarray]:
    cv2 = _backend_module("opencv", p)
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    out: dict[int, np.ndarray] = {}
    try:
        if not cap.isOpened():
            raise errors.NotMediaError(str(p), "OpenCV cannot open the file")
        pos = 0
        for i in wanted:
            if i != pos:  # OpenCV's own (timestamp-based) seek, as users call it
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            if not ok:
                raise errors.CorruptMediaError(str(p), f"OpenCV could not read frame {i}")
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            pos = i + 1
    finally:
        cap.release()
    return out


def _read_torchcodec(p: Path, info: VideoInfo, wanted: list[int]) -> dict[int, np.ndarray]:
    decoder_cls = _backend_module("torchcodec", p)
    dec = decoder_cls(
        str(p),
        stream_index=info.video_stream_index,
        seek_mode="exact",
        num_ffmpeg_threads=1,
        dimension_order="NHWC",
    )
    batch = dec.get_frames_at(wanted).data.numpy()
    return {i: batch[j] for j, i in enumerate(wanted)}


_OTHER_READERS = {"decord": _read_decord, "opencv": _read_opencv, "torchcodec": _read_torchcodec}


def _backend_module(name: str, p: Path) -> Any:
    try:
        return _import_backend(name)
    except Exception as e:  # noqa: BLE001
        raise errors.BackendUnavailableError(
            f"{p}: backend {name!r} is not installed or does not load ({e}); "
            f"installed: {available_backends()}"
        ) from None


# --------------------------------------------------------------------------------------------
# read_audio
# --------------------------------------------------------------------------------------------


def clear_caches() -> None:
    """Forget cached probe results and close this thread's open files."""
    with _PROBE_LOCK:
        _PROBE_CACHE.clear()
    handles = _handles()
    while handles:
        handles.popitem()[1].c.close()
