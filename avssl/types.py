"""Small result types shared by the whole toolkit.

Layout conventions (see STYLE.md): inside ``avssl.data`` clips are ``(T, C, H, W)`` uint8 and
audio is ``(channels, samples)`` float32; conversion to a model's layout happens once, later.
Times are in seconds (``*_s``), rates in Hz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: ``VideoInfo.container`` of a folder of numbered images (avssl.data.frame_folder).
FRAME_FOLDER_CONTAINER = "frames"


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of a media file, as found by :func:`avssl.data.decode.probe`."""

    index: int  # stream index inside the container
    codec: str
    sample_rate: int
    channels: int
    duration_s: float  # measured from the decoded samples, not the header
    peak_dbfs: float  # loudest sample in dB full scale (-inf for digital silence)
    audible: bool  # peak above the audibility threshold (decode.AUDIBLE_PEAK_DBFS)


@dataclass(frozen=True)
class SeekPoint:
    """A place the keyframe-aware reader may seek to: a keyframe packet and its display index.

    ``ts`` is in the video stream's time base and was checked during probe: seeking there and
    decoding gives frame ``frame_index`` as the first keyframe out of the decoder.
    """

    ts: int
    frame_index: int
    packet_pos: int  # byte offset of the keyframe packet (-1 when the demuxer gives none)
    fingerprint: int  # checksum of the keyframe's subsampled luma, re-checked after each seek
    # Whether a read that skips non-reference frames may start here: after this seek the
    # decoder gave every frame the timestamp it gives it in a sequential decode (checked by the
    # probe; MPEG-PS can misname the first frames after a seek). Else reads count frames here.
    names_frames: bool = False


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`avssl.data.decode.probe` learns about a media file.

    ``num_frames`` is counted by decoding the whole video stream; ``header_num_frames`` is what
    the container claims (0 when it claims nothing) and may differ: packed B-frame AVI files
    carry placeholder packets, and real files' headers can be wrong.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    container: str  # demuxer name, e.g. "avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
    codec: str  # video codec name, e.g. "mpeg4", "h264", "vp8"
    codec_tag: str  # fourcc where the container has one ("XVID", "avc1"), else ""
    width: int  # as displayed (after rotation)
    height: int
    fps: float  # average frame rate: (num_frames - 1) / (last pts - first pts) when pts are usable
    num_frames: int
    header_num_frames: int
    num_packets: int  # video packets with data (placeholders such as N-VOPs included)
    pts_s: tuple[float, ...]  # presentation time of each frame, in display order
    pts_trusted: bool  # False when the container's pts are unusable (AVI) and pts_s = index / fps
    keyframes: tuple[int, ...]  # display indices of keyframes (frames the decoder marks key)
    seek_points: tuple[SeekPoint, ...]  # keyframes that were verified as seek targets
    b_frames: bool  # decode order differs from display order
    packed_b_frames: bool  # DivX/Xvid "packed bitstream": several VOPs in one packet
    vfr: bool  # frame durations vary by more than 1% of the mean
    duration_s: float
    video_stream_index: int
    audio: tuple[AudioStreamInfo, ...] = field(default_factory=tuple)
    rotation: int = 0  # display rotation, degrees counter-clockwise; frames are returned turned
    num_video_streams: int = 1  # avssl reads the first (video_stream_index)
    # Packed-B MPEG-4 only: the stream's header bytes (VOL + DivX user data), fed to a fresh
    # decoder before a seek so that it knows the stream is packed.
    prime_headers: bytes = b""
    # Damage the decoder concealed (errors it logged, packets it flagged) and the display
    # indices of the frames it touched: the damaged picture and the frames predicted from it
    # up to the next keyframe. Samplers avoid those frames; ``avssl-prep --strict-decode``
    # quarantines the file instead.
    decode_warnings: int = 0
    damaged_frames: tuple[int, ...] = ()
    # AVI index entries without data (capture tools write them for dropped frames): the
    # previous picture is held for that long. Time, not lost frames; pts_s has the gaps.
    held_frames: int = 0
    # Reference chains (avssl.data.decode.chains): one character per display index, "1" for a
    # frame that later frames may be predicted from, "0" for one that none is; and each frame's
    # timestamp as the decoder returns it (stream ticks), which names the frames when a read
    # skips the non-reference ones. Both empty: reads decode every frame (another codec, nothing
    # to skip, timestamps that cannot name frames, or a manifest written before they existed).
    frame_refs: str = ""
    frame_pts: tuple[int, ...] = ()
    # A frame folder (container "frames"): its image files in frame order.
    frame_files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``prime_headers`` as hex) for manifests; see :meth:`from_dict`."""
        d = asdict(self)
        d["prime_headers"] = self.prime_headers.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoInfo:
        """Rebuild a probe result saved by :meth:`to_dict` (e.g. from ``probe.jsonl``)."""
        d = dict(d)
        d["pts_s"] = tuple(d["pts_s"])
        d["keyframes"] = tuple(d["keyframes"])
        d["seek_points"] = tuple(SeekPoint(**s) for s in d["seek_points"])
        d["audio"] = tuple(AudioStreamInfo(**a) for a in d.get("audio", ()))
        d["prime_headers"] = bytes.fromhex(d.get("prime_headers", ""))
        d["damaged_frames"] = tuple(d.get("damaged_frames", ()))
        d["frame_files"] = tuple(d.get("frame_files", ()))
        d["frame_pts"] = tuple(d.get("frame_pts", ()))
        return cls(**d)

    @property
    def is_frame_folder(self) -> bool:
        return self.container == FRAME_FOLDER_CONTAINER

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def audible(self) -> bool:
        return any(a.audible for a in self.audio)

    @property
    def kind(self) -> str:
        """Short description of the file's decoding kind, used to pick exact backends."""
        parts = [self.container.split(",")[0], self.codec]
        if self.packed_b_frames:
            parts.append("packed-b")
        elif self.b_frames:
            parts.append("b-frames")
        if self.vfr:
            parts.append("vfr")
        return "/".join(parts)


@dataclass
class Clip:
    """Frames of one video: ``data`` uint8 ``(T, C, H, W)`` RGB, in the order asked for.

    ``data`` is in channels_last memory format (its strides are those of ``(T, H, W, C)``),
    as decoders produce it and as convolutions on the GPU prefer it; call ``.contiguous()``
    where a consumer needs the default strides.
    """

    data: torch.Tensor
    pts_s: torch.Tensor  # float64 (T,)
    indices: torch.Tensor  # int64 (T,), the display indices that were asked for
    backend: str = ""  # which backend decoded it


@dataclass
class Audio:
    """A window of sound: ``data`` float32 ``(channels, samples)`` at ``sample_rate`` Hz.

    ``start_s`` is the time of the first sample on the media's time axis (the same axis as
    :attr:`Clip.pts_s`).
    """

    data: torch.Tensor
    sample_rate: int
    start_s: float

    @property
    def duration_s(self) -> float:
        return self.data.shape[-1] / self.sample_rate
