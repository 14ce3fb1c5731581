"""Every video a user has (issue 21): frame folders, animated GIFs, held frames, concealed damage,
trailing bytes -- read exactly, or refused with a precise reason.

Frame folders and GIFs go through the same exact-frame check as every backend (tests/exact.py:
random access through ``read_frames`` == a sequential decode, here written independently of
avssl: each image in the order of its number).
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import real_or_skip
from exact import check_backend_exact, file_patterns, summarize
from media import index_frame, read_index, write_frame_folder
from media import write_gif as media_gif

from avssl import errors
from avssl.data.decode import backend_refusal, iter_frames, probe, read_audio, read_frames
from avssl.data.encode import write_video
from avssl.data.frame_folder import DEFAULT_FPS, list_frames


def write_frames(folder: Path, n: int, *, name: str = "{:05d}.jpg", start: int = 0,
                 step: int = 1, size: tuple[int, int] = (96, 128)) -> Path:  # fmt: skip
    """``n`` index frames as images named ``name.format(number)``."""
    frames = (index_frame(i, *size) for i in range(n))
    return write_frame_folder(folder, frames, name, start, step)


def write_gif(path: Path, delays_cs: list[int], size: tuple[int, int] = (96, 128)) -> Path:
    """An animated GIF of index frames; frame i shows for ``delays_cs[i]`` hundredths of a s."""
    return media_gif(path, [index_frame(i, *size) for i in range(len(delays_cs))], delays_cs)


# --------------------------------------------------------------------------------------------
# Frame folders
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["{:05d}.jpg", "img_{:05d}.jpg", "{:08d}.png", "frame{}.png"])
def test_frame_folder_is_exact(tmp_path: Path, name: str) -> None:
    d = write_frames(tmp_path / "seq", 40, name=name)
    info = probe(d)
    assert info.is_frame_folder and info.num_frames == 40 and (info.height, info.width) == (96, 128)
    assert info.fps == DEFAULT_FPS and info.pts_s[1] == pytest.approx(1 / DEFAULT_FPS)
    assert not info.vfr and info.kind.startswith("frames/")
    found = check_backend_exact(d, "auto", file_patterns(d, full=True))
    assert not found, summarize(found)
    # Frame i is the i-th image in numeric order (frame10.png after frame9.png).
    got = read_frames(d, [12, 3, 39, 3]).data.permute(0, 2, 3, 1).numpy()
    assert [read_index(f) for f in got] == [12, 3, 39, 3]
    assert [read_index(f) for _, f in iter_frames(d, size=(48, 64))][:12] == list(range(12))


def test_frame_folder_refuses_other_backends(tmp_path: Path) -> None:
    info = probe(write_frames(tmp_path / "seq", 3))
    for b in ("decord", "opencv", "torchcodec"):
        assert "not folders of images" in str(backend_refusal(b, info))


def test_frame_folder_rate_from_sidecar_option_default(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "seq", 5)
    assert probe(d, fps=30).fps == 30 and probe(d).fps == DEFAULT_FPS
    (d / "fps.txt").write_text("12.5\n")
    assert probe(d, fps=30).fps == 12.5  # a sidecar wins over the option
    (d / "fps.txt").unlink()
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nname=seq\nframeRate=14\nseqLength=5\n")
    assert list_frames(d).fps == 14 and list_frames(d).fps_source == "seqinfo.ini"


def test_frame_folder_strided_numbers_are_not_gaps(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "every5th", 6, step=5)
    info = probe(d)
    assert info.num_frames == 6 and not info.vfr and info.pts_s[1] == pytest.approx(0.04)


def test_frame_folder_gap_is_refused_with_the_missing_numbers(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "seq", 20)
    for k in (7, 12, 13):
        (d / f"{k:05d}.jpg").unlink()
    with pytest.raises(errors.FrameGapError, match=r"3 frame number\(s\) missing: 7, 12..13"):
        probe(d)
    info = probe(d, strict=False)  # a reader may still take the frames, timed by number
    assert info.num_frames == 17 and info.vfr and info.pts_s[7] == pytest.approx(8 / DEFAULT_FPS)
    assert errors.FrameGapError.reason == "frame-gap"


def test_frame_folder_mixed_sizes_empty_and_non_images(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "mixed", 6)
    write_frames(tmp_path / "mixed", 1, start=6, size=(48, 64))
    with pytest.raises(errors.MixedFrameSizeError, match=r"128x96 x6, then 64x48 x1 \(first 00006"):
        probe(d)
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.EmptyMediaError, match="empty"):
        probe(tmp_path / "empty")
    docs = tmp_path / "docs"
    docs.mkdir()
    for k in range(3):
        (docs / f"note{k}.txt").write_text("x")
    with pytest.raises(errors.NotMediaError, match=r"no image frames \(3 entries: .txt x3\)"):
        probe(docs)
    bad = write_frames(tmp_path / "broken", 4)
    (bad / "00002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(errors.CorruptMediaError, match="00002.jpg"):
        probe(bad)


def test_rawframes_folder_takes_the_img_family(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "v_x", 8, name="img_{:05d}.jpg", start=1)
    write_frames(d, 7, name="flow_x_{:05d}.jpg", start=1)
    info = probe(d)
    assert info.num_frames == 8 and all(f.startswith("img_") for f in info.frame_files)
    (d / "img_00001.jpg").rename(d / "other_00001.jpg")
    (d / "img_00002.jpg").rename(d / "img_00002.png")
    assert probe(d, strict=False).num_frames == 7


def test_frame_folder_read_notices_a_changed_folder(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "seq", 6)
    info = probe(d)
    cv2.imwrite(str(d / "00003.jpg"), index_frame(5, 96, 128)[:, :, ::-1])
    import os

    os.utime(d / "00003.jpg", ns=(info.mtime_ns + 10**9, info.mtime_ns + 10**9))
    clip = read_frames(d, [3], info=info)  # each image is decoded as it is now
    assert read_index(clip.data[0].permute(1, 2, 0).numpy()) == 5
    # An image added: the folder's mtime moves past the probe's, the stale info is dropped.
    write_frames(d, 1, start=6)
    os.utime(d, ns=(info.mtime_ns + 2 * 10**9, info.mtime_ns + 2 * 10**9))
    clip = read_frames(d, [6], info=info)
    assert read_index(clip.data[0].permute(1, 2, 0).numpy()) == 0 and clip.indices.tolist() == [6]


def test_real_davis_and_vot_frame_folders(shared_data: Path) -> None:
    bmx = probe(shared_data / "tracking/propainter_bmx-trees/frames")
    assert (bmx.num_frames, bmx.width, bmx.height) == (80, 432, 240)
    bag = probe(shared_data / "tracking/dasiamrpn_bag/frames")
    assert bag.num_frames == 196 and bag.frame_files[0] == "00000001.jpg"
    found = check_backend_exact(bmx.path, "auto", file_patterns(Path(bmx.path)))
    assert not found, summarize(found)


# --------------------------------------------------------------------------------------------
# Animated GIF
# --------------------------------------------------------------------------------------------
def test_gif_delays_become_timestamps_and_reads_are_exact(tmp_path: Path) -> None:
    delays = [10, 10, 20, 10, 30, 10, 40, 10, 10, 20, 10, 10, 10, 10, 50, 10]
    g = write_gif(tmp_path / "anim.gif", delays)
    info = probe(g)
    want = np.concatenate([[0], np.cumsum(delays[:-1])]) / 100
    assert info.num_frames == len(delays) and info.vfr
    np.testing.assert_allclose(info.pts_s, want, atol=1e-6)
    found = check_backend_exact(g, "auto", file_patterns(g, full=True))
    assert not found, summarize(found)
    assert [read_index(f) for _, f in iter_frames(g)] == list(range(len(delays)))
    # Gray frames are luma, not palette indices (GIF decodes to bgra).
    gray = [f for _, f in iter_frames(g, gray=True)]
    rgb = [f for _, f in iter_frames(g)]
    lum = cv2.cvtColor(rgb[3], cv2.COLOR_RGB2GRAY).astype(int)
    assert np.abs(gray[3].astype(int) - lum).mean() < 3


def test_real_gif_is_exact(shared_data: Path) -> None:
    g = shared_data / "real-motion/intel-sample-videos__bolt-multi-size-detection.gif"
    info = probe(g)
    assert info.num_frames == 37 and info.container == "gif"
    found = check_backend_exact(g, "auto", file_patterns(g))
    assert not found, summarize(found)


# --------------------------------------------------------------------------------------------
# AVI with held frames (index entries without data)
# --------------------------------------------------------------------------------------------
def write_held_avi(
    path: Path, ticks: list[int], rate: int = 25, audio: np.ndarray | None = None, sr: int = 0
) -> Path:
    """MPEG-4 AVI whose frame i sits on index entry ``ticks[i]``: the muxer writes empty entries
    for the ticks in between (as capture tools do for dropped frames). ``audio``: mono float32
    PCM at ``sr`` Hz from time 0."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=rate)
        s.height, s.width, s.pix_fmt = 96, 128, "yuv420p"
        s.codec_context.time_base = Fraction(1, rate)
        a = c.add_stream("pcm_s16le", rate=sr, layout="mono") if audio is not None else None
        for i, t in enumerate(ticks):
            f = av.VideoFrame.from_ndarray(index_frame(i, 96, 128), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, rate)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None and audio is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for k in range(0, pcm.size, 1024):
                af = av.AudioFrame.from_ndarray(
                    pcm[None, k : k + 1024], format="s16", layout="mono"
                )
                af.sample_rate, af.pts, af.time_base = sr, k, Fraction(1, sr)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def test_held_frames_are_time_not_truncation(tmp_path: Path) -> None:
    from data_prep.videos import check_video

    ticks = [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38]
    avi = write_held_avi(tmp_path / "held.avi", ticks)
    with av.open(str(avi)) as c:
        assert c.streams.video[0].frames == ticks[-1] + 1  # the index has the empty entries
    info = probe(avi)
    assert info.num_frames == len(ticks) and info.held_frames == ticks[-1] + 1 - len(ticks)
    assert info.vfr
    np.testing.assert_allclose(info.pts_s, np.asarray(ticks) / 25, atol=1e-9)
    check_video(avi, info)  # not "truncated: the header declares 39 frames but only 16 decode"
    found = check_backend_exact(avi, "auto", file_patterns(avi, full=True))
    assert not found, summarize(found)
    assert backend_refusal("opencv", info) is not None  # OpenCV's seek is wrong on VFR


