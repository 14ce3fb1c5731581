"""``probe``: decode a file once, count its frames, and verify every keyframe as a seek target.

Part of :mod:`avssl.data.decode` (the one door; import from there).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from avssl import errors
from avssl.data import frame_folder
from avssl.data.decode.audio import _audio_info, _audio_stats_add, _AudioStats
from avssl.data.decode.chains import (
    CHAIN_CODECS,
    NAL_CODECS,
    nal_length_size,
    packet_is_reference,
    reference_map,
)
from avssl.data.decode.reader import (
    DEFAULT_TIMEOUT_S,
    _check_deadline,
    _decode_from,
    _demux,
    _fingerprint,
    _open,
    _SeekMismatch,
    _truncation,
    _video_stream,
    check_source,
)
from avssl.types import FRAME_FOLDER_CONTAINER, SeekPoint, VideoInfo

_MPEG4_VOP = b"\x00\x00\x01\xb6"


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
    types: list[int] = field(default_factory=list)  # picture type of each frame (display order)
    packet_pts: list[int | None] = field(default_factory=list)  # per packet with data
    packet_refs: list[bool | None] = field(default_factory=list)  # H.264/HEVC: from NAL headers
    nal_length: int = 0  # H.264/HEVC: bytes of the NAL length prefix, 0 for Annex B
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
        seek_points = _verify_seek_points(p, sp, prime, deadline)
        audio = tuple(
            _audio_info(s, audio_acc[s.index]) for s in astreams if audio_acc[s.index].samples > 0
        )
        video_end = pts_s[-1] + (1.0 / fps if fps > 0 else 0.0)
        rotation = sp.rotation
        codec = vs.codec_context.name
        frame_refs, frame_pts = reference_map(codec, pts, sp.types, sp.packet_pts, sp.packet_refs)
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
            frame_refs=frame_refs,
            frame_pts=frame_pts,
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
    if vs.codec_context.name in CHAIN_CODECS:
        sp.nal_length = nal_length_size(vs.codec_context.name, vs.codec_context.extradata)
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
                    sp.types.append(int(f.pict_type))
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
    codec = vs.codec_context.name
    sp.packet_pts.append(pk.pts)
    if codec in NAL_CODECS:
        sp.packet_refs.append(packet_is_reference(codec, bytes(pk), sp.nal_length))
    else:
        sp.packet_refs.append(None)
    if codec == "mpeg4":
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


def _verify_seek_points(p: Path, sp: _Pass, prime: bytes, deadline: float) -> tuple[SeekPoint, ...]:
    """Seek to every keyframe and keep those that reproduce the sequential decode; note on each
    whether the decoder named the frames after it as in the sequential pass (``names_frames``).

    Design notes: docs/design/data.md, "Verifying seek points"."""
    key_packets, keyframes, prints = sp.key_packets, sp.keyframes, sp.prints
    if len(key_packets) != len(keyframes):
        return ()  # ambiguous pairing: read from the start only (exact, slower)
    kept: list[SeekPoint] = []
    for kp, idx in reversed(list(zip(key_packets, keyframes, strict=True))):
        end = kept[-1].frame_index if kept else len(prints)
        for ts in dict.fromkeys(t for t in (kp.pts, kp.dts) if t is not None):
            cand = SeekPoint(ts=ts, frame_index=idx, packet_pos=kp.pos, fingerprint=prints[idx])
            ok, named = _reproduces(p, cand, end, sp, prime, deadline)
            if ok:
                kept.append(replace(cand, names_frames=named))
                break
    return tuple(reversed(kept))


def _reproduces(
    p: Path, seek: SeekPoint, end: int, sp: _Pass, prime: bytes, deadline: float
) -> tuple[bool, bool]:
    """(the frames from ``seek`` to ``end`` match the sequential pass, and so do their pts)."""
    nxt = seek.frame_index
    named = True
    try:
        with _open(p) as c:
            vs = _video_stream(c, p)
            for i, f in _decode_from(c, vs, p, seek, deadline, prime=prime, check_pos=True):
                if i >= end or _fingerprint(f) != sp.prints[i]:
                    break
                named = named and f.pts == sp.pts[i]
                nxt = i + 1
    except (_SeekMismatch, errors.CorruptMediaError, av.error.FFmpegError):
        return False, False
    return nxt >= end, named
