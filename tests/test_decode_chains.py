"""Reference chains: what the probe records per frame, and reads that skip non-reference frames.

Exactness of every access pattern (including the chain patterns of tests/exact.py) is judged by
the exact-frame suite (tests/test_decode_exact.py); here: the parsing, the probe's map, its trip
through manifests, that reads really skip, and that a wrong map never yields a wrong frame.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import real_or_skip
from exact import reference_frames

import avssl.data.decode as dec
from avssl.data.decode import reader
from avssl.data.decode.chains import (
    chain_frames,
    nal_length_size,
    packet_is_reference,
    reference_map,
)
from avssl.types import VideoInfo

UCF = "av-clips/mmaction2__test_ucf101_ApplyEyeMakeup.avi"


# --------------------------------------------------------------------------------------------
# Parsing and the map
# --------------------------------------------------------------------------------------------
def _annexb(*heads: int) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + bytes([h, 0x88, 0x84]) for h in heads)


def _avcc(*heads: int, size: int = 4) -> bytes:
    return b"".join((3).to_bytes(size, "big") + bytes([h, 0x88, 0x84]) for h in heads)


@pytest.mark.parametrize(
    ("heads", "expected"),
    [
        ((0x67, 0x68, 0x65), True),  # SPS, PPS, IDR slice (nal_ref_idc 3)
        ((0x41,), True),  # non-IDR slice, nal_ref_idc 2 (a P or a referenced B)
        ((0x06, 0x01), False),  # SEI + slice with nal_ref_idc 0: a non-reference picture
        ((0x06, 0x09), None),  # no slice at all
        ((0x01, 0x21), True),  # two slices of one picture, one of them a reference
    ],
)
def test_h264_reference_flags(heads: tuple[int, ...], expected: bool | None) -> None:
    assert packet_is_reference("h264", _annexb(*heads), 0) is expected
    assert packet_is_reference("h264", _avcc(*heads), 4) is expected
    assert packet_is_reference("h264", _avcc(*heads, size=2), 2) is expected


@pytest.mark.parametrize(
    ("nal_type", "expected"),
    [(0, False), (1, True), (2, False), (8, False), (9, True), (19, True), (21, True), (35, None)],
)
def test_hevc_reference_flags(nal_type: int, expected: bool | None) -> None:
    # TRAIL_N 0, TRAIL_R 1, TSA_N 2, RASL_N 8, RASL_R 9, IDR_W_RADL 19, CRA 21, AUD 35
    head = b"\x00\x00\x01" + bytes([nal_type << 1, 0x01, 0xAF])
    assert packet_is_reference("hevc", head, 0) is expected


def test_nal_length_size_from_extradata() -> None:
    assert nal_length_size("h264", bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1])) == 4
    assert nal_length_size("h264", bytes([1, 0x64, 0, 0x1F, 0xFD, 0xE1])) == 2
    assert nal_length_size("h264", b"\x00\x00\x00\x01\x67") == 0  # Annex B extradata
    assert nal_length_size("h264", None) == 0
    hvcc = bytearray(23)
    hvcc[0], hvcc[21] = 1, 0x0F
    assert nal_length_size("hevc", bytes(hvcc)) == 4


def test_reference_map_names_frames_only_when_timestamps_can() -> None:
    b, p, i = 3, 2, 1  # picture types
    # MPEG-4: B-pictures are the non-reference ones; frames named by their packets' pts
    assert reference_map("mpeg4", [1, 2, 4, 3], [i, b, b, p], [1, 3, 2, 4], [None] * 4) == (
        "1001",
        (1, 2, 4, 3),
    )
    # H.264: the NAL flags of the packet that carries each frame, not the picture type
    got = reference_map("h264", [0, 1, 2], [i, b, p], [0, 2, 1], [True, True, False])
    assert got == ("101", (0, 1, 2))
    # nothing to skip, another codec, unknown / repeated pts, a frame no packet names
    assert reference_map("mpeg4", [0, 1], [i, p], [0, 1], [None, None]) == ("", ())
    assert reference_map("vp9", [0, 1], [i, b], [0, 1], [None, None]) == ("", ())
    assert reference_map("mpeg4", [0, None], [i, b], [0, 1], [None, None]) == ("", ())
    assert reference_map("mpeg4", [0, 0], [i, b], [0, 1], [None, None]) == ("", ())
    assert reference_map("mpeg4", [0, 5], [i, b], [0, 1], [None, None]) == ("", ())
    assert reference_map("h264", [0, 1], [i, b], [0, 1], [True, None]) == ("", ())


def test_chain_frames_counts_references_and_wanted_non_references() -> None:
    refs = "1001001001"  # I B B P B B P B B P
    assert sum(chain_frames([3], [0], refs)) == 2  # I, P3
    assert sum(chain_frames([4], [0], refs)) == 4  # I, P3, P6 (its future anchor), B4
    assert sum(chain_frames([1, 2, 7], [0], refs)) == 7  # I P3 P6 P9 + B1 B2 + B7
    assert sum(chain_frames([7], [0], "")) == 8  # no map: every frame up to 7


# --------------------------------------------------------------------------------------------
# Probe records the chains; manifests keep them
# --------------------------------------------------------------------------------------------
def test_probe_records_reference_frames(media: dict) -> None:
    packed = dec.probe(media["xvid_packed.avi"].path)
    assert len(packed.frame_refs) == packed.num_frames == len(packed.frame_pts)
    assert packed.frame_refs[0] == "1" and "0" in packed.frame_refs
    pyramid = dec.probe(media["h264_pyramid.mp4"].path)
    # B-pyramid: some frames between two non-reference ones are references (referenced Bs)
    assert "010" in pyramid.frame_refs and "0" in pyramid.frame_refs
    assert dec.probe(media["vp8.webm"].path).frame_refs == ""  # VP8: read whole
    info = dec.probe(media["hevc_pyramid.mkv"].path)
    assert "0" in info.frame_refs
    again = VideoInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info and isinstance(again.frame_pts, tuple)
    old = info.to_dict()
    del old["frame_refs"], old["frame_pts"]  # a probe.jsonl written before the chains
    assert VideoInfo.from_dict(old).frame_refs == ""


# --------------------------------------------------------------------------------------------
# Reads skip, stay exact, and never trust a wrong map
# --------------------------------------------------------------------------------------------
def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"frames": 0, "fallbacks": 0}
    real_chain, real_plan = reader._decode_chain, reader._read_pyav_plan

    def chain(*args, **kwargs):  # type: ignore[no-untyped-def]
        for item in real_chain(*args, **kwargs):
            counts["frames"] += 1
            yield item

    def plan(*args, chain, **kwargs):  # type: ignore[no-untyped-def]
        counts["fallbacks"] += int(not chain and bool(args[1].frame_refs))
        return real_plan(*args, chain=chain, **kwargs)

    monkeypatch.setattr(reader, "_decode_chain", chain)
    monkeypatch.setattr(reader, "_read_pyav_plan", plan)
    return counts


def test_real_ucf_clip_decodes_a_third(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real UCF-101 clip (packed-B Xvid, one keyframe): a late B-frame costs the reference
    chain (I and P-frames, about a third of the frames), not every frame before it."""
    path = real_or_skip(UCF)
    info = dec.probe(path)
    target = max(i for i, c in enumerate(info.frame_refs) if c == "0")
    counts = _counting(monkeypatch)
    dec.clear_caches()
    got = dec.read_frames(path, [target, 3, target - 1], info=info).data.permute(0, 2, 3, 1)
    assert counts["fallbacks"] == 0
    assert counts["frames"] <= info.frame_refs[: target + 1].count("1") + 4
    assert counts["frames"] < 0.4 * (target + 1)
    ref = reference_frames(path, [target, 3, target - 1])
    assert np.array_equal(got.numpy(), ref)