# --------------------------------------------------------------------------------------------
# Concealed damage and trailing bytes
# --------------------------------------------------------------------------------------------
def damaged_h264(folder: Path, n: int = 120, at: int = 40) -> tuple[Path, Path]:
    """(clean, damaged) H.264 mp4s with 4 slices per frame; frame ``at``'s packet gets 40
    random bytes in its middle, which the decoder conceals (it logs an error and paints the
    slice over; the frame count is unchanged)."""
    clean = folder / "clean.mp4"
    write_video(clean, (index_frame(i, 96, 128) for i in range(n)), fps=25, codec="h264", gop=30,
                options={"slices": "4", "sc_threshold": "0"})  # fmt: skip
    with av.open(str(clean)) as c:
        pk = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = pk[at]
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(0)
    lo = pos + size // 2
    data[lo : lo + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    damaged = folder / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return clean, damaged


def test_concealed_damage_is_recorded_not_fatal(tmp_path: Path) -> None:
    clean, damaged = damaged_h264(tmp_path)
    good = probe(clean)
    assert good.decode_warnings == 0 and good.damaged_frames == ()
    info = probe(damaged)
    assert info.num_frames == 120 and info.decode_warnings > 0
    # The damaged picture and those predicted from it, up to the next keyframe (60).
    assert info.damaged_frames == tuple(range(40, 60))
    with pytest.raises(errors.CorruptMediaError, match="decode error"):
        probe(damaged, conceal=False)


def _ue(bits: str, i: int) -> tuple[int, int]:
    """An Exp-Golomb ue(v) at bit ``i``: (value, next bit)."""
    z = bits.index("1", i) - i
    return int(bits[i + z : i + 2 * z + 1], 2) - 1, i + 2 * z + 1


def idr_with_p_slice(folder: Path, n: int = 90, key: int = 30) -> Path:
    """H.264 (4 slices per picture) whose IDR frame ``key`` has its second slice's type changed
    from I to P in the slice header: FFmpeg logs "A non-intra slice in an IDR NAL unit", drops the
    slice and conceals it -- the warning real phone and web clips carry (issue 21)."""
    clean = folder / "clean_idr.mp4"
    write_video(clean, (index_frame(i, 96, 128) for i in range(n)), fps=25, codec="h264",
                gop=30, options={"slices": "4", "sc_threshold": "0"})  # fmt: skip
    data = bytearray(clean.read_bytes())
    with av.open(str(clean)) as c:
        pos, size = next((p.pos, p.size) for k, p in enumerate(
            q for q in c.demux(c.streams.video[0]) if q.size) if k == key)  # fmt: skip
    nals, off = [], pos
    while off < pos + size:  # MP4 samples: 4-byte lengths, then NAL units
        length = int.from_bytes(data[off : off + 4], "big")
        nals.append(off + 4)
        off += 4 + length
    o = [k for k in nals if data[k] & 0x1F == 5][1]  # the second IDR slice
    bits = "".join(f"{b:08b}" for b in data[o + 1 : o + 9])
    _, i = _ue(bits, 0)  # first_mb_in_slice
    slice_type, j = _ue(bits, i)
    assert slice_type in (2, 7), slice_type  # I
    p_type = bin(5 + 1)[2:]  # ue(5): P, all slices
    new = (bits[:i] + "0" * (len(p_type) - 1) + p_type + bits[j:] + "0" * 8)[:64]
    data[o + 1 : o + 9] = bytes(int(new[k : k + 8], 2) for k in range(0, 64, 8))
    out = folder / "idr_p_slice.mp4"
    out.write_bytes(bytes(data))
    return out


def test_non_intra_slice_in_idr_is_recorded_not_fatal(tmp_path: Path) -> None:
    bad = idr_with_p_slice(tmp_path)
    info = probe(bad)
    assert info.num_frames == 90 and info.decode_warnings > 0
    assert info.damaged_frames == tuple(range(30, 60))  # up to the next keyframe
    assert [read_index(f.permute(1, 2, 0).numpy()) for f in read_frames(bad, [29, 60]).data] == [
        29, 60]  # fmt: skip
    with pytest.raises(errors.CorruptMediaError, match="non-intra slice|decode error"):
        probe(bad, conceal=False)


def test_junk_after_a_complete_movie_is_kept_a_cut_mdat_is_not(tmp_path: Path) -> None:
    src = tmp_path / "a.mp4"
    audio = np.zeros((1, 44100), np.float32)
    write_video(src, (index_frame(i, 48, 64) for i in range(25)), fps=25, audio=audio)
    junk = tmp_path / "junk.mp4"
    rng = np.random.default_rng(1)
    # Not a box: 4 size bytes claiming ~3.9 GB, then a non-ASCII type (as the real clip has).
    tail = b"\xea\x73\x9b\x1a\x91@Ma" + rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    junk.write_bytes(src.read_bytes() + tail)
    info = probe(junk, conceal=False)
    assert info.num_frames == 25 and info.has_audio
    assert read_audio(junk, 0.0, 1.0, sample_rate=16000).data.shape == (1, 16000)
    data = src.read_bytes()
    mdat = data.find(b"mdat") - 4
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: mdat + (len(data) - mdat) // 2] if mdat > data.find(b"moov")
                    else data[: mdat + 200])  # fmt: skip
    with pytest.raises(errors.TruncatedMediaError, match="mdat|moov"):
        probe(cut)


