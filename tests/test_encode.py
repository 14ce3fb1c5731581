"""avssl.data.encode: round trips, the DivX packed bitstream, audio alignment, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from conftest import real_or_skip
from media import MediaFile, click_audio, find_clicks, index_frame, index_frames, read_index

from avssl.data.divx import DIVX_PACKED_USER_DATA, n_vop_for, pack_b_frames, vop_type
from avssl.data.encode import MP3_AVI_DELAY_SAMPLES, write_audio, write_video

VOP = b"\x00\x00\x01\xb6"


def decode_all(path: Path) -> tuple[list[np.ndarray], list[av.VideoFrame]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], frames


def video_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(video=0) if p.size]


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = []
        for f in c.decode(s):
            x = f.to_ndarray()
            if not f.format.is_planar:
                x = x.reshape(-1, len(f.layout.channels)).T
            chunks.append(x.astype(np.float32))
        return np.concatenate(chunks, axis=1), s.codec_context.sample_rate


def ffmpeg_logs(path: Path) -> list[str]:
    """FFmpeg's log lines while PyAV decodes the whole video of ``path``."""
    old = av.logging.get_level()
    av.logging.set_level(av.logging.VERBOSE)
    try:
        with av.logging.Capture(local=False) as logs:
            with av.open(str(path)) as c:
                for _ in c.decode(video=0):
                    pass
    finally:
        av.logging.set_level(old)
    return [msg for _, _, msg in logs]


# --------------------------------------------------------------------------------------------
# Test frames
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(48, 64), (96, 128), (240, 320), (50, 70)])
def test_index_frames_read_back(size: tuple[int, int]) -> None:
    for i in [0, 1, 2, 5, 127, 128, 300, 4095]:
        f = index_frame(i, *size)
        assert f.shape == (*size, 3) and f.dtype == np.uint8
        assert read_index(f) == i
        assert read_index(f.transpose(2, 0, 1)) == i  # (C, H, W) too


def test_find_clicks() -> None:
    x = click_audio(10_000, [100, 5_000, 9_999], channels=1)
    assert find_clicks(x[0]) == [100, 5_000, 9_999]


# --------------------------------------------------------------------------------------------
# Round trips of every generated file
# --------------------------------------------------------------------------------------------
def test_generated_set_round_trips(media: dict[str, MediaFile]) -> None:
    for m in media.values():
        frames, raw = decode_all(m.path)
        assert len(frames) == m.num_frames, m.name
        assert [read_index(f) for f in frames] == list(range(m.num_frames)), m.name
        assert frames[0].shape == (m.height, m.width, 3)
        expected = np.stack([index_frame(i, m.height, m.width) for i in range(len(frames))])
        err = np.abs(np.stack(frames).astype(np.int16) - expected).mean()
        assert err < 8, f"{m.name}: mean abs error {err:.2f} (lossy, but should be small)"
        if m.keyframes is not None:
            assert [i for i, f in enumerate(raw) if f.key_frame] == list(m.keyframes), m.name
        if m.path.suffix == ".avi":  # the header's frame count is the truth (no empty chunks)
            with av.open(str(m.path)) as c:
                assert c.streams.video[0].frames == m.num_frames, m.name
                assert len([p for p in c.demux(video=0) if p.size]) == m.num_frames
        if m.pts_s is not None:
            got = [float(f.pts * f.time_base) for f in raw]
            np.testing.assert_allclose(got, m.pts_s, atol=1.5 / 90000)


def test_codecs_and_tags(media: dict[str, MediaFile]) -> None:
    expect = {
        "xvid_b.avi": ("mpeg4", "XVID", "mp3float"),
        "xvid_packed.avi": ("mpeg4", "XVID", "mp3float"),
        "h264_gop250.mp4": ("h264", "avc1", "aac"),
        "vp8.webm": ("vp8", None, "opus"),
        "h264_opus.mkv": ("h264", None, "opus"),
    }
    for name, (vcodec, tag, acodec) in expect.items():
        with av.open(str(media[name].path)) as c:
            v = c.streams.video[0]
            assert v.codec_context.name == vcodec
            if tag:
                assert v.codec_tag == tag
            assert c.streams.audio[0].codec_context.name == acodec


