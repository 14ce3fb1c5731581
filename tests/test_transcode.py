"""data_prep.transcode: the training cache keeps every frame at its index, and its sound."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from media import MediaFile, find_clicks, index_frame, read_index, shared_data_dir

from avssl import errors
from avssl.data import decode
from avssl.data.decode import iter_frames, probe, read_audio, read_frames
from avssl.data.encode import write_video
from data_prep import transcode
from data_prep.transcode import VERSION, TranscodeConfig, cache_size, transcode_video

UCF_CLIP = shared_data_dir() / "av-clips" / "mmaction2__test_ucf101_ApplyEyeMakeup.avi"
MAX_MEAN_ABS_ERROR = 6.0  # on 0..255; CRF 18 gives ~1.5 on these frames


def frames(
    path: Path, indices: Sequence[int] | np.ndarray, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Frames as (T, H, W, 3) uint8 through the public reader.

    backend="pyav" is what "auto" picks for every file here; naming it skips the discovery of
    the other backends (importing torchcodec costs ~3 s once per process).
    """
    clip = read_frames(path, indices, size=size, backend="pyav")
    return clip.data.permute(0, 2, 3, 1).numpy()


def frame(path: Path, i: int, size: tuple[int, int] | None = None) -> np.ndarray:
    return frames(path, [i], size)[0]


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def wav_samples(path: Path) -> tuple[np.ndarray, int, int]:
    """All samples of a .wav as float32 (channels, n), its rate and its channel count."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        x = np.concatenate([f.to_ndarray() for f in c.decode(s)], axis=1)
        return x.astype(np.float32) / 32768.0, s.codec_context.sample_rate, s.codec_context.channels


@pytest.mark.parametrize(
    ("width", "height", "max_short", "expected"),
    [
        (640, 480, 240, (240, 320)),  # landscape: short side = height
        (480, 640, 240, (320, 240)),  # portrait
        (320, 240, 256, (240, 320)),  # UCF-101: already small, kept
        (128, 96, 256, (96, 128)),  # never upscaled
        (321, 241, 256, (240, 320)),  # odd sides lose a pixel (4:2:0 needs even)
        (1280, 720, 256, (256, 456)),  # 455.1 -> nearest even
        (1920, 1080, 255, (254, 452)),  # odd limit -> even short side
        (400, 400, 256, (256, 256)),
    ],
)
def test_cache_size(width: int, height: int, max_short: int, expected: tuple[int, int]) -> None:
    assert cache_size(width, height, max_short) == expected


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="gop"):
        TranscodeConfig(gop=0)
    with pytest.raises(ValueError, match="crf"):
        TranscodeConfig(crf=60)
    with pytest.raises(ValueError, match="too small"):
        cache_size(1, 10, 256)


@pytest.mark.parametrize(
    "name",
    [
        "xvid_packed.avi",  # packed B-frames, one keyframe, MP3 (with its AVI delay)
        "h264_gop250.mp4",  # B-pyramid, one keyframe, AAC
        "h264_vfr.mp4",  # variable frame rate, AAC at 48 kHz mono
        "xvid_packed2.avi",  # no audio
    ],
)
def test_cache_keeps_every_frame_at_its_index(
    media: dict[str, MediaFile], tmp_path: Path, name: str
) -> None:
    m = media[name]
    info = probe(m.path)
    config = TranscodeConfig()
    out = transcode_video(
        m.path, tmp_path / "v.mp4", info=info, config=config, dst_audio=tmp_path / "a.wav"
    )
    cache = probe(tmp_path / "v.mp4")
    n = info.num_frames

    # Same count, never upscaled (these sources are below 256 px), keyframes every gop frames,
    # all of them verified seek points, no reordering, constant rate at the source's average.
    assert cache.num_frames == n == m.num_frames
    assert (cache.height, cache.width) == (m.height, m.width)
    assert cache.codec == "h264" and not cache.b_frames and not cache.vfr
    assert cache.keyframes == tuple(range(0, n, config.gop))
    assert [sp.frame_index for sp in cache.seek_points] == list(cache.keyframes)
    assert cache.fps == pytest.approx(info.fps, rel=1e-3)
    assert cache.pts_s == pytest.approx([i / info.fps for i in range(n)], abs=2e-3)

    has_audio = m.has_audio
    assert out == {
        "cache_video": str(tmp_path / "v.mp4"),
        "cache_width": m.width,
        "cache_height": m.height,
        "cache_fps": cache.fps,
        "cache_num_frames": n,
        "cache_bytes": cache.size_bytes + ((tmp_path / "a.wav").stat().st_size if has_audio else 0),
        "cache_gop": config.gop,
        "cache_audio": str(tmp_path / "a.wav") if has_audio else None,
        "cache_sample_rate": m.sample_rate if has_audio else None,
        "cache_version": VERSION,
    }
    # Nothing but the outputs: temporary files were renamed or removed.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["v.mp4"] + (["a.wav"] if has_audio else [])
    )

    # Frame i of the cache is frame i of the source. The source is read in one pass (a read of
    # one frame alone decodes from its only keyframe); the cache one frame per read.
    source = frames(m.path, range(n))
    for i, want in enumerate(source):
        got = frame(tmp_path / "v.mp4", i)
        assert read_index(got) == i
        assert mean_abs_error(got, want) < MAX_MEAN_ABS_ERROR, f"frame {i}"

    if not has_audio:
        return
    stream = info.audio[0]
    sr = stream.sample_rate
    wav, wav_rate, channels = wav_samples(tmp_path / "a.wav")
    assert (wav_rate, channels) == (sr, 1)
    # The whole track on the source's time axis: as long as the stream, and within one video
    # frame of the video's duration (plus MP3's encoder delay in AVI).
    assert wav.shape[1] == round(stream.duration_s * sr)
    video_end_s = (m.pts_s[-1] if m.pts_s else (n - 1) / m.fps) + 1 / m.fps
    assert abs(wav.shape[1] - video_end_s * sr) <= sr / m.fps + m.audio_delay
    src = read_audio(m.path, 0.0, stream.duration_s, sample_rate=sr).data.numpy()
    assert src.shape == wav.shape
    assert np.abs(wav - src).max() < 2 / 32768  # 16-bit rounding only
    assert np.corrcoef(wav[0], src[0])[0, 1] > 0.999
    # The clicks sit at the same samples (MP3 in AVI: delayed like the source's decode).
    clicks = find_clicks(wav[0])
    assert clicks == find_clicks(src[0])
    assert len(clicks) == len(m.clicks)
    assert all(abs(c - (k + m.audio_delay)) <= 2 for c, k in zip(clicks, m.clicks, strict=True))


def test_large_source_is_downscaled(tmp_path: Path) -> None:
    src = tmp_path / "big.mp4"
    write_video(src, (index_frame(i, 480, 640) for i in range(12)), fps=25, gop=12, max_b_frames=2)
    info = probe(src)
    out = transcode_video(
        src, tmp_path / "c.mp4", info=info, config=TranscodeConfig(max_short_side=240)
    )
    assert (out["cache_height"], out["cache_width"]) == (240, 320)
    assert out["cache_audio"] is None and out["cache_sample_rate"] is None  # no audio stream
    for i in range(12):
        got = frame(tmp_path / "c.mp4", i)
        assert read_index(got) == i
        # The same area interpolation that read_frames(size=...) uses on the source.
        assert mean_abs_error(got, frame(src, i, size=(240, 320))) < MAX_MEAN_ABS_ERROR

    # A limit above the source's short side keeps its size: never upscaled.
    out = transcode_video(
        src, tmp_path / "d.mp4", info=info, config=TranscodeConfig(max_short_side=512)
    )
    assert (out["cache_height"], out["cache_width"]) == (480, 640)


def test_audio_can_be_skipped(media: dict[str, MediaFile], tmp_path: Path) -> None:
    m = media["h264_gop250.mp4"]
    info = probe(m.path)
    out = transcode_video(
        m.path,
        tmp_path / "v.mp4",
        info=info,
        config=TranscodeConfig(audio=False),
        dst_audio=tmp_path / "a.wav",
    )
    assert out["cache_audio"] is None and out["cache_sample_rate"] is None
    assert not (tmp_path / "a.wav").exists()
    out = transcode_video(m.path, tmp_path / "w.mp4", info=info)  # no dst_audio
    assert out["cache_audio"] is None


def x264_settings(path: Path) -> dict[str, str]:
    """The options libx264 wrote into the stream (its SEI: ``... cabac=0 ref=1 ...``)."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    text = data[start + 9 : data.index(b"\x00", start)].decode()
    return dict(kv.split("=", 1) for kv in text.split())


