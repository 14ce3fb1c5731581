"""Bad input fails loudly with a typed error that names the file and the bad value."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from media import MediaFile

from avssl import errors
from avssl.data.decode import clear_caches, probe, read_audio, read_frames


def assert_names(e: pytest.ExceptionInfo[BaseException], path: Path, *values: object) -> None:
    msg = str(e.value)
    assert str(path) in msg, f"message does not name the file: {msg}"
    for v in values:
        assert str(v) in msg, f"message does not name the bad value {v!r}: {msg}"


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def patch_avi_frame_count(src: Path, dst: Path, claimed: int) -> Path:
    """Copy an AVI, making its headers (avih TotalFrames, video strh Length) claim ``claimed``."""
    data = bytearray(src.read_bytes())
    i = data.find(b"avih")
    struct.pack_into("<I", data, i + 8 + 16, claimed)  # dwTotalFrames
    j = data.find(b"strh")
    assert data[j + 8 : j + 12] == b"vids"
    struct.pack_into("<I", data, j + 8 + 32, claimed)  # dwLength
    k = data.find(b"dmlh")
    if k >= 0:
        struct.pack_into("<I", data, k + 8, claimed)  # OpenDML dwTotalFrames
    dst.write_bytes(bytes(data))
    return dst


# --------------------------------------------------------------------------------------------
# Files that are not there, empty, or not media
# --------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.mp4"
    for call in (
        lambda: probe(p),
        lambda: read_frames(p, [0]),
        lambda: read_audio(p, 0.0, 1.0, sample_rate=16000),
    ):
        with pytest.raises(errors.MediaNotFoundError) as e:
            call()
        assert_names(e, p)
        assert isinstance(e.value, FileNotFoundError)  # callers may catch the builtin too


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(errors.EmptyMediaError) as e:
        probe(p)
    assert_names(e, p, "0 bytes")
    with pytest.raises(errors.EmptyMediaError):
        read_audio(p, 0.0, 1.0, sample_rate=16000)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.mp4", b"this is a text file, not a video\n" * 20),
        ("noise.avi", bytes(range(256)) * 64),
        ("fake.mkv", b"\x1a\x45\xdf\xa3" + b"\x00" * 100),
    ],
)
def test_not_media(tmp_path: Path, name: str, content: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(errors.NotMediaError) as e:
        probe(p)
    assert_names(e, p)
    assert e.value.reason == "not-media"


def test_directory_is_not_media(tmp_path: Path) -> None:
    d = tmp_path / "clip.mp4"
    d.mkdir()
    with pytest.raises(errors.NotMediaError) as e:
        probe(d)
    assert_names(e, d)


# --------------------------------------------------------------------------------------------
# Truncated and corrupt files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.5, 0.9])
@pytest.mark.parametrize("name", ["xvid_b.avi", "xvid_packed.avi"])
def test_truncated_avi(
    tmp_path: Path, media: dict[str, MediaFile], name: str, fraction: float
) -> None:
    p = cut(media[name].path, tmp_path / f"cut_{name}", fraction)
    with pytest.raises((errors.TruncatedMediaError, errors.CorruptMediaError)) as e:
        probe(p)
    assert_names(e, p)
    with pytest.raises((errors.TruncatedMediaError, errors.CorruptMediaError)):
        read_frames(p, [0])


def test_truncated_mp4_moov_first(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    """moov at the front (faststart): the index promises frames whose bytes are missing."""
    from media import index_frames

    from avssl.data.encode import write_video

    full = tmp_path / "fast.mp4"
    write_video(full, index_frames(60, 48, 64), fps=25, max_b_frames=2,
                container_options={"movflags": "+faststart"})  # fmt: skip
    p = cut(full, tmp_path / "fast_cut.mp4", 0.6)
    with pytest.raises((errors.TruncatedMediaError, errors.CorruptMediaError)) as e:
        probe(p)
    assert_names(e, p)


def test_truncated_mp4_moov_last(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    """moov at the end (FFmpeg's default) and the end cut off: no index at all."""
    p = cut(media["h264_gop30.mp4"].path, tmp_path / "cut.mp4", 0.7)
    with pytest.raises((errors.TruncatedMediaError, errors.CorruptMediaError)) as e:
        probe(p)
    assert_names(e, p)


def test_truncated_lenient_probe(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    """strict=False keeps the frames that decode; reading past them is a FrameIndexError."""
    m = media["xvid_b.avi"]
    p = cut(m.path, tmp_path / "cut_lenient.avi", 0.5)
    info = probe(p, strict=False)
    assert 0 < info.num_frames < m.num_frames
    clip = read_frames(p, [0, info.num_frames - 1], info=info)
    assert clip.data.shape[0] == 2
    with pytest.raises(errors.FrameIndexError) as e:
        read_frames(p, [info.num_frames], info=info)
    assert_names(e, p, info.num_frames)
    # a lenient probe is cached apart: the strict one still refuses the file
    with pytest.raises(errors.TruncatedMediaError):
        probe(p)


def test_corrupt_payload(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    """Garbage in the middle of the video data: a typed error, never a crash or a hang."""
    data = bytearray(media["h264_gop30.mp4"].path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = bytes((i * 37 + 11) % 256 for i in range(4000))
    p = tmp_path / "garbled.mp4"
    p.write_bytes(bytes(data))
    try:
        info = probe(p)
    except errors.MediaError as e:
        assert str(p) in str(e)
        assert isinstance(e, errors.CorruptMediaError | errors.NotMediaError)
    else:  # FFmpeg concealed the damage: then frames must still come back
        assert read_frames(p, [0, info.num_frames - 1]).data.shape[0] == 2


# --------------------------------------------------------------------------------------------
# Missing streams
# --------------------------------------------------------------------------------------------
def test_no_video_stream(media: dict[str, MediaFile]) -> None:
    p = media["h264_gop30.mp4"].path.parent / "audio_only.m4a"
    for call in (lambda: probe(p), lambda: read_frames(p, [0])):
        with pytest.raises(errors.NoVideoStreamError) as e:
            call()
        assert_names(e, p)
    a = read_audio(p, 0.0, 0.5, sample_rate=16000)  # sound-only files still give sound
    assert tuple(a.data.shape) == (1, 8000)


def test_no_audio_stream(media: dict[str, MediaFile]) -> None:
    m = media["h264_gop30.mp4"]  # video only
    assert not probe(m.path).has_audio
    with pytest.raises(errors.NoAudioStreamError) as e:
        read_audio(m.path, 0.0, 1.0, sample_rate=16000)
    assert_names(e, m.path)


# --------------------------------------------------------------------------------------------
# Frame indices
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 150, 151, 10**6])
def test_frame_index_out_of_range(media: dict[str, MediaFile], bad: int) -> None:
    m = media["h264_gop30.mp4"]  # 150 frames
    with pytest.raises(errors.FrameIndexError) as e:
        read_frames(m.path, [0, bad, 3])
    assert_names(e, m.path, bad)
    assert isinstance(e.value, IndexError)


def test_frame_index_within_overclaimed_header(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    m = media["xvid_b.avi"]
    p = patch_avi_frame_count(m.path, tmp_path / "claims_more.avi", m.num_frames + 40)
    info = probe(p)
    assert info.num_frames == m.num_frames  # counted, not believed
    assert info.header_num_frames == m.num_frames + 40
    assert read_frames(p, [m.num_frames - 1]).data.shape[0] == 1
    for bad in (m.num_frames, m.num_frames + 39):
        with pytest.raises(errors.FrameIndexError) as e:
            read_frames(p, [bad])
        assert_names(e, p, bad, m.num_frames + 40)


def test_bad_index_types(media: dict[str, MediaFile]) -> None:
    m = media["h264_gop30.mp4"]
    with pytest.raises(TypeError) as e:
        read_frames(m.path, [0.5, 1.5])  # type: ignore[list-item]
    assert str(m.path) in str(e.value)
    with pytest.raises(TypeError):
        read_frames(m.path, [[0, 1]])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
def test_unknown_backend(media: dict[str, MediaFile]) -> None:
    with pytest.raises(ValueError, match="nvdec"):
        read_frames(media["h264_gop30.mp4"].path, [0], backend="nvdec")  # type: ignore[arg-type]


def test_refused_backend_names_file_and_backend(media: dict[str, MediaFile]) -> None:
    from avssl.data.decode import backend_refusal

    p = media["xvid_packed.avi"].path
    info = probe(p)
    refused = [b for b in ("decord", "opencv", "torchcodec") if backend_refusal(b, info)]
    assert refused, "no backend is refused on packed B-frame AVI"
    for b in refused:
        with pytest.raises(errors.BackendRefusedError) as e:
            read_frames(p, [0], backend=b)  # type: ignore[arg-type]
        assert_names(e, p, b)
        assert e.value.reason == "backend-refused"


# --------------------------------------------------------------------------------------------
# Audio arguments
# --------------------------------------------------------------------------------------------
def test_read_audio_bad_arguments(media: dict[str, MediaFile]) -> None:
    p = media["h264_gop250.mp4"].path
    with pytest.raises(ValueError) as e:
        read_audio(p, 0.0, 1.0, sample_rate=0)
    assert_names(e, p, 0)
    with pytest.raises(ValueError) as e:
        read_audio(p, 0.0, -1.0, sample_rate=16000)
    assert_names(e, p, -1.0)


# --------------------------------------------------------------------------------------------
# No hang
# --------------------------------------------------------------------------------------------
def test_decode_time_is_bounded(media: dict[str, MediaFile]) -> None:
    """A decode that runs past its limit raises instead of hanging a data-loader worker."""
    p = media["h264_gop30.mp4"].path
    clear_caches()
    with pytest.raises(errors.DecodeTimeoutError) as e:
        probe(p, timeout_s=0.0)
    assert_names(e, p)
    info = probe(p)
    with pytest.raises(errors.DecodeTimeoutError) as e:
        read_frames(p, [info.num_frames - 1], info=info, timeout_s=0.0)
    assert_names(e, p)
    assert read_frames(p, [info.num_frames - 1], info=info).data.shape[0] == 1


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a FIFO would block the demuxer forever: refuse it before opening."""
    p = tmp_path / "pipe.mp4"
    os.mkfifo(p)
    with pytest.raises(errors.NotMediaError) as e:
        probe(p)
    assert_names(e, p, "regular file")