def test_b_frames_reorder(media: dict[str, MediaFile]) -> None:
    for name in ["xvid_b.avi", "h264_gop250.mp4", "h264_gop30.mp4", "h264_vfr.mp4"]:
        with av.open(str(media[name].path)) as c:
            pts = [p.pts for p in c.demux(video=0) if p.size]
        if name.endswith(".avi"):  # AVI stores no pts: look at the VOP types instead
            types = [vop_type(bytes(p)) for p in video_packets(media[name].path)]
            assert "B" in types
        else:
            assert pts != sorted(pts), f"{name}: no reordering, so no B-frames"


def test_options_pass_through(tmp_path: Path) -> None:
    # {"bf": "3"} (an AVOption) overrides max_b_frames=0.
    p = tmp_path / "bf.mp4"
    write_video(p, index_frames(30, 48, 64), fps=25, options={"bf": "3"})
    pts = [pk.pts for pk in video_packets(p)]
    assert pts != sorted(pts)
    write_video(p, index_frames(30, 48, 64), fps=25)
    pts = [pk.pts for pk in video_packets(p)]
    assert pts == sorted(pts)


def test_iterable_and_array_inputs_agree(tmp_path: Path) -> None:
    arr = index_frames(12, 48, 64)
    write_video(tmp_path / "a.mp4", arr, fps=10)
    write_video(tmp_path / "b.mp4", iter(list(arr)), fps=10)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


@pytest.mark.parametrize("name", ["d.avi", "d.webm", "d.mp4", "d.mkv"])
def test_deterministic(tmp_path: Path, name: str) -> None:
    """The same call writes the same bytes with MPEG-4 (B-frames) and VP8. libx264 is not
    byte-reproducible on every machine (avssl/data/encode.py): for H.264 the same call gives the
    same packets in number, timing and key flags, and the same frames by content."""
    frames = index_frames(20, 48, 64)
    codec = {"avi": "mpeg4", "webm": "vp8"}.get(name[2:], "h264")
    sr = 48000
    audio = click_audio(sr, [100, 30000])
    a, b = tmp_path / "1" / name, tmp_path / "2" / name
    for p in (a, b):
        write_video(p, frames, fps=20, codec=codec, max_b_frames=2 if codec != "vp8" else 0,
                    audio=audio, sample_rate=sr)  # fmt: skip
    if codec != "h264":
        assert a.read_bytes() == b.read_bytes()
        return

    def layout(p: Path) -> list[tuple[str, int | None, bool]]:
        with av.open(str(p)) as c:
            return [(k.stream.type, k.pts, k.is_keyframe) for k in c.demux() if k.size]

    assert layout(a) == layout(b)
    got_a, _ = decode_all(a)
    got_b, _ = decode_all(b)
    assert [read_index(f) for f in got_a] == [read_index(f) for f in got_b] == list(range(20))


def test_ffv1_lossless_rgb(tmp_path: Path) -> None:
    frames = index_frames(8, 48, 64)
    p = tmp_path / "l.mkv"
    write_video(p, frames, fps=8, codec="ffv1", pix_fmt="bgr0")
    got, _ = decode_all(p)
    assert np.array_equal(np.stack(got), frames)


# --------------------------------------------------------------------------------------------
# DivX/Xvid packed B-frames
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_b", [1, 2])
def test_packed_layout(media: dict[str, MediaFile], max_b: int) -> None:
    m = media["xvid_packed.avi" if max_b == 1 else "xvid_packed2.avi"]
    pkts = [bytes(p) for p in video_packets(m.path)]
    assert len(pkts) == m.num_frames  # one chunk per frame, like real packed files
    assert DIVX_PACKED_USER_DATA in pkts[0]
    assert pkts[0].index(DIVX_PACKED_USER_DATA) < pkts[0].index(VOP)  # before the first VOP
    n_vops = [p for p in pkts if len(p) <= 8]
    packed = [p for p in pkts if p.count(VOP) == 2]
    assert n_vops and len(n_vops) == len(packed)
    for p in n_vops:
        assert p.startswith(VOP) and p[4] >> 6 == 1  # a P-VOP header ...
    for p in packed:  # ... anchor + B in one chunk
        second = p.index(VOP, p.index(VOP) + 4)
        assert vop_type(p) in "IP" and vop_type(p[second:]) == "B"
    # In decode order: each packed chunk is followed by up to (max_b - 1) lone B-VOPs (as many
    # as the encoder put between the two anchors), then an N-VOP.
    lone_bs = 0
    for i, p in enumerate(pkts):
        if p.count(VOP) == 2:
            k = i + 1
            while len(pkts[k]) > 8:
                assert vop_type(pkts[k]) == "B"
                k += 1
            assert k - i - 1 <= max_b - 1
            lone_bs += k - i - 1
    assert (lone_bs > 0) == (max_b > 1)
    # FFmpeg sees the packed bitstream (and says so).
    assert any("packed B-frames" in line for line in ffmpeg_logs(m.path))


