"""Opening media safely: the checks every decoder entry runs before FFmpeg sees a file.

Part of :mod:`avssl.data.decode` (the one door; import from there): which paths are files or
frame folders, the container's own size fields against the file's (a cut is visible before
decoding; bytes after a complete MP4 movie are not a cut), opening with PyAV (fast or full
probing) with every failure turned into a typed error that names the file, the first video
stream, a demuxer that frees its packets, and the wall-clock deadline of a decode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av

from avssl import errors
from avssl.data.suffixes import MEDIA_SUFFIXES

#: Wall-clock bound for one probe or one read; a decode that takes longer raises
#: DecodeTimeoutError instead of hanging a data-loader worker.
DEFAULT_TIMEOUT_S = 120.0


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    st = errors.check_file_entry(p)  # links, folders, FIFOs (would block the demuxer), permissions
    if st.st_size == 0:
        raise errors.EmptyMediaError(str(p), "file is empty (0 bytes)")
    return p


_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp", b"pdin", b"uuid"}


def _truncation(p: Path, size: int) -> str | None:
    """The container's own size fields against the file's size (None when they agree).

    Decoders stop quietly at a cut: an AVI cut mid-stream decodes its first half without an
    error. AVI/WAV declare the RIFF size in their first bytes and MP4/MOV declare every
    top-level box's size, so a cut is visible before decoding.
    """
    with open(p, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
            declared = int.from_bytes(head[4:8], "little") + 8
            if declared > 8 and declared > size + 1:  # +1: RIFF pads to even sizes
                return f"RIFF header declares {declared} bytes but the file has {size}"
            return None
        if head[4:8] not in _ISO_BOXES:
            return None
        return _iso_truncation(f, size)


#: Top-level boxes that hold media or its index: one cut short means samples are gone.
_ISO_MEDIA_BOXES = {b"moov", b"mdat", b"moof"}


def _iso_truncation(f: Any, size: int) -> str | None:
    """Walk an MP4/MOV's top-level boxes. After a complete ``moov`` and ``mdat`` the media is
    whole: bytes that are not a box there (trailing junk some tools append) or a cut
    non-media box (``free``, ``udta``) are ignored, as players ignore them. A cut ``moov``,
    ``mdat`` or ``moof``, or junk before the media is complete, is truncation."""
    pos = 0
    seen: set[bytes] = set()
    while pos + 8 <= size:
        f.seek(pos)
        box = f.read(16)
        box_size, kind = int.from_bytes(box[:4], "big"), box[4:8]
        name = kind.decode("latin-1")
        complete = {b"moov", b"mdat"} <= seen
        if not _is_box_type(kind):
            if complete:
                return None  # trailing bytes after the whole movie
            return f"bytes at {pos} are not an MP4 box ({name!r}) before the movie is complete"
        if box_size == 1 and len(box) == 16:
            box_size = int.from_bytes(box[8:16], "big")
        elif box_size == 0:  # extends to the end of the file
            return None
        if box_size < 8:
            return f"box '{name}' at byte {pos} has an invalid size {box_size}"
        if pos + box_size > size:
            if complete and kind not in _ISO_MEDIA_BOXES:
                return None
            return f"box '{name}' at byte {pos} declares {box_size} bytes, file ends at {size}"
        seen.add(kind)
        pos += box_size
    return None


def _is_box_type(kind: bytes) -> bool:
    """Four printable characters (letters, digits, space, '©'), as every ISO box type is."""
    return len(kind) == 4 and all(
        48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b in (32, 0xA9) for b in kind
    )


_FAST_OPEN = {"probesize": "32", "analyzeduration": "0"}


# FFmpeg's default probing (5 MB, 5 s), for audio the fast open (_FAST_OPEN) leaves unknown.
_FULL_PROBE = {"probesize": str(5 << 20), "analyzeduration": "5000000"}


def _open(path: Path, *, full: bool = False) -> av.container.InputContainer:
    """Open a media file. Reads use the fast open: stream parameters from the container
    headers (the default probing decodes frames to guess more: 43 ms of a 720p file's open,
    for nothing a read uses). ``full`` probes as FFmpeg does by default, which MPEG-PS/TS and
    FLV need to see every stream (they create streams as packets turn up): probe uses it."""
    try:
        opts = _FULL_PROBE if full else _FAST_OPEN
        return av.open(str(path), mode="r", metadata_errors="ignore", container_options=opts)
    except av.error.FFmpegError as e:
        raise errors.NotMediaError(str(path), f"cannot open as media ({e})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise errors.NotMediaError(str(path), f"cannot open as media ({e})") from None


def _video_stream(c: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    streams = [s for s in c.streams.video if s.codec_context is not None]
    if not streams:
        kinds = ", ".join(s.type for s in c.streams) or "none"
        raise errors.NoVideoStreamError(str(path), f"no video stream (streams: {kinds})")
    vs = streams[0]
    vs.thread_type = "SLICE"  # frame threading would add latency and reorder nothing useful here
    vs.codec_context.thread_count = 1  # parallelism comes from data-loader workers
    return vs


def _demux(c: av.container.InputContainer, *streams: Any) -> Iterator[av.Packet]:
    """``c.demux(*streams)``, whose native buffers are freed even when the loop stops early.

    PyAV's ``demux`` frees its read packet in a ``finally`` that runs when the generator is
    exhausted or ``close()``d, but not when an unfinished one is merely dropped: every ``break``
    or ``return`` out of a bare ``for pk in c.demux(...)`` leaked that packet (~150 B of C heap,
    up to 4 kB of RSS with the pages it pins; PyAV 18.1, BENCHMARKS.md "Memory soak"). A Python
    generator is closed when dropped, and ``yield from`` closes the one it delegates to.
    """
    yield from c.demux(*streams)


def check_source(path: str | os.PathLike[str]) -> Path:
    """A video path checked for reading: a frame folder as it is, any other path through
    :func:`_check_file` (typed errors for links, FIFOs, folders named like files, ...)."""
    return Path(path) if _is_folder(path) else _check_file(path)


def _is_folder(path: str | os.PathLike[str]) -> bool:
    """A folder taken as a frame folder: any, except one named like a media file (``x.mp4``,
    ``x.wav``), which is refused as not a file."""
    return os.path.isdir(path) and not os.fspath(path).lower().endswith(_MEDIA_FILE_SUFFIXES)


#: A folder named like a media file (``clip.mp4``, ``x.wav``, ``x.png``) is no frame folder.
_MEDIA_FILE_SUFFIXES = MEDIA_SUFFIXES


def _check_deadline(deadline: float, p: Path, what: str) -> None:
    if time.monotonic() > deadline:
        raise errors.DecodeTimeoutError(str(p), f"{what} exceeded its time limit")
