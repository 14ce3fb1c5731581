"""The exact-frame suite: every backend, every file kind, random access == sequential decode.

Contract (STYLE.md habit 3): for a backend that decode.py allows on a file, every frame that
``read_frames`` returns equals PyAV's sequential decode of that file (``to_ndarray("rgb24")``),
max pixel difference 0, for every access pattern (tests/exact.py). A backend that
``backend_refusal`` refuses must raise BackendRefusedError when named, and the diagnostic tests
run the raw library anyway to show that the refusal is justified.

Also here: probe's fields and read_audio's sample exactness (clicks at known sample offsets).

    pytest tests/test_decode_exact.py --exact-table   # prints the backend x file table
    pytest tests/test_decode_exact.py --exact-full    # every pattern on every frame
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import EXACT_KINDS, EXACT_TABLE, real_or_skip
from exact import check_backend_exact, file_patterns, summarize
from media import COCKATOO, EXACT_MEDIA, REAL_CLIPS, MediaFile, find_clicks, read_index

from avssl import errors
from avssl.data.decode import (
    BACKENDS,
    available_backends,
    backend_refusal,
    probe,
    read_audio,
    read_frames,
)

FILES = [*EXACT_MEDIA, *REAL_CLIPS]
ALL_BACKENDS = ["auto", *BACKENDS]


def resolve(name: str, media: dict[str, MediaFile]) -> Path:
    return media[name].path if name in media else real_or_skip(name)


def needs(backend: str) -> None:
    if backend != "auto" and backend not in available_backends():
        pytest.skip(f"backend {backend} is not installed")


def report(mismatches: list, limit: int = 8) -> str:
    return "\n".join(str(m) for m in mismatches[:limit])


# --------------------------------------------------------------------------------------------
# The exact-frame suite
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("name", FILES)
def test_exact_frames(
    name: str, backend: str, media: dict[str, MediaFile], exact_full: bool
) -> None:
    path = resolve(name, media)
    needs(backend)
    info = probe(path)
    EXACT_KINDS[name] = info.kind
    reason = None if backend in ("auto", "pyav") else backend_refusal(backend, info)
    if reason is not None:
        EXACT_TABLE[(name, backend)] = "refused"
        with pytest.raises(errors.BackendRefusedError) as e:
            read_frames(path, [0], backend=backend)  # type: ignore[arg-type]
        assert str(path) in str(e.value) and backend in str(e.value)
        return
    found = check_backend_exact(path, backend, file_patterns(path, full=exact_full))
    EXACT_TABLE[(name, backend)] = summarize(found)
    assert not found, (
        f"{backend} is not exact on {name} (kind {info.kind}): {summarize(found)}\n" + report(found)
    )


@pytest.mark.diagnostic
@pytest.mark.parametrize("backend", BACKENDS[1:])
@pytest.mark.parametrize("name", FILES)
def test_refusal_is_justified(
    name: str, backend: str, media: dict[str, MediaFile], capsys: pytest.CaptureFixture[str]
) -> None:
    """Run the raw library on files where decode.py refuses it; it should get frames wrong."""
    path = resolve(name, media)
    needs(backend)
    info = probe(path)
    reason = backend_refusal(backend, info)
    if reason is None:
        pytest.skip(f"{backend} is allowed on {name}")
    pats = file_patterns(path, quick=True)  # enough to show a wrong frame; stays fast
    found = check_backend_exact(path, f"raw-{backend}", pats, stop_after=20)
    EXACT_TABLE[(name, f"raw-{backend}")] = summarize(found)
    with capsys.disabled():
        print(f"\n[diagnostic] raw {backend} on {name} ({info.kind}): {summarize(found)}")
    if not found:
        pytest.skip(
            f"raw {backend} was exact on {name}; the refusal ({reason}) rests on other files "
            f"of kind {info.kind}"
        )


# --------------------------------------------------------------------------------------------
# read_frames: layout, order, repeats, pts, frame identity
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["xvid_packed.avi", "h264_gop30.mp4", "h264_vfr.mp4"])
def test_read_frames_layout_and_identity(name: str, media: dict[str, MediaFile]) -> None:
    m = media[name]
    info = probe(m.path)
    idx = [5, 0, m.num_frames - 1, 5, 5, 31, 30, 29]
    clip = read_frames(m.path, idx)
    assert clip.data.dtype.is_floating_point is False and str(clip.data.dtype) == "torch.uint8"
    assert tuple(clip.data.shape) == (len(idx), 3, m.height, m.width)
    assert [read_index(f.numpy()) for f in clip.data] == idx
    assert clip.indices.tolist() == idx
    assert str(clip.pts_s.dtype) == "torch.float64"
    np.testing.assert_allclose(clip.pts_s.numpy(), [info.pts_s[i] for i in idx])
    assert clip.backend in BACKENDS
    empty = read_frames(m.path, [])
    assert tuple(empty.data.shape)[0] == 0


def test_read_frames_accepts_numpy_and_torch(media: dict[str, MediaFile]) -> None:
    import torch

    m = media["h264_gop30.mp4"]
    a = read_frames(m.path, np.array([3, 1, 2]))
    b = read_frames(m.path, torch.tensor([3, 1, 2]))
    assert (a.data == b.data).all()


def test_read_frames_size(media: dict[str, MediaFile]) -> None:
    m = media["h264_gop30.mp4"]
    clip = read_frames(m.path, [0, 77], size=(48, 64))
    assert tuple(clip.data.shape) == (2, 3, 48, 64)
    assert [read_index(f.numpy()) for f in clip.data] == [0, 77]


# --------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*EXACT_MEDIA, "silent_audio.mp4"])
def test_probe_generated(name: str, media: dict[str, MediaFile]) -> None:
    m = media[name]
    info = probe(m.path)
    assert info.path == str(m.path)
    assert info.num_frames == m.num_frames
    assert info.header_num_frames in (0, m.num_frames)
    assert (info.width, info.height) == (m.width, m.height)
    assert info.codec == m.codec
    if name.endswith(".avi"):
        assert info.codec_tag == "XVID"
        assert info.container == "avi"
        assert info.header_num_frames == m.num_frames
        assert info.num_packets == m.num_frames  # N-VOP placeholders count as packets
    assert info.b_frames == m.b_frames
    assert info.packed_b_frames == m.packed_b_frames
    assert info.vfr == m.vfr
    assert ("packed-b" in info.kind) == m.packed_b_frames
    assert ("vfr" in info.kind) == m.vfr
    assert len(info.pts_s) == m.num_frames
    assert all(b > a for a, b in zip(info.pts_s, info.pts_s[1:], strict=False))
    if m.pts_s is not None:
        np.testing.assert_allclose(info.pts_s, m.pts_s, atol=1e-4)
    else:
        tick = 1e-3 + 1e-9  # Matroska stores milliseconds
        t0 = info.pts_s[0] if m.starts_late else 0.0
        assert (info.pts_s[0] > tick) == m.starts_late, info.pts_s[0]
        want = t0 + np.arange(m.num_frames) / m.fps
        np.testing.assert_allclose(info.pts_s, want, atol=tick)
        assert info.fps == pytest.approx(m.fps, rel=0.01)
    assert info.keyframes[0] == 0
    if m.keyframes is not None:
        assert info.keyframes == m.keyframes
    seek = [sp.frame_index for sp in info.seek_points]
    assert set(seek) <= set(info.keyframes) and seek == sorted(seek)
    if name == "h264_gop30.mp4":
        assert seek == [0, 30, 60, 90, 120]  # every keyframe of a plain H.264 file verifies
    assert info.has_audio == m.has_audio
    if m.has_audio:
        a = info.audio[0]
        assert (a.sample_rate, a.channels) == (m.sample_rate, m.channels)
        assert a.audible == m.audible
        written_s = m.pts_s[-1] + 1 / m.fps if m.pts_s else m.num_frames / m.fps
        assert a.duration_s == pytest.approx(written_s + info.pts_s[0], abs=0.1)
    assert info.audible == (m.has_audio and m.audible)


def test_probe_real_ucf(shared_data: Path) -> None:
    info = probe(real_or_skip("ucf101_xvid_packed.avi"))
    assert info.num_frames == 164 and info.header_num_frames == 164
    assert (info.codec, info.codec_tag, info.container) == ("mpeg4", "XVID", "avi")
    assert info.packed_b_frames and info.b_frames
    assert info.keyframes == (0,)
    assert info.width == 320 and info.height == 240
    assert info.fps == pytest.approx(25.0)
    assert not info.pts_trusted or len(info.pts_s) == 164
    assert info.has_audio and info.audible  # mp3 speech/music
    assert info.audio[0].sample_rate == 44100 and info.audio[0].channels == 2


def test_probe_real_cockatoo_is_silent(shared_data: Path) -> None:
    info = probe(real_or_skip(COCKATOO))
    assert info.has_audio and not info.audible  # digitally silent track (-91 dBFS)
    assert info.audio[0].peak_dbfs < -80


def test_probe_real_others(shared_data: Path) -> None:
    nasa = probe(real_or_skip("nasa_h264_2audio.mp4"))
    assert nasa.num_frames == 325 and len(nasa.audio) == 2
    assert nasa.keyframes == (0, 202)
    fire = probe(real_or_skip("fire2_h264_vfr.mp4"))
    assert fire.vfr and fire.num_frames == 25
    pancake = probe(real_or_skip("pancake_h264_opus.mkv"))
    assert pancake.num_frames == 310 and pancake.header_num_frames == 0
    assert pancake.audio[0].codec == "opus"


# --------------------------------------------------------------------------------------------
# read_audio: sample exactness with clicks
# --------------------------------------------------------------------------------------------
AUDIO_FILES = ["h264_gop250.mp4", "xvid_b.avi", "h264_vfr.mp4", "vp8.webm", "h264_opus.mkv"]


def expected_clicks(m: MediaFile, rate: int, n0: int, n: int) -> list[int]:
    """Where the file's clicks fall in a window of ``n`` samples from sample ``n0`` at ``rate``."""
    out = []
    for s in m.clicks:
        j = round((s + m.audio_delay) * rate / m.sample_rate) - n0
        if 5 <= j < n - 5:
            out.append(j)
    return out