def test_packed_decodes_like_unpacked(tmp_path: Path) -> None:
    """Packing rewrites the container only: the decoded pictures are bit-identical."""
    frames = index_frames(40, 48, 64)
    for max_b in (1, 2):
        a, b = tmp_path / f"plain{max_b}.avi", tmp_path / f"packed{max_b}.avi"
        write_video(a, frames, fps=25, codec="mpeg4", max_b_frames=max_b, gop=250)
        write_video(b, frames, fps=25, codec="mpeg4", max_b_frames=max_b, gop=250,
                    packed_b_frames=True)  # fmt: skip
        fa, _ = decode_all(a)
        fb, _ = decode_all(b)
        assert len(fa) == len(fb) == 40
        assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
        assert not any("packed B-frames" in line for line in ffmpeg_logs(a))


def test_n_vop_matches_real_ucf_clip() -> None:
    """Every N-VOP in the real UCF-101 clip is what n_vop_for writes for its anchor."""
    path = real_or_skip("ucf101_xvid_packed.avi")
    pkts = [bytes(p) for p in video_packets(path)]
    assert DIVX_PACKED_USER_DATA in pkts[0]
    checked = 0
    for i, p in enumerate(pkts):
        if len(p) <= 8:
            j = i - 1
            while pkts[j].count(VOP) < 2:  # the packed anchor+B chunk before it
                j -= 1
            assert n_vop_for(pkts[j], 5) == p  # 25 fps: av_log2(24) + 1 = 5 bits
            checked += 1
    assert checked == 54


def test_pack_b_frames_pure() -> None:
    def vop(kind: str, incr: int, payload: bytes = b"\xaa" * 10) -> bytes:
        code = "IPB".index(kind)
        bits = f"{code:02b}0" + "1" + f"{incr:05b}" + "1" + "1"  # ..., vop_coded=1
        bits += "0" * (-len(bits) % 8)
        return VOP + int(bits, 2).to_bytes(len(bits) // 8, "big") + payload

    vol = b"\x00\x00\x01\x20\x08\x86"
    stream = [vol + vop("I", 0), vop("P", 3), vop("B", 1), vop("B", 2), vop("P", 6), vop("B", 4)]
    out = pack_b_frames(stream, 5)
    assert len(out) == len(stream)
    assert out[0] == vol + DIVX_PACKED_USER_DATA + vop("I", 0)
    assert out[1] == vop("P", 3) + vop("B", 1)
    assert out[2] == vop("B", 2)
    assert out[3] == n_vop_for(vop("P", 3), 5) and len(out[3]) == 6
    assert out[4] == vop("P", 6) + vop("B", 4)
    assert out[5] == n_vop_for(vop("P", 6), 5)
    # N-VOP bits: 01 0 1 00110 1 0 | 0 1111 (stuffing)
    assert out[5] == VOP + bytes([0b01010011, 0b01001111])


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "codec", "sr", "delay"),
    [
        ("a.mp4", "aac", 44100, 0),
        ("a.mkv", "aac", 44100, 0),
        ("a.avi", "mp3", 44100, MP3_AVI_DELAY_SAMPLES),
        ("a.webm", "opus", 48000, 0),
        ("o.mkv", "opus", 48000, 0),
    ],
)
def test_audio_clicks_in_place(tmp_path: Path, name: str, codec: str, sr: int, delay: int) -> None:
    clicks = [1000, 12345, 40000, 70001]
    audio = click_audio(sr * 2, clicks)
    p = tmp_path / name
    vcodec = {"avi": "mpeg4", "webm": "vp8"}.get(name[2:], "h264")
    write_video(p, index_frames(50, 48, 64), fps=25, codec=vcodec, audio=audio, sample_rate=sr,
                audio_codec=codec)  # fmt: skip
    x, got_sr = decode_audio(p)
    assert got_sr == sr and x.shape[0] == 2
    assert find_clicks(x[0]) == [c + delay for c in clicks]


