"""Audio-visual pairs: the grid rule, alignment to the sample, negatives, cache, quarantine.

Media are generated here: short H.264/AAC videos whose sound is clicks at known times, so that
a positive window read back with ``read_audio`` must show each click at a sample offset known
in advance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avssl.data import av_pairs, decode
from avssl.data.av_pairs import AudioSpan
from avssl.data.encode import write_video
from avssl.data.manifest import read_manifest
from data_prep.av_prep import PairConfig, load_cached_pair
from data_prep.scan import scan_folder
from data_prep.videos import prep_videos
from tests.media import click_audio, find_clicks, index_frames, read_index

SR = 48000
# name -> (fps, seconds, click times or None for no audio, audible)
VIDEOS = {
    "a/clicks25.mp4": (25, 6.0, [0.1 + 0.7 * k for k in range(8)]),
    "a/clicks30.mp4": (30, 5.0, [0.35 + 0.6 * k for k in range(8)]),
    "b/clicks12.mp4": (12.5, 5.0, [0.2 + 0.9 * k for k in range(5)]),
    "b/silent.mp4": (25, 3.0, []),
    "b/noaudio.mp4": (25, 3.0, None),
}


def _write(path: Path, fps: float, seconds: float, clicks: list[float] | None) -> None:
    n = int(round(fps * seconds))
    audio = None
    if clicks is not None:
        audio = click_audio(int(seconds * SR), [round(t * SR) for t in clicks], channels=1)
    write_video(path, index_frames(n, 48, 64), fps=fps, codec="h264", gop=10, audio=audio,
                sample_rate=SR)  # fmt: skip


@pytest.fixture(scope="module")
def av_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("avroot")
    for rel, (fps, secs, clicks) in VIDEOS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _write(root / rel, fps, secs, clicks)
    (root / "b" / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    out, cache = tmp_path_factory.mktemp("avout"), tmp_path_factory.mktemp("avcache")
    prep_videos(scan_folder(root), out, config=PairConfig(frames_per_s=2.0), workers=2,
                cache_dir=cache, progress=False)  # fmt: skip
    return root, out, cache


def test_quarantine_reasons(av_out: tuple[Path, Path, Path]) -> None:
    _, out, _ = av_out
    q = {r["path"]: r["reason"] for r in read_manifest(out / "quarantine.csv")}
    assert q == {"b/silent.mp4": "silent-audio", "b/noaudio.mp4": "no-audio-stream",
                 "b/garbage.mp4": "not-media"}  # fmt: skip
    rows = read_manifest(out / "avc_train.jsonl") + read_manifest(out / "sync_train.jsonl")
    used = {r["video"] for r in rows} | {r["audio_video"] for r in rows}
    assert used == {"a/clicks25.mp4", "a/clicks30.mp4", "b/clicks12.mp4"}


def test_positive_windows_are_centred_to_the_sample(av_out: tuple[Path, Path, Path]) -> None:
    root, out, _ = av_out
    rows = [r for r in read_manifest(out / "avc_train.jsonl") if r["kind"] == "pos"]
    assert len(rows) >= 20
    for r in rows:
        fps, _, clicks = VIDEOS[r["video"]]
        start = r["audio_start_s"]
        # centred on the frame to within half a frame period, starting on a frame time
        assert abs(start + 0.5 - r["frame_s"]) <= 0.5 / fps + 1e-9
        assert av_pairs.on_grid(start, 0.0, fps)
        got = decode.read_audio(root / r["video"], start, 1.0, sample_rate=SR).data[0].numpy()
        want = [round((t - start) * SR) for t in clicks]
        want = [w for w in want if 0 <= w < SR - 5]  # a pulse is 9 samples: skip the cut ones
        assert [c for c in find_clicks(got, threshold=0.3) if c < SR - 5] == want, r


def test_every_window_is_on_the_frames_grid(av_out: tuple[Path, Path, Path]) -> None:
    _, out, _ = av_out
    videos = {r["video"]: r for r in read_manifest(out / "videos.jsonl")}
    probes = {r["video"]: r for r in read_manifest(out / "probe.jsonl")}
    for task in ("avc", "sync"):
        rows = read_manifest(out / f"{task}_train.jsonl")
        kinds = {k: sum(r["kind"] == k for r in rows) for k in ("pos", "other", "sync")}
        neg = "other" if task == "avc" else "sync"
        assert kinds[neg] == kinds["pos"] > 0  # 50:50
        for r in rows:
            fps = videos[r["video"]]["fps"]  # the FRAME's video sets the grid
            origin = probes[r["audio_video"]]["pts_s"][0]
            assert av_pairs.on_grid(r["audio_start_s"], origin, fps), r
            if r["kind"] == "other":
                assert r["audio_video"] != r["video"]
            if r["kind"] == "sync":
                assert r["audio_video"] == r["video"]
                assert 0.5 - 1e-9 <= abs(r["offset_s"]) <= 2.0 + 1e-9
            fps_a, secs_a, _ = VIDEOS[r["audio_video"]]
            assert 0 <= r["audio_start_s"] and r["audio_start_s"] + 1.0 <= secs_a + 1e-6


def test_cache_holds_the_same_frames_and_sound(av_out: tuple[Path, Path, Path]) -> None:
    root, out, cache = av_out
    rows = read_manifest(out / "avc_train.jsonl")
    opened: dict[str, np.ndarray] = {}
    for r in rows[::5]:
        frame, audio = load_cached_pair(cache, r, SR, opened)
        ref = decode.read_frames(root / r["video"], [r["frame"]], size=frame.shape[:2])
        err = np.abs(frame.astype(int) - ref.data[0].permute(1, 2, 0).numpy()).mean()
        assert err < 6  # JPEG quality 90 (the "raw" format is compared exactly below)
        assert read_index(frame) == r["frame"]  # the pixels encode the frame index
        direct = decode.read_audio(root / r["audio_video"], r["audio_start_s"], 1.0,
                                   sample_rate=SR).data[0].numpy()  # fmt: skip
        assert audio.shape == (SR,) and np.abs(audio - direct).max() < 2e-4  # int16 rounding


def test_raw_cache_is_exact(av_out: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, _, _ = av_out
    one = tmp_path / "v"
    one.mkdir()
    (one / "x.mp4").write_bytes((root / "a" / "clicks30.mp4").read_bytes())
    out, cache = tmp_path / "out", tmp_path / "cache"
    prep_videos(scan_folder(one), out, config=PairConfig(cache_format="raw", cache_short_side=32),
                cache_dir=cache, workers=1, progress=False)  # fmt: skip
    rows = read_manifest(out / "sync_train.jsonl")
    assert rows and all(r["audio_video"] == "x.mp4" for r in rows)
    opened: dict[str, np.ndarray] = {}
    for r in rows:
        frame, _ = load_cached_pair(cache, r, SR, opened)
        assert frame.shape == (32, 42, 3)  # 48x64 -> short side 32, even width
        ref = decode.read_frames(one / "x.mp4", [r["frame"]], size=(32, 42))
        assert np.array_equal(frame, ref.data[0].permute(1, 2, 0).numpy())


def test_rerun_is_identical(av_out: tuple[Path, Path, Path]) -> None:
    root, out, cache = av_out
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    r = prep_videos(scan_folder(root), out, config=PairConfig(frames_per_s=2.0), workers=1,
                    cache_dir=cache, progress=False)  # fmt: skip
    assert r.counts == {"reused": 6}
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from([12.5, 24.0, 25.0, 29.97, 30.0, 50.0]),
    n=st.integers(5, 400),
    origin=st.floats(0.0, 2.0),
    lo=st.floats(0.0, 5.0),
    length=st.floats(0.5, 12.0),
    window=st.sampled_from([0.5, 1.0, 2.0]),
    rate=st.sampled_from([0.5, 1.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_pair_rules_property(fps: float, n: int, origin: float, lo: float, length: float,
                             window: float, rate: float, seed: int) -> None:  # fmt: skip
    pts = origin + np.arange(n) / fps
    span = AudioSpan(origin, lo, lo + length)
    rng = np.random.default_rng(seed)
    frames = av_pairs.sample_frames(pts, fps, span, window, rate, rng)
    assert frames == sorted(set(frames))
    eligible = [i for i in range(n) if (c := av_pairs.centred_start(pts, i, fps, window))
                is not None and span.fits(c, window)]  # fmt: skip
    t0 = pts[eligible[0]] if eligible else 0.0
    slots = set()
    for i in frames:
        s = av_pairs.centred_start(pts, i, fps, window)
        assert s is not None and span.fits(s, window)
        assert av_pairs.on_grid(s, origin, fps)
        assert abs(s + window / 2 - pts[i]) <= 0.5 / fps + 1e-9
        slot = int(np.floor((pts[i] - t0) * rate + 1e-9))
        assert slot not in slots  # one frame per 1/rate slot ...
        slots.add(slot)
        k = av_pairs.sync_shift(s, span, fps, window, 0.5, 2.0, rng)
        if k is not None:
            assert 0.5 - 1e-9 <= abs(k) / fps <= 2.0 + 1e-9 and span.fits(s + k / fps, window)
    all_slots = {int(np.floor((pts[i] - t0) * rate + 1e-9)) for i in eligible}
    assert slots == all_slots  # ... and every slot with an eligible frame has one
    m = av_pairs.grid_starts(span, fps, window)
    if m is not None:
        for mm in (m[0], m[1]):
            assert span.fits(origin + mm / fps, window)
        assert not span.fits(origin + (m[0] - 1) / fps, window)
        assert not span.fits(origin + (m[1] + 1) / fps, window)


@settings(max_examples=60, deadline=None)
@given(
    videos=st.lists(
        st.tuples(
            st.sampled_from([12.5, 24.0, 25.0, 29.97, 30.0]),  # fps
            st.floats(0.0, 1.5),  # origin (first frame time)
            st.floats(1.2, 10.0),  # usable length
        ),
        min_size=1,
        max_size=5,
    ),
    seed=st.integers(0, 1000),
)
def test_grid_rule_holds_for_every_row_property(videos: list, seed: int) -> None:
    """Across videos of different rates and origins, every window (positive, other, sync)
    starts on the frame's video's grid, counted from the sound video's first frame."""
    from data_prep.av_prep import mine_pairs, pair_rows
    from data_prep.scan import Entry

    cfg = PairConfig(seed=seed)
    records = []
    for k, (fps, origin, length) in enumerate(videos):
        n = int((origin + length + 1) * fps)
        info = _fake_info(fps, origin, n, origin + length)
        rel = f"v{k}.mp4"
        pairs = mine_pairs(Path(rel), Entry(rel, "", -1, -1), info, cfg, None)
        records.append({"relpath": rel, "video": {"labels": []}, "pairs": pairs})
    rows, _ = pair_rows(records, cfg, 1)
    again, _ = pair_rows(records, cfg, 1)
    assert rows == again  # deterministic
    fps_of = {f"v{k}.mp4": v[0] for k, v in enumerate(videos)}
    origin_of = {f"v{k}.mp4": v[1] for k, v in enumerate(videos)}
    for task in ("avc", "sync"):
        pos = [r for r in rows[task] if r["target"] == 1]
        neg = [r for r in rows[task] if r["target"] == 0]
        assert len(pos) == sum(len(r["pairs"]["frames"]) for r in records)
        if task == "avc":
            assert len(neg) == (len(pos) if len(videos) > 1 else 0)
        for r in rows[task]:
            fps, origin = fps_of[r["video"]], origin_of[r["audio_video"]]
            assert av_pairs.on_grid(r["audio_start_s"], origin, fps, tol=1e-5), r
            o_fps, o_origin, o_len = videos[int(r["audio_video"][1:-4])]
            assert r["audio_start_s"] >= -1e-6
            assert r["audio_start_s"] + 1.0 <= o_origin + o_len + 1e-6


def _fake_info(fps: float, origin: float, n: int, audio_end: float):  # noqa: ANN202
    from avssl.types import AudioStreamInfo, VideoInfo

    pts = tuple(origin + i / fps for i in range(n))
    audio = AudioStreamInfo(1, "aac", 48000, 1, audio_end, -6.0, True)
    return VideoInfo(
        path="x", size_bytes=1, mtime_ns=0, container="mov", codec="h264", codec_tag="avc1",
        width=64, height=48, fps=fps, num_frames=n, header_num_frames=n, num_packets=n,
        pts_s=pts, pts_trusted=True, keyframes=(0,), seek_points=(), b_frames=False,
        packed_b_frames=False, vfr=False, duration_s=pts[-1] + 1 / fps, video_stream_index=0,
        audio=(audio,),
    )  # fmt: skip
