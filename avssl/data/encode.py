"""The one module that *encodes* media (:mod:`avssl.data.decode` decodes), all through PyAV.

MP3 in AVI keeps the encoder delay in the decoded audio (:data:`MP3_AVI_DELAY_SAMPLES`).
Design notes (reproducibility, audio alignment): docs/design/data.md, "avssl.data.encode".
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from avssl.data.divx import _Packer, _time_increment_bits

#: Container format for each file suffix.
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".m4a": "mp4", ".mov": "mov", ".avi": "avi",
            ".mkv": "matroska", ".mka": "matroska", ".webm": "webm", ".mp3": "mp3",
            ".wav": "wav", ".mpg": "mpeg", ".mpeg": "mpeg", ".vob": "vob", ".ts": "mpegts",
            ".mts": "mpegts", ".m2ts": "mpegts", ".ogv": "ogg", ".ogg": "ogg",
            ".mxf": "mxf", ".flv": "flv", ".3gp": "3gp", ".wmv": "asf",
            ".asf": "asf"}  # fmt: skip
#: Short codec names -> FFmpeg encoder names.
_VIDEO_ENCODERS = {"h264": "libx264", "avc": "libx264", "x264": "libx264", "vp8": "libvpx",
                   "vp9": "libvpx-vp9", "xvid": "mpeg4", "divx": "mpeg4"}  # fmt: skip
_AUDIO_ENCODERS = {"mp3": "libmp3lame", "opus": "libopus", "vorbis": "libvorbis"}
_DEFAULT_AUDIO = {".mp4": "aac", ".m4v": "aac", ".m4a": "aac", ".mov": "aac", ".mkv": "aac",
                  ".mka": "aac", ".avi": "libmp3lame", ".mp3": "libmp3lame", ".webm": "libopus",
                  ".wav": "pcm_s16le", ".mpg": "mp2", ".mpeg": "mp2", ".vob": "mp2",
                  ".ts": "aac", ".mts": "aac", ".m2ts": "aac", ".ogv": "vorbis",
                  ".ogg": "vorbis", ".mxf": "pcm_s16le", ".flv": "aac", ".3gp": "aac",
                  ".wmv": "wmav2", ".asf": "wmav2"}  # fmt: skip

#: Decoded MP3-in-AVI audio lags the input by LAME's encoder delay plus the decoder delay
#: (576 + 529 samples), because AVI has no field for it. Measured with PyAV; tests rely on it.
MP3_AVI_DELAY_SAMPLES = 1105

Codec = Literal["h264", "mpeg4", "vp8", "vp9", "ffv1", "mjpeg"] | str


def write_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    fps: float | Fraction,
    codec: Codec = "h264",
    gop: int = 12,
    max_b_frames: int = 0,
    packed_b_frames: bool = False,
    pts_s: Sequence[float] | None = None,
    crf: int | None = None,
    bitrate: int | None = None,
    qscale: int | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
    audio_codec: str | None = None,
    options: dict[str, str] | None = None,
    pix_fmt: str | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames (and optionally audio) into a media file, atomically.

    Args:
        path: output file; the container comes from the suffix (.mp4 .mov .avi .mkv .webm).
        frames: ``(T, H, W, 3)`` uint8 RGB array, or an iterable of ``(H, W, 3)`` uint8 frames
            (so long videos need not sit in memory). H and W must be even for 4:2:0 formats.
        fps: nominal frame rate; for constant-rate video frame ``i`` is at ``i / fps`` s.
        codec: ``"h264"`` (libx264), ``"mpeg4"`` (tagged ``XVID`` in AVI), ``"vp8"``, ``"vp9"``,
            ``"ffv1"`` (lossless), ``"mjpeg"`` or any FFmpeg encoder name.
        gop: keyframe interval (``gop_size``); libx264 may add scene-cut keyframes unless
            ``options={"sc_threshold": "0"}``.
        max_b_frames: consecutive B-frames allowed (0 = none). libx264 uses B-pyramid for >= 2.
        packed_b_frames: write a DivX/Xvid packed bitstream (mpeg4 in AVI, max_b_frames >= 1).
        pts_s: per-frame presentation times in seconds for variable frame rate (not in AVI);
            must increase strictly. ``None`` = constant rate.
        crf: constant-quality factor (libx264 default 18, libvpx default 10). ``crf=0`` with
            libx264 is lossless in YUV.
        bitrate: target bits/s (overrides the quality default for libx264/mpeg4; libvpx uses
            it as the constrained-quality ceiling, default 2 Mbit/s).
        qscale: fixed MPEG-4/MJPEG quantiser 1..31 (mpeg4 default 3; 1-2 is near-lossless).
        audio: float32 ``(channels, samples)`` in [-1, 1] (a 1-D array is mono); clipped to
            [-1, 1]. Sample 0 is at time 0.
        sample_rate: audio sample rate in Hz (Opus only takes 8/12/16/24/48 kHz).
        audio_codec: ``"aac"``, ``"mp3"``/``"libmp3lame"``, ``"opus"``/``"libopus"``, ...;
            default aac for mp4/mov/mkv, mp3 for avi, opus for webm.
        options: extra encoder options (AVOptions), e.g. ``{"bf": "3"}``, ``{"preset": "fast"}``.
        pix_fmt: encoder pixel format (default yuv420p; e.g. ``"yuv444p"`` or ``"bgr0"`` with ffv1
            for exact RGB).
        container_options: muxer options, e.g. ``{"movflags": "+faststart"}`` (moov first).
    """
    path = Path(path)
    suffix = _suffix(path)
    encoder = _VIDEO_ENCODERS.get(codec, codec)
    rate = _check_video_args(path, suffix, codec, fps, gop, max_b_frames, packed_b_frames, pts_s)
    audio_arr = _check_audio(path, audio) if audio is not None else None
    first, all_frames = _peek_frames(path, frames)
    with _atomic_writer(path, suffix, container_options) as writer:
        writer.add_video(
            encoder,
            rate,
            first.shape,
            gop,
            max_b_frames,
            packed_b_frames,
            pts_s,
            crf,
            bitrate,
            qscale,
            options,
            pix_fmt,
        )
        if audio_arr is not None:
            writer.add_audio(audio_arr, sample_rate, audio_codec or _DEFAULT_AUDIO[suffix])
        _write_frames(writer, all_frames, first.shape, rate, pts_s)