def test_real_clip_with_trailing_bytes_is_kept(shared_data: Path) -> None:
    p = real_or_skip("real-motion/propainter__test-sample1.mp4")
    info = probe(p, conceal=False)
    assert info.num_frames == 93 and info.audible


def test_mpeg_ps_real_grid_clip(shared_data: Path) -> None:
    p = real_or_skip("av-faces/bbaf2n.mpg")
    info = probe(p)
    assert info.num_frames == 75 and info.container == "mpeg" and info.audible
    found = check_backend_exact(p, "auto", file_patterns(p))
    assert not found, summarize(found)


def test_shutil_copy_of_folder_is_the_same_video(tmp_path: Path) -> None:
    d = write_frames(tmp_path / "a", 5)
    e = tmp_path / "b"
    shutil.copytree(d, e)
    a, b = read_frames(d, [0, 4]).data, read_frames(e, [0, 4]).data
    assert bool((a == b).all())


def test_held_frames_keep_their_sound(tmp_path: Path) -> None:
    """The sound of a frame after held ones is at the frame's (held-aware) time, within 1 ms."""
    from test_av_timing import chirp, onset_offset_s

    ticks = [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38, 40, 43, 45, 48]
    sr = 44100
    x = np.zeros(sr * 2, np.float32)
    events = (4, 11, 19)  # frames 4, 11, 19 sit at ticks 10, 28, 48: 0.4, 1.12, 1.92 s
    for e in events:
        k = round(ticks[e] / 25 * sr)
        x[k : k + chirp(sr).size] += chirp(sr)
    avi = write_held_avi(tmp_path / "held_sound.avi", ticks, audio=x, sr=sr)
    info = probe(avi)
    assert info.held_frames == 49 - 20 and info.has_audio
    for e in events:
        assert info.pts_s[e] == pytest.approx(ticks[e] / 25)
        off = onset_offset_s(avi, info.pts_s[e], 48000)
        assert abs(off) <= 1e-3, f"frame {e}: onset {off * 1e3:+.3f} ms from its time"


def test_training_reader_keeps_the_preps_probe_of_a_frame_folder(tmp_path: Path) -> None:
    """The training reader reuses the prep's probe of a frame folder (its identity is the
    folder's images, not the directory entry) and drops it once an image changes."""
    import os

    from avssl.data.dataset import FrameReader

    d = write_frames(tmp_path / "root" / "seq", 6)
    info = probe(d)
    reader = FrameReader(tmp_path / "root", (48, 64), infos={"seq": info})
    assert reader._info("seq") is info
    os.utime(d / "00002.jpg", ns=(info.mtime_ns + 10**9, info.mtime_ns + 10**9))
    assert reader._info("seq") is None