@pytest.mark.parametrize("rate", [48000, 16000, 44100])
@pytest.mark.parametrize("name", AUDIO_FILES)
def test_read_audio_clicks(name: str, rate: int, media: dict[str, MediaFile]) -> None:
    m = media[name]
    rng = np.random.default_rng(abs(hash((name, rate))) % 2**32)
    total_s = max(m.clicks) / m.sample_rate + 0.3
    starts = [0.0, -0.1, *rng.uniform(-0.2, total_s - 0.1, 6)]
    for start in starts:
        dur = float(rng.uniform(0.05, 0.8))
        a = read_audio(m.path, float(start), dur, sample_rate=rate)
        n = round(dur * rate)
        assert tuple(a.data.shape) == (1, n) and a.sample_rate == rate
        assert str(a.data.dtype) == "torch.float32"
        n0 = round(start * rate)
        assert a.start_s == pytest.approx(n0 / rate)
        got = find_clicks(a.data[0].numpy(), threshold=0.3)
        want = expected_clicks(m, rate, n0, n)
        got_inner = [g for g in got if 5 <= g < n - 5]
        assert len(got_inner) == len(want), f"start {start:.4f}: clicks {got_inner} vs {want}"
        for g, w in zip(got_inner, want, strict=True):
            assert abs(g - w) <= 1, (
                f"{name} at {rate} Hz, start {start:.4f}s: click at {g}, expected {w}"
            )