def _check_video_args(
    path: Path,
    suffix: str,
    codec: Codec,
    fps: float | Fraction,
    gop: int,
    max_b_frames: int,
    packed_b_frames: bool,
    pts_s: Sequence[float] | None,
) -> Fraction:
    """Refuse settings the container or encoder cannot honour; the frame rate as a Fraction."""
    if packed_b_frames:
        if _VIDEO_ENCODERS.get(codec, codec) != "mpeg4" or suffix != ".avi":
            raise ValueError(
                f"{path}: packed_b_frames needs codec='mpeg4' in .avi, got {codec!r} in {suffix!r}"
            )
        if max_b_frames < 1:
            raise ValueError(f"{path}: packed_b_frames needs max_b_frames >= 1, got {max_b_frames}")
    if pts_s is not None:
        if suffix == ".avi":
            raise ValueError(f"{path}: AVI cannot store variable frame rate (pts_s given)")
        steps = np.diff(np.asarray(pts_s, np.float64))
        if steps.size and steps.min() <= 0:
            k = int(np.argmin(steps))
            raise ValueError(
                f"{path}: pts_s must increase strictly; pts_s[{k + 1}]={pts_s[k + 1]} "
                f"after pts_s[{k}]={pts_s[k]}"
            )
    if gop < 1 or max_b_frames < 0:
        raise ValueError(f"{path}: bad gop={gop} or max_b_frames={max_b_frames}")
    rate = _as_fraction(fps)
    if rate <= 0:
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    return rate


