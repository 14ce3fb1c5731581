"""Reference chains: which frames later frames are predicted from, and how to name the frames a
decoder gives when it skips the others.

Part of :mod:`avssl.data.decode` (the one door; import from there). A *non-reference* frame
(MPEG-1/2/4 B-frames; H.264 pictures whose slices have ``nal_ref_idc`` 0; HEVC sub-layer
non-reference pictures) is never used to predict another frame, so a reader that wants frame
``t`` may tell the decoder to skip every non-reference frame between the seek point and ``t``
(FFmpeg's ``skip_frame = NONREF``, which skips exactly these) and still get ``t`` exactly. The
reader then cannot count frames to name them; it names them by the timestamp the decoder gives
each picture, which :func:`reference_map` checks during probe: the frames' timestamps must be
known, distinct, and each the timestamp of the packet that carries the picture (so the reader
knows, before handing a packet to the decoder, which display index it decodes).

Design notes: docs/design/data.md, "Decoding only the reference chain".
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence

#: Codecs whose reference structure the probe reads. MPEG-1/2/4 Part 2: a B-picture is never a
#: reference (the decoders skip exactly B under NONREF). H.264/HEVC: from the NAL headers, the
#: same fields FFmpeg's decoders test. Other codecs (VP8/9, AV1, MJPEG, ...) are read whole.
_B_NONREF_CODECS = frozenset({"mpeg4", "mpeg1video", "mpeg2video"})
NAL_CODECS = frozenset({"h264", "hevc"})
CHAIN_CODECS = _B_NONREF_CODECS | NAL_CODECS

_PICT_B = 3  # AVPictureType B


def _nal_headers(data: bytes, length_size: int) -> list[int]:
    """First header byte of every NAL unit of a packet: length-prefixed (MP4/MKV, ``length_size``
    bytes each) or, when ``length_size`` is 0, Annex B start codes (TS, AVI, raw)."""
    out = []
    if length_size:
        i, n = 0, len(data)
        while i + length_size <= n:
            size = int.from_bytes(data[i : i + length_size], "big")
            i += length_size
            if size <= 0 or i + size > n:
                break
            out.append(data[i])
            i += size
        return out
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        out.append(data[i + 3])
        i = data.find(b"\x00\x00\x01", i + 3)
    return out


def nal_length_size(codec: str, extradata: bytes | None) -> int:
    """Bytes of each NAL length prefix in the packets (``avcC``/``hvcC`` extradata), 0 for Annex
    B streams."""
    ex = extradata or b""
    if codec == "h264" and len(ex) > 4 and ex[0] == 1:
        return (ex[4] & 3) + 1
    if codec == "hevc" and len(ex) > 21 and ex[0] == 1:
        return (ex[21] & 3) + 1
    return 0


def packet_is_reference(codec: str, data: bytes, length_size: int) -> bool | None:
    """Whether the picture in this H.264/HEVC packet may be a reference (None: no picture).

    H.264: any slice with ``nal_ref_idc`` != 0 (types 1 and 5). HEVC: any slice NAL that is not
    a sub-layer non-reference type (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N, RSV_VCL_N10/12/14:
    the even types below 16, FFmpeg's ``ff_hevc_nal_is_nonref``)."""
    heads = _nal_headers(data, length_size)
    if codec == "h264":
        vcl = [b for b in heads if b & 0x1F in (1, 5)]
        return any(b & 0x60 for b in vcl) if vcl else None
    types = [(b >> 1) & 0x3F for b in heads]
    vcl = [t for t in types if t < 32]
    return any(t >= 16 or t % 2 for t in vcl) if vcl else None


def reference_map(
    codec: str,
    frame_pts: Sequence[int | None],
    pict_types: Sequence[int],
    packet_pts: Sequence[int | None],
    packet_refs: Sequence[bool | None],
) -> tuple[str, tuple[int, ...]]:
    """``(frame_refs, frame_pts)`` for :class:`~avssl.types.VideoInfo` from the probe's pass.

    ``frame_refs`` has one character per display index, ``"1"`` for a reference frame and
    ``"0"`` for a non-reference one; both are empty when the reader must decode every frame:
    another codec, no non-reference frame, or frames that timestamps cannot name (unknown or
    repeated, or a frame whose timestamp is no packet's). ``packet_*`` are per packet with data,
    in decode order (``packet_refs`` is used for H.264/HEVC only).
    """
    n = len(frame_pts)
    if codec not in CHAIN_CODECS or n == 0 or any(t is None for t in frame_pts):
        return "", ()
    pts = [int(t) for t in frame_pts if t is not None]
    known = [t for t in packet_pts if t is not None]
    if len(set(pts)) != n or len(set(known)) != len(known) or not set(pts) <= set(known):
        return "", ()
    if codec in _B_NONREF_CODECS:
        refs = ["0" if t == _PICT_B else "1" for t in pict_types]
    else:
        by_pts = {t: r for t, r in zip(packet_pts, packet_refs, strict=True) if t is not None}
        flags = [by_pts[t] for t in pts]
        if any(f is None for f in flags):
            return "", ()
        refs = ["1" if f else "0" for f in flags]
    if "0" not in refs:
        return "", ()
    return "".join(refs), tuple(pts)


_NAMES: OrderedDict[tuple[str, int, int], tuple[tuple[int, ...], dict[int, int]]] = OrderedDict()
_NAMES_KEPT = 64


def frame_names(key: tuple[str, int, int], frame_pts: tuple[int, ...]) -> dict[int, int]:
    """``{pts: display index}`` of a file (kept for the last few files read: a 10-minute video's
    table takes ~1 ms to build); rebuilt when another ``frame_pts`` comes for the same file."""
    kept = _NAMES.get(key)
    if kept is not None and (kept[0] is frame_pts or kept[0] == frame_pts):
        _NAMES.move_to_end(key)
        return kept[1]
    names = {t: i for i, t in enumerate(frame_pts)}
    _NAMES[key] = (frame_pts, names)
    while len(_NAMES) > _NAMES_KEPT:
        _NAMES.popitem(last=False)
    return names


def chain_frames(indices: Sequence[int], keyframes: Sequence[int], refs: str) -> tuple[int, int]:
    """(reference, non-reference) frames a decoder that skips the non-reference frames it does not
    want must decode for one read of ``indices`` on a fresh file: the reference chain, the
    reference-chain bound of benchmarks/decode.py.

    For each wanted frame in sorted order, from the keyframe at or before it or on from the frame
    after the last wanted one, whichever is later (as the read plan does): every reference frame
    up to it -- or, for a wanted non-reference frame, up to the reference after it that it is
    predicted from (decoded before it) -- and the wanted frame. Without ``refs`` (nothing to skip)
    every frame on the way counts as a reference: the sequential bound.
    """
    kf = sorted(keyframes) or [0]
    decoded: set[int] = set()
    pos = -1
    for w in sorted(set(indices)):
        k = kf[max(0, bisect_right(kf, w) - 1)]
        start = k if pos < 0 or k > pos else pos
        end = w
        if refs and refs[w] == "0":
            after = refs.find("1", w)
            end = after if after >= 0 else w
        decoded.update(i for i in range(start, end + 1) if not refs or refs[i] == "1")
        decoded.add(w)
        pos = w + 1
    nonref = sum(1 for i in decoded if refs and refs[i] == "0")
    return len(decoded) - nonref, nonref
