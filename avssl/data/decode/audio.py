"""Sound: describe an audio stream and read sample-exact windows of it (mono mix, padding:
see :mod:`avssl.data.decode`, the one door to import from). Samples are placed by the
container's timestamps (tests/test_av_timing.py: onsets within 1 ms of their frames' times).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import numpy as np
import torch
from scipy.signal import resample_poly

from avssl import errors
from avssl.data.decode.reader import (
    DEFAULT_TIMEOUT_S,
    _check_deadline,
    _check_file,
    _demux,
    _is_folder,
    _open,
    _truncation,
)
from avssl.types import Audio, AudioStreamInfo


def _ts_seconds(ts: int | None, time_base: Fraction | None) -> float | None:
    if ts is None or time_base is None:
        return None
    return float(ts * time_base)


#: An audio stream counts as audible when its loudest sample is above this level. Digitally
#: silent tracks (e.g. the cockatoo clip, -91 dBFS) fall below; quiet real sound (fire2) does not.
AUDIBLE_PEAK_DBFS = -60.0


@dataclass
class _AudioStats:
    samples: int = 0
    peak: float = 0.0
    first_s: float | None = None


def _audio_stats_add(acc: _AudioStats, pk: av.Packet) -> None:
    try:
        frames = cast(list[av.AudioFrame], pk.decode())
    except av.error.FFmpegError:
        return  # a bad audio packet does not make the video unusable; audibility is a hint
    for f in frames:
        x = _audio_to_float(f)
        if acc.first_s is None:
            acc.first_s = _ts_seconds(f.pts, f.time_base)
        acc.samples += x.shape[1]
        if x.size:
            acc.peak = max(acc.peak, float(np.abs(x).max()))


def _audio_info(s: av.audio.stream.AudioStream, acc: _AudioStats) -> AudioStreamInfo:
    rate = int(s.codec_context.sample_rate)
    peak_db = 20 * math.log10(acc.peak) if acc.peak > 0 else float("-inf")
    return AudioStreamInfo(
        index=s.index,
        codec=s.codec_context.name,
        sample_rate=rate,
        channels=int(s.codec_context.channels),
        duration_s=(acc.first_s or 0.0) + acc.samples / rate,
        peak_dbfs=peak_db,
        audible=peak_db > AUDIBLE_PEAK_DBFS,
    )


def _audio_to_float(f: av.AudioFrame) -> np.ndarray:
    """Decoded audio frame -> float32 (channels, samples) in [-1, 1]."""
    x = f.to_ndarray()
    fmt = f.format
    channels = len(f.layout.channels)
    if not fmt.is_planar:  # interleaved: (1, samples * channels)
        x = x.reshape(-1, channels).T
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    return x.astype(np.float32, copy=False)


def _audio_stream(
    c: av.container.InputContainer, p: Path, stream: int | None
) -> av.audio.stream.AudioStream:
    """The first audio stream, or the one with container index ``stream``."""
    astreams = [s for s in c.streams.audio if stream is None or s.index == stream]
    if not astreams:
        what = "no audio stream" if stream is None else f"no audio stream with index {stream}"
        raise errors.NoAudioStreamError(str(p), what)
    return astreams[0]


def probe_audio(
    path: str | os.PathLike[str],
    *,
    stream: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AudioStreamInfo:
    """Describe an audio stream (of an audio file such as a wav, or of a video) by decoding it.

    Duration comes from the decoded samples, not the header; ``audible`` from the peak level.
    ``stream`` picks a stream by container index (default: the first audio stream). Raises
    NoAudioStreamError when there is none, CorruptMediaError when no sample decodes.
    """
    if _is_folder(path):
        raise errors.NoAudioStreamError(str(path), "a frame folder has no sound")
    p = _check_file(path)
    cut = _truncation(p, p.stat().st_size)
    if cut:
        raise errors.TruncatedMediaError(str(p), f"truncated: {cut}")
    deadline = time.monotonic() + timeout_s
    with _open(p, full=True) as c:
        a = _audio_stream(c, p, stream)
        acc = _AudioStats()
        try:
            for pk in _demux(c, a):
                _check_deadline(deadline, p, "audio probe")
                _audio_stats_add(acc, pk)
        except av.error.FFmpegError as e:
            raise errors.CorruptMediaError(str(p), f"audio demux failed: {e}") from None
        if acc.samples == 0:
            raise errors.CorruptMediaError(str(p), "no audio sample could be decoded")
        return _audio_info(a, acc)


_COARSE_SEEK_S = 120.0  # see _decode_audio_span


# Audio decoded before a window after a seek: AAC and Vorbis overlap-add one frame (<= 2048
# samples), MP3's bit reservoir reaches back a few frames; 0.25 s covers them at any rate.
_AUDIO_PREROLL_S = 0.25


# resample_poly's filter reaches 10 * max(up, down) / up input samples each side (28 for
# 44.1 -> 16 kHz); 0.05 s is far more than that at any rate >= 1 kHz.
_RESAMPLE_MARGIN_S = 0.05


def _open_audio(
    p: Path, stream: int | None
) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    """Open ``p`` and pick its audio stream, with a known sample rate and channel count.

    The fast open reads only the container header. MPEG-PS and FLV create streams as their
    packets turn up, and MPEG-PS/TS say nothing of the audio's rate or channels outside the
    packets: there the fast open finds no audio stream (FLV: H.264 + MP3) or one with
    sample_rate 0 (every generated .mpg/.ts). Then the file is opened again with FFmpeg's
    default probing, which reads the first packets of every stream.
    """
    c = _open(p)
    try:
        a = _audio_stream(c, p, stream)
        if a.codec_context.sample_rate > 0 and a.codec_context.channels > 0:
            return c, a
    except errors.NoAudioStreamError:
        pass
    c.close()
    c = _open(p, full=True)
    try:
        a = _audio_stream(c, p, stream)
        if a.codec_context.sample_rate <= 0 or a.codec_context.channels <= 0:
            raise errors.CorruptMediaError(
                str(p), f"audio stream {a.index} has no sample rate or channel count"
            )
    except BaseException:
        c.close()
        raise
    return c, a


def _seconds(path: object, name: str, value: object) -> float:
    """Any finite real number (a Python or NumPy number, a one-element tensor, a Fraction)."""
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{path}: {name} must be a real number of seconds, got {value!r}"
        ) from None
    if not math.isfinite(v):
        raise ValueError(f"{path}: {name} must be finite, got {value!r}")
    return v


def read_audio(
    path: str | os.PathLike[str],
    start_s: float,
    duration_s: float,
    *,
    sample_rate: int,
    mono: bool = True,
    out_of_range: Literal["pad", "error"] = "pad",
    stream: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Audio:
    """``duration_s`` of sound from ``start_s`` on the media's time axis, at ``sample_rate`` Hz.

    Sample-exact: the result has ``round(duration_s * sample_rate)`` samples and sample ``k`` is
    the stream, resampled to ``sample_rate``, at time ``round(start_s * sample_rate) + k`` over
    ``sample_rate``; a window read alone equals the same samples cut from a longer read.
    ``mono`` mixes channels by their mean. Parts of the window before the stream starts or after
    it ends are zeros (``out_of_range="pad"``) or raise ``AudioRangeError`` (``"error"``).
    ``stream`` picks an audio stream by container index (default: the first). In containers
    whose timestamps are coarser than a sample (Matroska/WebM: 1 ms), windows starting after
    120 s are placed to within one such tick; everywhere else placement is exact.
    """
    if sample_rate <= 0:
        raise ValueError(f"{path}: sample_rate must be positive, got {sample_rate}")
    start_s, duration_s = (
        _seconds(path, "start_s", start_s),
        _seconds(path, "duration_s", duration_s),
    )
    if duration_s < 0:
        raise ValueError(f"{path}: duration_s must be >= 0, got {duration_s}")
    if _is_folder(path):
        raise errors.NoAudioStreamError(str(path), "a frame folder has no sound")
    p = _check_file(path)
    n0 = round(start_s * sample_rate)
    n_out = round(duration_s * sample_rate)
    deadline = time.monotonic() + timeout_s
    c, a = _open_audio(p, stream)
    with c:
        sr_in = int(a.codec_context.sample_rate)
        g = math.gcd(sr_in, sample_rate)
        # Cut on a grid common to both rates, so that output sample j of the resampler sits at
        # exactly t0 + j / sample_rate.
        k_lo = math.floor((n0 / sample_rate - _RESAMPLE_MARGIN_S) * g)
        k_hi = math.ceil(((n0 + n_out) / sample_rate + _RESAMPLE_MARGIN_S) * g)
        s0, s1 = k_lo * (sr_in // g), k_hi * (sr_in // g)
        buf, covered = _decode_audio_span(c, a, p, s0, s1, deadline)
    lo_s, hi_s = covered
    if out_of_range == "error" and (
        n0 / sample_rate < lo_s - 1e-9 or (n0 + n_out) / sample_rate > hi_s + 1e-9
    ):
        raise errors.AudioRangeError(
            str(p),
            f"window {start_s:.4f}s + {duration_s:.4f}s runs past the stream "
            f"[{lo_s:.4f}s, {hi_s:.4f}s]",
        )
    x = buf.mean(axis=0, keepdims=True) if mono else buf
    if sr_in != sample_rate:
        # Polyphase FIR (scipy's resample_poly: Kaiser window, zero phase): output sample 0 sits
        # on input sample 0, so a window cut on a grid common to both rates comes out on the
        # output grid exactly. NumPy/SciPy rather than torch: no intra-op thread pool to spin
        # up in every data-loader worker (that cost 10x the filtering on 2 busy cores).
        x = resample_poly(x, sample_rate // g, sr_in // g, axis=1)
    j0 = n0 - k_lo * (sample_rate // g)
    out = np.zeros((x.shape[0], n_out), np.float32)
    got = x[:, j0 : j0 + n_out]  # always n_out long with the margin; never return a short one
    out[:, : got.shape[1]] = got
    return Audio(data=torch.from_numpy(out), sample_rate=sample_rate, start_s=n0 / sample_rate)


def _decode_audio_span(
    c: av.container.InputContainer,
    a: av.audio.stream.AudioStream,
    p: Path,
    s0: int,
    s1: int,
    deadline: float,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Source-rate samples [s0, s1) placed by timestamp (zeros where the stream has none)."""
    sr = int(a.codec_context.sample_rate)
    channels = int(a.codec_context.channels)
    buf = np.zeros((channels, s1 - s0), np.float32)
    first_s: float | None = None
    end_s = 0.0
    t0 = s0 / sr
    atb = a.time_base or Fraction(1, sr)
    samples_per_tick = sr * float(atb)  # float: a Fraction per frame costs more than decoding
    tick = math.ceil(samples_per_tick) + 1  # one time-base tick, in samples
    # Seeking costs exactness where stamps are rounded (Matroska/WebM: 1 ms), since the first
    # frame after a seek can only be placed by its rounded stamp; decoding from the start
    # places every frame exactly. So there, seek only past _COARSE_SEEK_S, where an error of
    # at most one tick is accepted. (AVI stamps count whole chunks: coarse but exact.)
    # Matroska/WebM, FLV and ASF (WMV) stamp in ms, with frames of any length in between.
    coarse = "matroska" in c.format.name or c.format.name in ("flv", "asf")
    seeked = t0 > 2 * _AUDIO_PREROLL_S and (not coarse or t0 > _COARSE_SEEK_S)
    lo_s = float((a.start_time or 0) * atb)
    if seeked:  # decode from a little before: AAC/MP3 frames overlap their predecessors
        c.seek(int((t0 - _AUDIO_PREROLL_S) / atb), stream=a, backward=True, any_frame=False)
    running: int | None = None  # where the next frame starts if the stream has no gap
    for pk in _demux(c, a):
        _check_deadline(deadline, p, "read_audio")
        try:
            frames = cast(list[av.AudioFrame], pk.decode())
        except av.error.FFmpegError:
            continue  # a damaged packet leaves zeros, like a gap in the stream
        for f in frames:
            x = _audio_to_float(f)
            if f.pts is None:
                start = 0 if running is None else running
            else:
                start = round(f.pts * samples_per_tick)
                # Matroska stores times in whole milliseconds: an Opus frame of 648 samples
                # is stamped 14 ms = 672 samples. Frames follow each other back to back unless
                # the stamp jumps by more than one tick (a real gap).
                if running is not None and abs(start - running) <= tick:
                    start = running
            running = start + x.shape[1]
            if first_s is None:
                first_s = start / sr
            end_s = max(end_s, (start + x.shape[1]) / sr)
            lo, hi = max(start, s0), min(start + x.shape[1], s1)
            if hi > lo:
                buf[:, lo - s0 : hi - s0] = x[:channels, lo - start : hi - start]
            if start >= s1:  # the stream goes on past the window
                return buf, (lo_s if seeked else first_s, math.inf)
    if first_s is None:
        return buf, (0.0, 0.0)
    return buf, (lo_s if seeked else first_s, end_s)
