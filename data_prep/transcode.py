"""The training cache (``--transcode DIR``): every video once more as H.264 MP4, a keyframe every
``gop`` frames, short side capped, its sound as a mono ``.wav``; frame ``i`` is the source's frame
``i``. Writes are atomic: a failure leaves no partial file.

Design notes: docs/design/prep_tracking_cli.md, "data_prep/transcode.py".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avssl import errors
from avssl.data.decode import DEFAULT_TIMEOUT_S, iter_frames, probe, read_audio
from avssl.data.encode import write_audio, write_video
from avssl.data.manifest import atomic_output
from avssl.types import VideoInfo

#: Bumped whenever the cache's content changes for the same config (a resumed prep run
#: re-transcodes rows whose ``cache_version`` differs).
VERSION = 1

#: Seconds allowed per source frame for the whole pass (decode + resize + encode), on top of
#: DEFAULT_TIMEOUT_S: long 1080p videos of ``folder`` datasets must not hit the fixed default.
_TIMEOUT_PER_FRAME_S = 0.1


@dataclass(frozen=True)
class TranscodeConfig:
    """How the cache is encoded (the defaults are what ``--transcode`` uses)."""

    max_short_side: int = 256  # papers train on 256-px short sides; smaller sources keep theirs
    gop: int = 8  # keyframe every 8 frames: a random frame costs at most 7 extra decodes
    crf: int = 18  # libx264 quality: 18 ~ visually lossless; +6 roughly halves the size
    audio: bool = True  # mono wav at the source's rate next to the video
    # libx264 tune=fastdecode (CAVLC, no deblocking filter): ~2x cheaper decodes for +10-25%
    # bytes at the same CRF and the same error to the source (design notes).
    fast_decode: bool = True

    def __post_init__(self) -> None:
        if self.max_short_side < 2:
            raise ValueError(f"max_short_side must be >= 2, got {self.max_short_side}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51 (libx264), got {self.crf}")


def cache_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """``(height, width)`` of the cache for a ``width`` x ``height`` source.

    The short side becomes ``max_short_side`` when it is longer, the aspect ratio is kept (the
    long side is rounded to the nearest even number) and nothing is upscaled. Both sides are
    even, as H.264 4:2:0 needs: an odd side of a small source loses its last pixel row/column
    (a resize of less than one pixel).
    """
    if width < 2 or height < 2:
        raise ValueError(f"source size {width}x{height} too small for a 4:2:0 cache (>= 2x2)")
    if max_short_side < 2:
        raise ValueError(f"max_short_side must be >= 2, got {max_short_side}")
    short, long = min(width, height), max(width, height)
    if short > max_short_side:
        new_short = max_short_side - max_short_side % 2
        new_long = 2 * round(long * new_short / short / 2)
        new_long = max(new_short, min(new_long, long - long % 2))
    else:
        new_short, new_long = short - short % 2, long - long % 2
    return (new_short, new_long) if height <= width else (new_long, new_short)


def transcode_video(
    src: Path,
    dst_video: Path,
    *,
    info: VideoInfo,
    config: TranscodeConfig = TranscodeConfig(),
    dst_audio: Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Write the cache of ``src`` (probed as ``info``) to ``dst_video`` (``.mp4``) and its sound to
    ``dst_audio`` (``.wav``) when ``config.audio`` is set, a path is given and the source has an
    audio stream. ``timeout_s`` bounds the video pass and the check (default: DEFAULT_TIMEOUT_S +
    0.1 s per frame).

    Returns the manifest columns ``cache_video`` / ``cache_audio`` (the paths as given, audio None
    when none was written), ``cache_width``, ``cache_height``, ``cache_fps``, ``cache_num_frames``,
    ``cache_bytes`` (video + audio), ``cache_gop``, ``cache_sample_rate`` and ``cache_version``.
    Raises CorruptMediaError (naming the cache file) when the written video does not decode to
    ``info.num_frames`` frames, and whatever the source's decode raises; no new file is left then.
    """
    src, dst_video = Path(src), Path(dst_video)
    if dst_video.suffix.lower() != ".mp4":
        raise ValueError(f"{dst_video}: the cache video must be an .mp4 file")
    if dst_audio is not None and Path(dst_audio).suffix.lower() != ".wav":
        raise ValueError(f"{dst_audio}: the cache audio must be a .wav file")
    if timeout_s is None:
        timeout_s = DEFAULT_TIMEOUT_S + _TIMEOUT_PER_FRAME_S * info.num_frames
    height, width = cache_size(info.width, info.height, config.max_short_side)

    with atomic_output(dst_video) as tmp:
        write_video(
            tmp,
            (f for _, f in iter_frames(src, size=(height, width), info=info, timeout_s=timeout_s)),
            fps=info.fps,  # constant rate; VFR sources keep their indices, not their times
            codec="h264",
            gop=config.gop,
            max_b_frames=0,  # decode order = display order: a seek decodes no extra frames
            crf=config.crf,
            # No scene-cut keyframes: they would restart the GOP count, so keyframes would no
            # longer sit at multiples of gop and the worst-case read cost would be unknown.
            options={"sc_threshold": "0", **({"tune": "fastdecode"} if config.fast_decode else {})},
            # moov before mdat: opening the file reads its index in one go (network storage).
            container_options={"movflags": "+faststart"},
        )
        cached = probe(tmp, timeout_s=timeout_s)
        if cached.num_frames != info.num_frames:
            raise errors.CorruptMediaError(
                str(dst_video),
                f"the cache decodes to {cached.num_frames} frames, the source {src} has "
                f"{info.num_frames}; not written",
            )
    video_bytes = dst_video.stat().st_size

    audio_path, sample_rate, audio_bytes = None, None, 0
    if config.audio and dst_audio is not None and info.audio:
        audio_path = Path(dst_audio)
        sample_rate = _write_sound(src, info, audio_path, dst_video)
        audio_bytes = audio_path.stat().st_size

    return {
        "cache_video": str(dst_video),
        "cache_width": cached.width,
        "cache_height": cached.height,
        "cache_fps": cached.fps,
        "cache_num_frames": cached.num_frames,
        "cache_bytes": video_bytes + audio_bytes,
        "cache_gop": config.gop,
        "cache_audio": None if audio_path is None else str(audio_path),
        "cache_sample_rate": sample_rate,
        "cache_version": VERSION,
    }


def _write_sound(src: Path, info: VideoInfo, dst_audio: Path, dst_video: Path) -> int:
    """The first audio stream of ``src`` as a mono 16-bit WAV on the source's time axis; on a
    failure ``dst_video`` is removed too (all or nothing). Returns the sample rate."""
    stream = info.audio[0]
    try:
        sound = read_audio(
            src,
            0.0,
            stream.duration_s,  # end of the stream on the source's time axis
            sample_rate=stream.sample_rate,
            mono=True,
            stream=stream.index,
        )
        # 16-bit PCM: -96 dBFS quantisation is far below any recording's noise, and half
        # the size of float. write_audio is atomic itself.
        write_audio(dst_audio, sound.data.numpy(), sample_rate=stream.sample_rate)
    except BaseException:
        dst_video.unlink(missing_ok=True)  # all or nothing: no video without its sound
        raise
    return stream.sample_rate
