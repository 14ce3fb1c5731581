"""Whole-video grey passes (decode.iter_frames) and motion energy (avssl.data.motion)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avssl.data import decode
from avssl.data.encode import write_video
from avssl.data.motion import Motion, load_motion, motion_energy, save_motion
from tests.media import MediaFile, real_clip

KINDS = ["xvid_packed.avi", "xvid_b.avi", "h264_gop30.mp4", "h264_vfr.mp4", "vp8.webm"]


@pytest.mark.parametrize("name", KINDS)
def test_iter_frames_rgb_is_exact(media: dict[str, MediaFile], name: str) -> None:
    m = media[name]
    frames = [f for _, f in decode.iter_frames(m.path)]
    ref = decode.read_frames(m.path, list(range(m.num_frames))).data.permute(0, 2, 3, 1).numpy()
    assert len(frames) == m.num_frames
    assert np.array_equal(np.stack(frames), ref)


@pytest.mark.parametrize("name", KINDS)
def test_iter_frames_small_grey_matches_full_size(media: dict[str, MediaFile], name: str) -> None:
    """The decoder's reduced-size (lowres) luma shows the same frame as full-size luma (its
    approximate motion compensation drifts a few grey levels within a GOP, fine for motion)."""
    m = media[name]
    size = (m.height // 4, m.width // 4)
    small = [f for _, f in decode.iter_frames(m.path, size=size, gray=True)]
    full = [f for _, f in decode.iter_frames(m.path, gray=True)]
    assert len(small) == len(full) == m.num_frames
    for i in range(0, m.num_frames, 7):
        assert small[i].shape == size and full[i].shape == (m.height, m.width)
        ref = cv2.resize(full[i], size[::-1], interpolation=cv2.INTER_AREA).astype(int)
        err = np.abs(small[i].astype(int) - ref).mean()
        others = [np.abs(small[i].astype(int) - cv2.resize(full[j], size[::-1],
                  interpolation=cv2.INTER_AREA)).mean() for j in (i - 3, i + 3)
                  if 0 <= j < m.num_frames]  # fmt: skip
        assert err < 12, f"frame {i}: mean error {err:.1f}"  # lowres drifts a little along a GOP
        assert all(err < o for o in others), f"frame {i} looks more like a neighbour"


def test_iter_frames_real_ucf_clip_lowres() -> None:
    path = real_clip("ucf101_xvid_packed.avi")
    if path is None:
        pytest.skip("the real UCF-101 clip is not in ../shared/data/av-clips")
    frames = [f for _, f in decode.iter_frames(path, size=(30, 40), gray=True)]
    assert len(frames) == decode.probe(path).num_frames == 164


def _texture_video(path: Path, shifts: list[int], width: int = 160, height: int = 120) -> None:
    """A smooth random texture translated horizontally by ``shifts[t]`` px at frame t."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width * 2), np.uint8), (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    x = 0
    for s in shifts:
        x += s
        grey = base[:, x : x + width]
        frames.append(np.repeat(grey[:, :, None], 3, axis=2))
    write_video(path, np.stack(frames), fps=25, codec="h264", crf=0, gop=10)


def test_energy_units_and_still_parts(tmp_path: Path) -> None:
    shifts = [0] * 20 + [2] * 30 + [0] * 20  # still, 2 px/frame to the left, still
    path = tmp_path / "pan.mp4"
    _texture_video(path, shifts)
    for method in ("flow", "diff"):
        m = motion_energy(path, method=method)
        assert m.energy.shape == (70,) and m.thumbs.shape[0] == 70
        assert m.energy.dtype == np.float32 and m.thumbs.dtype == np.uint8
        still = np.r_[m.energy[1:20], m.energy[51:]]
        moving = m.energy[22:49]
        assert still.max() < 0.2 * moving.min(), method
    flow = motion_energy(path, method="flow", width=40)
    # 2 px/frame on a 160-px frame = 1/80 frame width per frame, whatever the analysis size
    assert np.median(flow.energy[22:49]) == pytest.approx(2 / 160, rel=0.25)
    wide = motion_energy(path, method="flow", width=80)
    assert np.median(wide.energy[22:49]) == pytest.approx(2 / 160, rel=0.25)


def test_motion_cache_round_trip(tmp_path: Path, media: dict[str, MediaFile]) -> None:
    m = motion_energy(media["xvid_packed.avi"].path, method="diff")
    p = tmp_path / "m.npz"
    save_motion(p, m, key="abc")
    back = load_motion(p, key="abc")
    assert back is not None and back.method == "diff" and back.width == m.width
    assert np.array_equal(back.energy, m.energy) and np.array_equal(back.thumbs, m.thumbs)
    assert load_motion(p, key="other") is None  # made for another file or setting
    assert load_motion(tmp_path / "absent.npz") is None
    p.write_bytes(p.read_bytes()[:100])
    assert load_motion(p, key="abc") is None  # a torn file is recomputed, not trusted


def test_motion_rejects_bad_arguments(media: dict[str, MediaFile]) -> None:
    with pytest.raises(ValueError, match="unknown motion method 'optical'"):
        motion_energy(media["vp8.webm"].path, method="optical")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="energies but"):
        Motion(np.zeros(3, np.float32), np.zeros((2, 4, 4), np.uint8), "flow", 40)
