"""The read plan: one forward pass, the fewest frames decoded, no frame decoded twice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import avssl.data.decode as dec
from avssl.data.decode import reader
from avssl.data.decode.chains import chain_frames
from avssl.types import SeekPoint, VideoInfo


def _info(num_frames: int, keyframes: list[int]) -> VideoInfo:
    sps = tuple(SeekPoint(ts=k, frame_index=k, packet_pos=-1, fingerprint=0) for k in keyframes)
    return VideoInfo(
        path="x.mp4", size_bytes=1, mtime_ns=0, container="mov", codec="h264", codec_tag="",
        width=4, height=4, fps=25.0, num_frames=num_frames, header_num_frames=num_frames,
        num_packets=num_frames, pts_s=tuple(i / 25 for i in range(num_frames)), pts_trusted=True,
        keyframes=tuple(keyframes), seek_points=sps, b_frames=False, packed_b_frames=False,
        vfr=False, duration_s=num_frames / 25, video_stream_index=0,
    )  # fmt: skip


def min_frames(keyframes: list[int], wanted: list[int]) -> int:
    """The issue's bound: go on decoding or jump to the keyframe before, whichever is cheaper."""
    pos, total = -1, 0
    for w in sorted(set(wanted)):
        k = max(x for x in keyframes if x <= w)
        if pos < 0 or k > pos:
            total += w - k + 1
        else:
            total += w - pos + 1
        pos = w + 1
    return total


def decoded_by_plan(info: VideoInfo, wanted: list[int]) -> int:
    total = 0
    for sp, run in reader._plan(info, sorted(set(wanted))):
        start = 0 if sp is None else sp.frame_index
        total += max(run) - start + 1
    return total


@pytest.mark.parametrize(
    ("keyframes", "wanted", "runs"),
    [
        ([0], [5, 1, 3], [(None, [1, 3, 5])]),  # one GOP: one run from the start
        ([0, 10, 20], [12, 15], [(10, [12, 15])]),  # jump straight to the keyframe before
        ([0, 10, 20], [3, 12], [(None, [3]), (10, [12])]),  # jumping skips frames 4..9
        ([0, 10, 20], [8, 9, 11], [(None, [8, 9, 11])]),  # going on from 10 is cheaper
        ([0, 10, 20], [25, 2], [(None, [2]), (20, [25])]),
        ([0, 10, 20], [10], [(10, [10])]),  # a keyframe itself
        ([0, 10, 20], [0], [(None, [0])]),  # frame 0 needs no seek on a fresh file
    ],
)
def test_plan_table(keyframes: list[int], wanted: list[int], runs: list) -> None:
    info = _info(30, keyframes)
    got = [
        (None if sp is None else sp.frame_index, r)
        for sp, r in reader._plan(info, sorted(set(wanted)))
    ]
    assert got == runs


def test_plan_reaches_the_bound_and_never_overlaps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(5, 400))
        keys = sorted({0, *rng.integers(0, n, int(rng.integers(0, 12))).tolist()})
        info = _info(n, keys)
        wanted = rng.integers(0, n, int(rng.integers(1, 20))).tolist()
        runs = reader._plan(info, sorted(set(wanted)))
        assert sorted(i for _, r in runs for i in r) == sorted(set(wanted))
        ends = [-1]
        for sp, r in runs:  # runs move forward and never decode a frame a second time
            start = 0 if sp is None else sp.frame_index
            assert start > ends[-1] and r == sorted(r)
            ends.append(max(r))
        assert decoded_by_plan(info, wanted) == min_frames(keys, wanted)


def _count_decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Frames that come out of the decoder (either way of decoding) during the reads that
    follow; a read that falls back from skipping to counting fails the test."""
    counted: list[int] = []
    for name in ("_decode_from", "_decode_chain"):
        real = getattr(reader, name)

        def counting(*args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            for i, f in _real(*args, **kwargs):
                counted.append(i)
                yield i, f

        monkeypatch.setattr(reader, name, counting)
    real_plan = reader._read_pyav_plan

    def no_fallback(*args, chain, **kwargs):  # type: ignore[no-untyped-def]
        assert chain or not args[1].frame_refs, "the read fell back to decoding every frame"
        return real_plan(*args, chain=chain, **kwargs)

    monkeypatch.setattr(reader, "_read_pyav_plan", no_fallback)
    return counted


def test_read_decodes_each_frame_once(media: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the frames that come out of the decoder during one read_frames call: each at most
    once, and only reference frames besides the wanted ones (non-reference ones are skipped)."""
    path: Path = media["h264_gop30.mp4"].path
    info = dec.probe(path)
    assert "0" in info.frame_refs and len(info.frame_pts) == info.num_frames
    counted = _count_decoded(monkeypatch)
    wanted = [100, 5, 40, 41, 5, 149, 31]
    clip = dec.read_frames(path, wanted, backend="pyav", info=info)
    assert clip.indices.tolist() == wanted
    assert len(counted) == len(set(counted)), "a frame was decoded twice"
    assert set(wanted) <= set(counted)
    assert all(info.frame_refs[i] == "1" for i in set(counted) - set(wanted))
    # counts the anchor after a wanted B, decoded but not out before the read stops
    expected = sum(chain_frames(wanted, info.keyframes, info.frame_refs))
    assert expected - 2 <= len(counted) <= expected
    assert len(counted) < 0.75 * min_frames(list(info.keyframes), wanted)
    # without the reference map (a manifest from before it) every frame is decoded, as before
    counted.clear()
    dec.read_frames(path, wanted, info=replace(info, frame_refs="", frame_pts=()))
    assert len(counted) == min_frames(list(info.keyframes), wanted)
    # a stale VideoInfo (file changed) is not trusted
    stale = replace(info, size_bytes=info.size_bytes + 1)
    assert dec.read_frames(path, [3], info=stale).data.shape[0] == 1