def test_a_wrong_map_never_gives_a_wrong_frame(media: dict) -> None:
    """Timestamps that no longer name the frames (a stale or damaged manifest entry): the read
    notices (unknown or out-of-order names, a frame that never comes out) and decodes every
    frame instead; the frames are still the right ones."""
    path: Path = media["h264_gop30.mp4"].path
    info = dec.probe(path)
    wanted = [7, 44, 45, 131]
    ref = reference_frames(path, wanted)
    shifted = info.frame_pts[1:] + info.frame_pts[:1]
    flipped = "".join("1" if c == "0" else "0" for c in info.frame_refs)
    for bad in (replace(info, frame_pts=shifted), replace(info, frame_refs=flipped)):
        dec.clear_caches()
        got = dec.read_frames(path, wanted, info=bad).data.permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, ref)


def test_skipping_is_switched_off_after_a_read(media: dict) -> None:
    """A kept-open file read by a skipping read, then by a read that counts every frame (a
    manifest without the map), still gives the right frames."""
    path: Path = media["xvid_packed2.avi"].path
    info = dec.probe(path)
    dec.clear_caches()
    dec.read_frames(path, [5, 29], info=info)  # stops in a stretch it skips
    plain = replace(info, frame_refs="", frame_pts=())
    got = dec.read_frames(path, [30, 31, 32], info=plain).data.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, reference_frames(path, [30, 31, 32]))


CHAIN_MEDIA = ("xvid_b.avi", "xvid_packed.avi", "xvid_packed2.avi", "h264_gop30.mp4",
               "h264_pyramid.mp4", "h264_vfr.mp4", "h264_opus.mkv", "hevc_pyramid.mkv",
               "mpeg2_b.mpg", "mpeg2_b.mxf", "h264_b.ts")  # fmt: skip


@pytest.mark.parametrize("name", CHAIN_MEDIA)
def test_reads_skip_without_falling_back(
    name: str, media: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On every kind of file with non-reference frames the timestamps name the frames: random
    tuples and the chain patterns are read by skipping (never by the counting fallback), and
    exactly."""
    path: Path = media[name].path
    info = dec.probe(path)
    assert "0" in info.frame_refs, f"{name}: the probe found no non-reference frame"
    rng = np.random.default_rng(0)
    n = info.num_frames
    calls = [sorted(rng.choice(n, 3, replace=False).tolist()) for _ in range(6)]
    calls += [[i] for i, c in enumerate(info.frame_refs) if c == "0"][-3:]
    counts = _counting(monkeypatch)
    for k, call in enumerate(calls):
        if k % 2:
            dec.clear_caches()
        got = dec.read_frames(path, call, info=info).data.permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, reference_frames(path, call)), (name, call)
    assert counts["fallbacks"] == 0
    assert counts["frames"] < sum(
        max(c) + 1 for c in calls
    )  # fewer than counting from the start for each call
