"""The one door to the video and audio decoders.

Public API (every other module and every user calls only these):

- :func:`probe` ``(path) -> VideoInfo``: streams, exact frame count (counted by decoding), per-frame
  times, keyframes and *verified* seek points, audio streams with an audibility flag.
- :func:`read_frames` ``(path, indices) -> Clip``: RGB uint8 ``(T, C, H, W)`` in the order asked.
- :func:`read_audio` ``(path, start_s, duration_s, sample_rate=...) -> Audio``: float32
  ``(channels, samples)``, sample-exact at the requested rate.

**Exact frames are the contract.** On real UCF-101 files (Xvid AVI with packed B-frames) several
decoders return wrong frames after a seek without raising (../shared/METHODS.md). The reference
backend here, ``pyav``, never trusts a timestamp it has not checked to name a frame: frames are
*counted* in display order from a keyframe, and :func:`probe` decodes the file once sequentially,
then seeks to every keyframe and checks that every frame decoded from there matches the sequential
decode (a checksum of subsampled luma). Keyframes that fail are not used as seek targets. Between
a seek point and a wanted frame the reader decodes only the reference chain (the frames others
are predicted from, plus the wanted ones): the probe records which frames are references and the
timestamps that name them (checked against the sequential decode, also after each seek point),
and a read that cannot name a frame by them counts frames instead (docs/design/data.md, "Decoding
only the reference chain"). ``backend="auto"`` is
``pyav``: no other backend was faster on the measured files (:func:`choose_backend`). Other
backends (decord, OpenCV, torchcodec) may be named only for kinds of file on which they passed
the exact-frame suite (tests/test_decode_exact.py); :func:`backend_refusal` says why one is
refused.

The private modules (``reader``, ``chains``, ``probing``, ``audio``) are imported from here only.
Design notes (random access, module layout): docs/design/data.md, "avssl.data.decode".

Audio: one mono mix everywhere, the *mean* of the channels (librosa/soundfile convention, not
(L+R)/sqrt 2). Windows that run past either end of the stream are zero-padded
(``out_of_range="pad"``) or refused (``"error"``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch

from avssl import errors
from avssl.data import frame_folder
from avssl.data.decode.audio import AUDIBLE_PEAK_DBFS, probe_audio, read_audio
from avssl.data.decode.probing import (
    _PROBE_CACHE,
    _PROBE_LOCK,
    _unchanged,
    media_identity,
    probe,
)
from avssl.data.decode.reader import (
    DEFAULT_TIMEOUT_S,
    _check_deadline,
    _decode_from,
    _gray,
    _handles,
    _open,
    _read_pyav,
    _rotate,
    _to_rgb,
    _video_stream,
    check_source,
    resize,
)
from avssl.data.suffixes import VIDEO_SUFFIXES
from avssl.types import Clip, VideoInfo

__all__ = [
    "AUDIBLE_PEAK_DBFS",
    "BACKENDS",
    "VIDEO_SUFFIXES",
    "DEFAULT_TIMEOUT_S",
    "BackendName",
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
    "resize",
]


BackendName = Literal["auto", "pyav", "decord", "opencv", "torchcodec"]
BACKENDS: tuple[str, ...] = ("pyav", "decord", "opencv", "torchcodec")


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


def backend_refusal(backend: str, info: VideoInfo) -> str | None:
    """Why ``backend`` may not decode this file (None when it may)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    for name, refuses, reason in _REFUSALS:
        if name == backend and refuses(info):
            return f"{reason} (file kind {info.kind})"
    return None


def choose_backend(info: VideoInfo) -> str:
    """The backend ``backend="auto"`` uses for this file: always ``pyav``, by measurement.

    BENCHMARKS.md (per-file tables, 1 core): on packed-B Xvid AVI (UCF-101) decord and torchcodec
    are refused (wrong frames) and OpenCV reads random 3-frame tuples at about a third of PyAV's
    speed (real UCF clip 31 vs 114 tuples/s); on H.264 MP4 the keyframe-aware PyAV reader was the
    fastest or within noise (15 %) of decord, OpenCV and torchcodec on every access pattern. It
    is also exact by construction (verified seek points), so no other backend earns the choice.
    """
    del info  # the same answer for every kind of file measured so far
    return "pyav"


# The other backends' readers. Each returns {index: (H, W, 3) uint8 RGB} for sorted unique
# ``wanted``.
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
    a manifest. ``backend="auto"`` is ``pyav`` (measured the fastest exact reader, see
    :func:`choose_backend`); naming a backend that is refused for this kind of file raises
    BackendRefusedError.
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
            out[j] = frames[i] if size is None else resize(frames[i], size)
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
            img = resize(img, size) if size is not None else img
            if not img.flags.owndata:
                img = img.copy()  # a view of the decoder's picture, which it reuses
        else:
            img = _to_rgb(f, info.rotation)
            if size is not None:
                img = resize(img, size)
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


def clear_caches() -> None:
    """Forget cached probe results and close this thread's open files."""
    with _PROBE_LOCK:
        _PROBE_CACHE.clear()
    handles = _handles()
    while handles:
        handles.popitem()[1].c.close()
