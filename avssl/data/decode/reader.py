"""The PyAV reader: safe opening, decoded pictures to arrays, and reads that plan the fewest
frames to decode, seek only to verified keyframes and count frames from there (never trusting a
timestamp), with open files kept per thread.

Part of :mod:`avssl.data.decode` (the one door; import from there). Before FFmpeg sees a file:
which paths are files or frame folders, and the container's own size fields against the file's
(a cut is visible before decoding; bytes after a complete MP4 movie are not a cut).
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from avssl import errors
from avssl.data import frame_folder
from avssl.data.decode.chains import frame_names
from avssl.data.suffixes import MEDIA_SUFFIXES
from avssl.types import SeekPoint, VideoInfo

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
    ``x.wav``, ``x.png``), which is refused as not a file."""
    return os.path.isdir(path) and not os.fspath(path).lower().endswith(MEDIA_SUFFIXES)


def _check_deadline(deadline: float, p: Path, what: str) -> None:
    if time.monotonic() > deadline:
        raise errors.DecodeTimeoutError(str(p), f"{what} exceeded its time limit")


#: Pixel formats whose first plane is the 8-bit luma: read straight from the decoder.
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


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (``(H, W)`` or ``(H, W, C)``) at ``size=(height, width)``: area interpolation
    when shrinking, bilinear when growing; the frame itself when it already has that size. The
    one resize of every backend, :func:`iter_frames` and the datasets."""
    import cv2

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    interp = cv2.INTER_AREA if h < frame.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(frame, (w, h), interpolation=interp)


_LOCAL = threading.local()  # this thread's reformatter and open files


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


def _fingerprint(frame: av.VideoFrame) -> int:
    """Checksum of the frame's luma (plane 0) on a 2x2-subsampled grid, padding excluded."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return zlib.crc32(np.ascontiguousarray(rows[::2, : plane.width : 2]).data)


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


def _seek(
    c: av.container.InputContainer,
    vs: av.video.stream.VideoStream,
    sp: SeekPoint | None,
    prime: bytes,
) -> None:
    """Seek to a verified seek point (none: the decoder is at the start of a fresh file),
    priming a packed-B decoder with the stream's headers first."""
    if sp is not None:
        if prime:
            _prime(vs, prime)
        c.seek(sp.ts, stream=vs, backward=True, any_frame=False)