@pytest.mark.parametrize("name", ["h264_gop250.mp4", "xvid_b.avi"])
def test_read_audio_window_equals_cut(name: str, media: dict[str, MediaFile]) -> None:
    m = media[name]
    long = read_audio(m.path, 0.0, 2.0, sample_rate=48000).data[0].numpy()
    for start in [0.25, 0.5003, 1.23456]:
        short = read_audio(m.path, start, 0.3, sample_rate=48000).data[0].numpy()
        n0 = round(start * 48000)
        np.testing.assert_allclose(short, long[n0 : n0 + short.size], atol=1e-5)


def test_read_audio_takes_any_real_number_of_seconds(media: dict[str, MediaFile]) -> None:
    """Times from a probe are tensors (``info.pts_s``); NumPy and Fraction values count too."""
    import torch

    m = media["h264_gop250.mp4"]
    want = read_audio(m.path, 0.5, 0.25, sample_rate=16000).data
    pts = torch.tensor([0.0, 1.0])
    times = [
        (torch.tensor(0.5), torch.tensor(0.25)),
        (np.float32(0.5), np.float64(0.25)),
        (Fraction(1, 2), Fraction(1, 4)),
        (pts[1] - 0.5, 0.25),  # the README's pattern: clip.pts_s[i] - 0.5
    ]
    for start, dur in times:
        assert torch.equal(read_audio(m.path, start, dur, sample_rate=16000).data, want)
    for bad in ["0.5", None, float("nan"), pts]:
        with pytest.raises(ValueError, match="start_s must be"):
            read_audio(m.path, bad, 0.25, sample_rate=16000)  # type: ignore[arg-type]