def test_audio_interleaved(media: dict[str, MediaFile]) -> None:
    """Audio and video packets alternate in the file (no stream waits for the other's end)."""
    for name in ["xvid_b.avi", "h264_gop250.mp4", "vp8.webm"]:
        with av.open(str(media[name].path)) as c:
            order = [(p.stream.type, float(p.dts * p.time_base)) for p in c.demux() if p.size]
        last: dict[str, float] = {}
        worst = 0.0
        for kind, t in order:
            last[kind] = t
            if len(last) == 2:
                worst = max(worst, abs(last["video"] - last["audio"]))
        assert worst < 1.0, f"{name}: streams drift {worst:.2f} s apart in file order"


def test_write_audio_only(tmp_path: Path) -> None:
    p = tmp_path / "s.m4a"
    write_audio(p, click_audio(44100, [500, 20000]), sample_rate=44100)
    with av.open(str(p)) as c:
        assert not c.streams.video and c.streams.audio
    x, _ = decode_audio(p)
    assert find_clicks(x[0]) == [500, 20000]


# --------------------------------------------------------------------------------------------
# Atomic writes and argument errors
# --------------------------------------------------------------------------------------------
def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    p = tmp_path / "x.mp4"
    write_video(p, index_frames(5, 48, 64), fps=5)
    before = p.read_bytes()

    def bad_frames():  # type: ignore[no-untyped-def]
        yield index_frame(0, 48, 64)
        yield np.zeros((10, 10, 3), np.uint8)  # wrong size mid-stream

    with pytest.raises(ValueError, match="frame 1"):
        write_video(p, bad_frames(), fps=5)
    assert p.read_bytes() == before  # the old file is untouched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["x.mp4"]  # no temp file left


def test_atomic_files_get_the_umask_mode(tmp_path: Path) -> None:
    """mkstemp's temporary files are 0600; the final file must be as open() would make it."""
    from avssl.data.manifest import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.jsonl", "{}\n")
    finally:
        os.umask(old)
    import avssl.data.manifest as m

    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o666 & ~m._UMASK


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("x.rm", {}, "suffix"),
        ("x.mp4", {"packed_b_frames": True, "max_b_frames": 1}, "packed_b_frames"),
        ("x.avi", {"codec": "mpeg4", "packed_b_frames": True}, "max_b_frames"),
        ("x.avi", {"codec": "mpeg4", "pts_s": [0.0, 0.1, 0.2]}, "variable frame rate"),
        ("x.mp4", {"pts_s": [0.0, 0.1]}, "pts_s"),
        ("x.mp4", {"pts_s": [0.0, 0.1, 0.1]}, "increase strictly"),
        ("x.webm", {"codec": "vp8", "audio": np.zeros((1, 100), np.float32)}, "44100 Hz"),
        ("x.mp4", {"audio": np.full((1, 100), np.nan, np.float32)}, "NaN"),
        ("x.avi", {"codec": "mpeg4", "qscale": 40}, "qscale"),
    ],
)
def test_argument_errors(tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    p = tmp_path / name
    with pytest.raises(ValueError, match=match) as e:
        write_video(p, index_frames(3, 48, 64), fps=10, **kwargs)
    assert str(p) in str(e.value)
    assert not p.exists()


def test_frame_errors(tmp_path: Path) -> None:
    p = tmp_path / "f.mp4"
    with pytest.raises(ValueError, match="uint8"):
        write_video(p, np.zeros((2, 48, 64, 3), np.float32), fps=10)
    with pytest.raises(ValueError, match="even"):
        write_video(p, np.zeros((2, 47, 64, 3), np.uint8), fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_video(p, [], fps=10)
    assert not p.exists()