def _write_frames(
    writer: _Writer,
    frames: Iterator[np.ndarray],
    shape: tuple[int, ...],
    rate: Fraction,
    pts_s: Sequence[float] | None,
) -> None:
    """Encode every frame at its time (``pts_s[i]``, else ``i / rate``), audio interleaved."""
    path, n = writer.path, 0
    for i, frame in enumerate(frames):
        if frame.shape != shape:
            raise ValueError(f"{path}: frame {i} has shape {frame.shape}, expected {shape}")
        if pts_s is not None:
            if i >= len(pts_s):
                raise ValueError(f"{path}: more frames than pts_s ({len(pts_s)})")
            t = float(pts_s[i])
            t_next = float(pts_s[i + 1]) if i + 1 < len(pts_s) else None
        else:
            t, t_next = float(i / rate), float((i + 1) / rate)
        writer.write_frame(frame, i, t)
        writer.feed_audio_until(t_next)
        n = i + 1
    if pts_s is not None and n != len(pts_s):
        raise ValueError(f"{path}: {n} frames but {len(pts_s)} pts_s")


def write_audio(
    path: str | Path,
    audio: np.ndarray,
    *,
    sample_rate: int,
    audio_codec: str | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Write a sound-only file (e.g. ``.m4a``, ``.mp3``, ``.wav``), atomically.

    ``audio`` is float32 ``(channels, samples)`` in [-1, 1], as for :func:`write_video`.
    """
    path = Path(path)
    suffix = _suffix(path)
    data = _check_audio(path, audio)
    with _atomic_writer(path, suffix, container_options) as writer:
        writer.add_audio(data, sample_rate, audio_codec or _DEFAULT_AUDIO[suffix])


@contextmanager
def _atomic_writer(
    path: Path, suffix: str, container_options: dict[str, str] | None
) -> Iterator[_Writer]:
    """A writer on a hidden temporary file, finished and renamed to ``path`` when the block ends
    (removed when it raises), so that a killed write never leaves a half file under the name."""
    tmp = _tmp_path(path)
    try:
        options = _muxer_options(suffix, container_options)
        with av.open(str(tmp), "w", format=_FORMATS[suffix], options=options) as c:
            _bitexact(c)
            writer = _Writer(c, path=path)
            yield writer
            writer.finish()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _muxer_options(suffix: str, extra: dict[str, str] | None) -> dict[str, str]:
    opts = {}
    if suffix == ".avi":
        # MP3's encoder delay gives the first audio packet a negative dts; FFmpeg's default
        # (make_non_negative) then shifts the *video* by a fraction of a frame, which the AVI
        # muxer turns into an empty chunk (one frame more in the header than in the stream).
        # AVI stores no timestamps anyway: chunk order is the timeline.
        opts["avoid_negative_ts"] = "disabled"
    if suffix == ".m2ts":  # Blu-ray/AVCHD: 192-byte packets (FFmpeg picks it by file name,
        opts["mpegts_m2ts_mode"] = "1"  # but we write to a temporary name first)
    return {**opts, **(extra or {})}


def _bitexact(container: av.container.OutputContainer) -> None:
    # No random Matroska UIDs and no version strings in the container header, so that the same
    # call writes the same bytes. (The MPEG-4 encoder's own "Lavc" user data stays: FFmpeg's
    # decoder uses it to pick the right IDCT and bug workarounds.)
    container.flags = container.flags | 0x0400  # AVFMT_FLAG_BITEXACT


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"{path}: unknown container suffix {suffix!r}; use one of {sorted(_FORMATS)}"
        )
    return suffix


def _tmp_path(path: Path) -> Path:
    """A hidden temporary name in the same folder, so that os.replace is atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


class _Writer:
    """Holds the streams of one output file and interleaves audio with video while encoding."""

    def __init__(self, container: av.container.OutputContainer, *, path: Path) -> None:
        self.container = container
        self.path = path
        self.video: av.VideoStream | None = None
        self.time_base = Fraction(1, 1)
        self.vfr = False
        self.packer: _Packer | None = None
        self.audio: av.AudioStream | None = None
        self.audio_data: np.ndarray | None = None
        self.audio_pos = 0
        self.sample_rate = 0
        self.reformatter = av.video.reformatter.VideoReformatter()

    def add_video(
        self,
        encoder: str,
        rate: Fraction,
        shape: tuple[int, ...],
        gop: int,
        max_b_frames: int,
        packed: bool,
        pts_s: Sequence[float] | None,
        crf: int | None,
        bitrate: int | None,
        qscale: int | None,
        options: dict[str, str] | None,
        pix_fmt: str | None,
    ) -> None:
        """Add the video stream; the arguments are :func:`write_video`'s, ``shape`` the frames'."""
        path, (height, width), vfr = self.path, shape[:2], pts_s is not None
        self.vfr = vfr
        opts: dict[str, object] = {}
        stream = self.container.add_stream(encoder, rate=rate)
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{path}: {encoder!r} is not a video encoder")
        cc = stream.codec_context
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or "yuv420p"
        if stream.pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
            raise ValueError(
                f"{path}: {stream.pix_fmt} needs even width and height, got {width}x{height}"
            )
        cc.thread_count = 1  # deterministic output
        cc.gop_size = gop
        cc.max_b_frames = max_b_frames
        # VFR: a fine time base so that the given times survive; else one tick per frame.
        # (MPEG-4 Part 2 allows at most 16 bits of vop_time_increment_resolution.)
        if vfr:
            self.time_base = Fraction(1, 1000 if encoder == "mpeg4" else 90000)
        else:
            self.time_base = 1 / rate
        cc.time_base = self.time_base
        stream.time_base = self.time_base
        if encoder == "mpeg4" and path.suffix.lower() == ".avi":
            stream.codec_tag = "XVID"
        if encoder == "libx264":
            if bitrate is not None:
                cc.bit_rate = bitrate
            else:
                opts["crf"] = str(18 if crf is None else crf)
        elif encoder in ("libvpx", "libvpx-vp9"):
            cc.bit_rate = bitrate or 2_000_000
            opts["crf"] = str(10 if crf is None else crf)
            opts["deadline"] = "good"
        elif encoder in ("mpeg4", "mjpeg", "mpeg2video", "mpeg1video", "flv", "h263", "wmv2"):
            if bitrate is not None and qscale is None:
                cc.bit_rate = bitrate
            else:
                q = 3 if qscale is None else qscale
                if not 1 <= q <= 31:
                    raise ValueError(f"{path}: qscale must be in 1..31, got {q}")
                cc.qscale = True  # AV_CODEC_FLAG_QSCALE: fixed quantiser ...
                cc.global_quality = q * 118  # ... q in lambda units (FF_QP2LAMBDA)
                if encoder == "mjpeg":
                    stream.pix_fmt = pix_fmt or "yuvj420p"
        opts.update(options or {})
        stream.options = opts
        self.video = stream
        self.packer = _Packer(_time_increment_bits(self.time_base)) if packed else None

    def add_audio(self, data: np.ndarray, sample_rate: int, codec: str) -> None:
        encoder = _audio_encoder(codec)
        try:
            rates = av.codec.Codec(encoder, "w").audio_rates
        except Exception as e:  # noqa: BLE001 - name the file and the codec
            raise ValueError(f"{self.path}: audio encoder {encoder!r} unavailable: {e}") from e
        if rates and sample_rate not in rates:
            raise ValueError(
                f"{self.path}: {encoder} cannot encode {sample_rate} Hz; it takes {sorted(rates)}"
            )
        stream = self.container.add_stream(encoder, rate=sample_rate)
        if not isinstance(stream, av.AudioStream):
            raise ValueError(f"{self.path}: {encoder!r} is not an audio encoder")
        if data.shape[0] > 2:
            raise ValueError(f"{self.path}: at most 2 audio channels, got {data.shape[0]}")
        stream.layout = "mono" if data.shape[0] == 1 else "stereo"
        stream.codec_context.thread_count = 1
        if encoder == "vorbis":  # FFmpeg's own Vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        if encoder in ("wmav1", "wmav2", "mp2", "ac3") and not stream.codec_context.bit_rate:
            stream.codec_context.bit_rate = 192_000  # these have no usable default
        stream.time_base = Fraction(1, sample_rate)
        self.audio, self.audio_data, self.sample_rate = stream, data, sample_rate

    def write_frame(self, rgb: np.ndarray, index: int, t_s: float) -> None:
        assert self.video is not None
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        # One swscale context for the whole file: frame.reformat() builds a new one per frame,
        # which costs more than the conversion on small frames (synth: 1.5 ms vs 0.1 ms).
        frame = self.reformatter.reformat(frame, format=self.video.pix_fmt)
        frame.pts = round(t_s / self.time_base) if self.vfr else index
        frame.time_base = self.time_base
        self._mux_video(self.video.encode(frame))

    def feed_audio_until(self, t_s: float | None, block: int = 4096) -> None:
        """Encode audio up to time ``t_s`` (all of it when None)."""
        if self.audio is None or self.audio_data is None:
            return
        total = self.audio_data.shape[1]
        end = total if t_s is None else min(total, round(t_s * self.sample_rate))
        layout = "mono" if self.audio_data.shape[0] == 1 else "stereo"
        while self.audio_pos < end:
            stop = min(end, self.audio_pos + block)
            chunk = np.ascontiguousarray(self.audio_data[:, self.audio_pos : stop])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = self.sample_rate
            frame.pts = self.audio_pos
            frame.time_base = Fraction(1, self.sample_rate)
            self.container.mux(self.audio.encode(frame))
            self.audio_pos = stop

    def finish(self) -> None:
        if self.video is not None:
            self._mux_video(self.video.encode(None))
        if self.packer is not None:
            self._mux_packed(self.packer.flush())
        self.feed_audio_until(None)
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        if self.packer is None:
            self.container.mux(packets)
            return
        out: list[tuple[bytes, bool]] = []
        for p in packets:
            out.extend(self.packer.push(bytes(p), bool(p.is_keyframe)))
        self._mux_packed(out)

    def _mux_packed(self, chunks: list[tuple[bytes, bool]]) -> None:
        # One AVI chunk per frame, consecutive dts in the codec time base (1/fps).
        assert self.video is not None and self.packer is not None
        for data, key in chunks:
            pkt = av.Packet(data)
            pkt.stream = self.video
            pkt.time_base = self.time_base
            pkt.pts = pkt.dts = self.packer.count
            pkt.is_keyframe = key
            self.packer.count += 1
            self.container.mux(pkt)


def _audio_encoder(codec: str) -> str:
    """FFmpeg encoder for a short codec name; Vorbis falls back to FFmpeg's own encoder when
    PyAV's FFmpeg has no libvorbis (the PyPI wheels do not)."""
    encoder = _AUDIO_ENCODERS.get(codec, codec)
    if encoder == "libvorbis":
        try:
            av.codec.Codec(encoder, "w")
        except Exception:  # noqa: BLE001 - not built in
            return "vorbis"
    return encoder


def _as_fraction(fps: float | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    # 29.97002997 -> 30000/1001; 25.0 -> 25. MPEG-4 needs denominators below 2**16.
    return Fraction(fps).limit_denominator(1001)


def _check_audio(path: Path, audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{path}: audio must be (channels, samples), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: audio contains NaN or inf")
    return np.clip(a, -1.0, 1.0)


def _peek_frames(
    path: Path, frames: np.ndarray | Iterable[np.ndarray]
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(the first frame, every frame including it), each checked as it comes."""
    frame_iter = _iter_frames(path, frames)
    try:
        first = next(frame_iter)
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    return first, itertools.chain([first], frame_iter)


def _iter_frames(path: Path, frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for i, f in enumerate(frames):
        arr = np.asarray(f)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(
                f"{path}: frame {i} must be (H, W, 3) uint8 RGB, got {arr.dtype} {arr.shape}"
            )
        yield np.ascontiguousarray(arr)