def test_read_audio_mono_is_mean(media: dict[str, MediaFile]) -> None:
    m = media["h264_gop250.mp4"]  # stereo: left clicks 0.9, right 0.45
    st = read_audio(m.path, 0.1, 1.5, sample_rate=44100, mono=False).data
    mono = read_audio(m.path, 0.1, 1.5, sample_rate=44100, mono=True).data
    assert st.shape[0] == 2 and mono.shape[0] == 1
    np.testing.assert_allclose(mono[0].numpy(), st.mean(dim=0).numpy(), atol=1e-6)
    peaks = [float(np.abs(st[c].numpy()).max()) for c in (0, 1)]
    assert peaks[0] == pytest.approx(2 * peaks[1], rel=0.1)


@pytest.mark.parametrize("name", ["h264_gop250.mp4", "vp8.webm"])
def test_read_audio_past_either_end(name: str, media: dict[str, MediaFile]) -> None:
    m = media[name]
    rate = 48000
    info = probe(m.path)
    end_s = info.audio[0].duration_s
    before = read_audio(m.path, -0.5, 1.0, sample_rate=rate).data[0].numpy()
    assert before.shape == (rate,)
    assert np.abs(before[: rate // 2 - 50]).max() < 1e-4  # zeros before the stream starts
    assert find_clicks(before, threshold=0.3) == [
        j + rate // 2 for j in expected_clicks(m, rate, 0, rate // 2)
    ]
    after = read_audio(m.path, end_s - 0.2, 1.0, sample_rate=rate).data[0].numpy()
    assert after.shape == (rate,)
    assert np.abs(after[int(0.2 * rate) + 50 :]).max() < 1e-4  # zeros after it ends
    far = read_audio(m.path, end_s + 10.0, 0.5, sample_rate=rate).data
    assert tuple(far.shape) == (1, rate // 2) and float(far.abs().max()) == 0.0
    for start in (-0.5, end_s - 0.2):
        with pytest.raises(errors.MediaError) as e:
            read_audio(m.path, start, 1.0, sample_rate=rate, out_of_range="error")
        assert str(m.path) in str(e.value)
        assert f"{start:.4f}"[:5] in str(e.value), str(e.value)
    inside = read_audio(m.path, 0.1, 0.5, sample_rate=rate, out_of_range="error")
    assert inside.data.shape[1] == rate // 2


def test_read_audio_real_ucf_clicks_free(shared_data: Path) -> None:
    """The real clip's mp3 audio reads with the right length and is audible at 16 kHz."""
    path = real_or_skip("ucf101_xvid_packed.avi")
    a = read_audio(path, 1.0, 2.0, sample_rate=16000, mono=False)
    assert tuple(a.data.shape) == (2, 32000)
    assert float(a.data.abs().max()) > 0.01