@pytest.mark.parametrize("fast_decode", [True, False])
def test_encoder_settings(media: dict[str, MediaFile], tmp_path: Path, fast_decode: bool) -> None:
    m = media["xvid_packed2.avi"]
    config = TranscodeConfig(gop=6, crf=20, fast_decode=fast_decode)
    transcode_video(m.path, tmp_path / "v.mp4", info=probe(m.path), config=config)
    x264 = x264_settings(tmp_path / "v.mp4")
    assert (x264["keyint"], x264["scenecut"], x264["bframes"]) == ("6", "0", "0")
    assert x264["crf"].startswith("20.0")
    # tune=fastdecode: CAVLC instead of CABAC and no deblocking filter.
    assert x264["cabac"] == ("0" if fast_decode else "1")
    assert x264["deblock"].startswith("0:" if fast_decode else "1:")
    assert probe(tmp_path / "v.mp4").keyframes == tuple(range(0, m.num_frames, 6))


def test_wrong_frame_count_leaves_no_file(
    media: dict[str, MediaFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the written cache decoded to another count, nothing is left at the destination."""

    def short_probe(path: Path, **kw: object) -> object:
        real = probe(path)
        return dataclasses.replace(real, num_frames=real.num_frames - 1)

    monkeypatch.setattr(transcode, "probe", short_probe)
    m = media["h264_gop250.mp4"]
    dst = tmp_path / "v.mp4"
    with pytest.raises(errors.CorruptMediaError, match="v.mp4.*99 frames.*100"):
        transcode_video(m.path, dst, info=probe(m.path), dst_audio=tmp_path / "a.wav")
    assert list(tmp_path.iterdir()) == []


def test_real_ucf101_clip(tmp_path: Path) -> None:
    if not UCF_CLIP.is_file():
        pytest.skip(f"real UCF-101 clip not found at {UCF_CLIP} (set AVSSL_SHARED_DATA)")
    info = probe(UCF_CLIP)
    assert info.packed_b_frames and info.keyframes == (0,)  # the reason for the cache
    dst = tmp_path / "ucf.mp4"
    out = transcode_video(UCF_CLIP, dst, info=info, dst_audio=tmp_path / "ucf.wav")
    assert out["cache_num_frames"] == 164
    assert (out["cache_width"], out["cache_height"]) == (320, 240)  # short side 240 < 256: kept
    assert out["cache_sample_rate"] == 44100

    cache = probe(dst)
    assert cache.num_frames == 164
    assert len(cache.seek_points) == len(range(0, 164, 8))
    sequential = np.stack([f for _, f in iter_frames(dst, info=cache)])
    source = np.stack([f for _, f in iter_frames(UCF_CLIP, info=info)])
    errs = [mean_abs_error(a, b) for a, b in zip(sequential, source, strict=True)]
    assert max(errs) < MAX_MEAN_ABS_ERROR, f"worst frame {int(np.argmax(errs))}: {max(errs):.2f}"

    # Exactness of the cache itself: random reads give the sequential decode's pixels.
    decode.clear_caches()
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.choice(164, size=3, replace=False)
        assert np.array_equal(frames(dst, idx), sequential[idx]), idx