def _decode_from(
    c: av.container.InputContainer,
    vs: av.video.stream.VideoStream,
    p: Path,
    sp: SeekPoint | None,
    deadline: float,
    *,
    prime: bytes = b"",
    check_pos: bool = False,
) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Yield (display index, frame) from a seek point (or from the start of a fresh file).

    After a seek, frames before the first key frame (leading frames of an open GOP, which refer
    to pictures before the keyframe) are dropped and the key frame's checksum is checked again;
    a mismatch raises _SeekMismatch rather than returning a wrong frame.
    """
    started = sp is None
    idx = 0 if sp is None else sp.frame_index
    _seek(c, vs, sp, prime)
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
    """Frames ``wanted`` (sorted, unique); written into ``buf[k]`` for ``wanted[k]`` if given.

    Where the probe recorded reference chains (``info.frame_refs``), each run decodes only the
    reference frames on the way and the wanted frames (:func:`_decode_chain`); a read whose
    frames the timestamps fail to name is done again counting every frame."""
    slots = None if buf is None else {i: buf[k] for k, i in enumerate(wanted)}
    if info.is_frame_folder:  # every image stands alone: exact by construction
        out: dict[int, np.ndarray] = {}
        for i, f in frame_folder.iter_images(p, info.frame_files, wanted):
            _check_deadline(deadline, p, "read")
            out[i] = _to_rgb(f, 0, None if slots is None else slots[i])
        return out
    chain = bool(info.frame_refs) and len(info.frame_pts) == info.num_frames
    runs = _plan(info, wanted)
    if chain:
        try:
            return _read_pyav_plan(p, info, runs, deadline, slots, chain=True)
        except _SeekMismatch:
            pass  # timestamps did not name the frames: count them from the same seek points
    try:
        return _read_pyav_plan(p, info, runs, deadline, slots, chain=False)
    except _SeekMismatch:
        # The file changed behaviour since probe (or a decoder is not deterministic): never
        # return a guessed frame; decode every frame from the start instead.
        return _read_pyav_plan(p, info, [(None, wanted)], deadline, slots, chain=False)


def _read_pyav_plan(
    p: Path,
    info: VideoInfo,
    runs: list[tuple[SeekPoint | None, list[int]]],
    deadline: float,
    slots: dict[int, np.ndarray] | None,
    *,
    chain: bool,
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    h = _handle(p, info)
    names = (
        frame_names((info.path, info.size_bytes, info.mtime_ns), info.frame_pts) if chain else {}
    )
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
            start = 0 if sp is None else sp.frame_index
            # skip only where there is something to skip (not for whole stretches, e.g. a video)
            skipping = (
                chain
                and (sp is None or sp.names_frames)
                and len(run) <= run[-1] - start
                and "0" in info.frame_refs[start : run[-1]]
            )
            if skipping:
                frames = _decode_chain(h.c, h.vs, p, sp, deadline, run, info, names, prime=prime)
            else:
                frames = _decode_from(h.c, h.vs, p, sp, deadline, prime=prime)
            need = iter(run)
            nxt = next(need)
            try:
                for i, f in frames:
                    if i < nxt:
                        continue
                    if i > nxt:  # a wanted frame did not come out (only when skipping)
                        raise _SeekMismatch(nxt)
                    out[i] = _to_rgb(f, info.rotation, None if slots is None else slots[i])
                    nxt = next(need, -1)
                    if nxt < 0:
                        break
            finally:
                frames.close()  # now: a skipping run switches skipping off before the next run
            if nxt >= 0:
                if skipping:
                    raise _SeekMismatch(nxt)
                raise errors.CorruptMediaError(
                    str(p), f"decoding stopped before frame {nxt} (probe counted {info.num_frames})"
                )
    except BaseException:
        _drop_handle(p, info)  # its state is unknown now
        raise
    return out


def _decode_chain(
    c: av.container.InputContainer,
    vs: av.video.stream.VideoStream,
    p: Path,
    sp: SeekPoint | None,
    deadline: float,
    run: list[int],
    info: VideoInfo,
    names: dict[int, int],
    *,
    prime: bytes = b"",
) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Yield (display index, frame) for the reference frames and the frames of ``run`` from a
    seek point (or the start of a fresh file) on, skipping the other non-reference frames.

    Before each packet goes to the decoder, the packet's timestamp names the picture it decodes
    (``names``, checked by the probe); skipping is switched on for a non-reference picture that
    is not wanted (FFmpeg ``skip_frame = NONREF``) and off otherwise. In a packed-B AVI one
    packet carries two B-pictures and the decoder keeps the second for the next packet (an
    N-VOP placeholder): skipping the first drops both, so a packet followed by a wanted picture's
    packet is decoded (a one-packet look-ahead). Frames out are named by their timestamps: an
    unknown one, one out of display order, or a seek that does not land on its keyframe raises
    _SeekMismatch (the caller then decodes everything, counting frames).
    """
    start = 0 if sp is None else sp.frame_index
    want, refs, packed = set(run), info.frame_refs, info.packed_b_frames
    cc = vs.codec_context
    _seek(c, vs, sp, prime)
    skipping = False
    cc.skip_frame = "DEFAULT"
    started = sp is None
    prev = start - 1
    held: av.Packet | None = None  # the packed-B look-ahead: a packet waiting for the next one

    def picture(pk: av.Packet | None) -> int:
        return names.get(pk.pts, -1) if pk is not None and pk.size else -1  # type: ignore[arg-type]

    try:
        for nxt in _demux(c, vs):
            _check_deadline(deadline, p, "read")
            if packed:
                pk, held = held, nxt
                if pk is None:
                    continue
            else:
                pk = nxt
            i = picture(pk)
            skip = i >= 0 and refs[i] == "0" and i not in want
            if skip and packed and picture(held) in want:
                skip = False  # it carries the wanted picture that the next packet names
            if skip != skipping:
                cc.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            try:
                frames = cast(list[av.VideoFrame], pk.decode())
                if packed and held is not None and not held.size:  # the end: flush too
                    frames += cast(list[av.VideoFrame], held.decode())
            except av.error.FFmpegError as e:
                raise errors.CorruptMediaError(
                    str(p), f"decode failed near frame {i}: {e}"
                ) from None
            for f in frames:
                j = names.get(f.pts, -1) if f.pts is not None else -1
                if 0 <= j < start and not started:
                    continue  # a leading picture of an open GOP, before the keyframe
                if j <= prev:
                    raise _SeekMismatch(start)
                if not started:
                    if j != start or _fingerprint(f) != sp.fingerprint:  # type: ignore[union-attr]
                        raise _SeekMismatch(start)
                    started = True
                prev = j
                yield j, f
    finally:
        if skipping:
            cc.skip_frame = "DEFAULT"


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
