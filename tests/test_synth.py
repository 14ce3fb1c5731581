"""The built-in synthetic dataset: determinism, resume, and that its ground truth is true in the
*decoded* media (boxes cover the object's pixels, sound peaks at impacts, still runs are still)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avssl.data import decode
from avssl.data.manifest import read_manifest, write_manifest
from data_prep import synth, synth_scene

N_CLIPS = 6  # classes 0-5; clip 3 is the AVI (Xvid packed-B / MP3)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_a")
    synth.build_synth(root, num_clips=N_CLIPS, seed=7, workers=2, progress=False)
    return root


def _truth(root: Path, row: dict) -> dict:
    return json.loads((root / row["boxes"]).read_text())


def _frames(path: Path) -> np.ndarray:
    """All frames, (T, H, W, 3) int."""
    info = decode.probe(path)
    data = decode.read_frames(path, list(range(info.num_frames)), info=info).data
    return data.permute(0, 2, 3, 1).numpy().astype(int)


def test_layout_and_labels(built: Path) -> None:
    rows = read_manifest(built / "manifest.jsonl")
    assert [r["clip_id"] for r in rows] == [synth.clip_id(i) for i in range(N_CLIPS)]
    assert [r["class_id"] for r in rows] == list(range(N_CLIPS))
    assert {r["container"] for r in rows} == {"mp4", "avi"}
    csv_rows = read_manifest(built / "labels.csv")
    assert [r["clip_id"] for r in csv_rows] == [r["clip_id"] for r in rows]
    card = json.loads((built / "dataset.json").read_text())
    assert card["seed"] == 7 and card["num_clips"] == N_CLIPS
    for r in rows:
        info = decode.probe(built / r["file"])
        assert info.num_frames == r["num_frames"] == 100
        assert (info.width, info.height) == (128, 128)
        assert info.audible
        truth = _truth(built, r)
        assert truth["objects"][0]["sounding"] and truth["class_id"] == r["class_id"]
        assert not any(o["sounding"] for o in truth["objects"][1:])
        assert len(truth["objects"][0]["boxes"]) == 100


def test_same_seed_same_dataset(built: Path, tmp_path: Path) -> None:
    # Another build with one worker instead of two: labels and boxes byte-identical, frames equal.
    synth.build_synth(tmp_path, num_clips=N_CLIPS, seed=7, workers=1, progress=False)
    for name in ("labels.csv", "manifest.jsonl", "dataset.json"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name
    for row in read_manifest(built / "manifest.jsonl"):
        assert (tmp_path / row["boxes"]).read_bytes() == (built / row["boxes"]).read_bytes()
        np.testing.assert_array_equal(_frames(tmp_path / row["file"]), _frames(built / row["file"]))


def test_other_seed_other_scenes() -> None:
    cfg = synth.SynthConfig()
    a = synth.make_clip(cfg, 0, 1)[2]["objects"][0]["boxes_px"]
    b = synth.make_clip(cfg, 1, 1)[2]["objects"][0]["boxes_px"]
    assert a != b


def test_resume_rebuilds_only_missing(tmp_path: Path) -> None:
    first = synth.build_synth(tmp_path, num_clips=4, seed=3, workers=1, progress=False)
    assert (first.built, first.skipped) == (4, 0)
    keep = {r["file"]: (tmp_path / r["file"]).stat().st_mtime_ns for r in first.rows}
    victim = tmp_path / first.rows[2]["file"]
    victim.unlink()
    rebuilt: list[int] = []
    again = synth.build_synth(tmp_path, num_clips=4, seed=3, workers=1, progress=False,
                              on_clip=rebuilt.append)  # fmt: skip
    assert rebuilt == [2] and (again.built, again.skipped) == (1, 3)
    for r in first.rows:
        if r["file"] != first.rows[2]["file"]:
            assert (tmp_path / r["file"]).stat().st_mtime_ns == keep[r["file"]]
    # A truncated (corrupted) video no longer matches its completion record: rebuilt too.
    victim.write_bytes(victim.read_bytes()[:100])
    rebuilt.clear()
    synth.build_synth(tmp_path, num_clips=4, seed=3, workers=1, progress=False,
                      on_clip=rebuilt.append)  # fmt: skip
    assert rebuilt == [2]
    # ensure_synth on the complete set builds nothing.
    mtime = victim.stat().st_mtime_ns
    assert synth.ensure_synth(tmp_path, num_clips=4, seed=3, progress=False) == tmp_path
    assert victim.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name or ".partial" in p.name]


def test_boxes_cover_the_objects_pixels(built: Path) -> None:
    h = w = 128
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres in the boxes' continuous coordinates
    for row in read_manifest(built / "manifest.jsonl"):
        frames = _frames(built / row["file"])
        truth = _truth(built, row)
        for obj in truth["objects"]:
            near = np.sqrt(((frames - np.array(obj["rgb"])) ** 2).sum(-1)) < 60  # (T, H, W)
            boxes = np.array(obj["boxes_px"])
            np.testing.assert_allclose(boxes / [w, h, w, h], obj["boxes"], atol=1e-4)
            for t in range(len(frames)):
                x1, y1, x2, y2 = boxes[t]
                inside = (xs >= x1 - 1) & (xs <= x2 + 1) & (ys >= y1 - 1) & (ys <= y2 + 1)
                assert near[t].sum() > 30, (row["clip_id"], obj["class_name"], t)
                # every pixel of the object's colour lies in its box, and fills a good part of it
                assert (near[t] & ~inside).sum() == 0, (row["clip_id"], obj["class_name"], t)
                assert near[t][inside].mean() > 0.25, (row["clip_id"], obj["class_name"], t)


def test_sound_peaks_at_the_sounding_objects_impacts(built: Path) -> None:
    sr, hop = 16000, 160  # 10 ms energy frames
    for row in read_manifest(built / "manifest.jsonl"):
        truth = _truth(built, row)
        audio = decode.read_audio(built / row["file"], 0.0, 4.0, sample_rate=sr).data[0].numpy()
        energy = (audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2).mean(1)
        quiet = np.median(energy[: int(0.35 * sr / hop)])  # the still margin: noise floor only
        sounding = truth["objects"][0]
        onsets = truth["sound_onsets_s"]
        assert len(onsets) == len(sounding["impacts_s"]) >= 2
        np.testing.assert_allclose(onsets, sounding["impacts_s"], atol=1 / sr)  # on the sample grid
        first = int(onsets[0] * sr / hop)
        # the track wakes up at the first impact (to 10 ms) and is loud right after it
        loud = np.flatnonzero(energy > 30 * quiet)
        assert abs(int(loud[0]) - first) <= 1, (row["clip_id"], int(loud[0]), first)
        assert energy[first : first + 10].max() > 300 * quiet, row["clip_id"]
        # distractors are silent: where one lands far from any sound, there is only noise floor
        for obj in truth["objects"][1:]:
            for t in obj["impacts_s"]:
                if min(abs(t - o) for o in onsets) > 0.5 + (row["class_name"] == "star") * 0.4:
                    k = int(t * sr / hop)
                    assert energy[k : k + 5].max() < 10 * quiet, (row["clip_id"], t)


def test_still_stretches_are_still(built: Path) -> None:
    for row in read_manifest(built / "manifest.jsonl"):
        truth = _truth(built, row)
        runs = truth["still_runs"]
        assert runs[0][0] == 0 and runs[0][1] >= 10  # >= 0.4 s still at the start ...
        assert runs[-1][1] == 100 and runs[-1][1] - runs[-1][0] >= 10  # ... and at the end
        frames = _frames(built / row["file"])
        changed = (np.abs(np.diff(frames, axis=0)).max(-1) > 24).sum((1, 2))  # [i-1]: i vs i-1
        moving = np.array([any(o["moving"][i] for o in truth["objects"]) for i in range(100)])
        for a, b in runs:
            assert changed[a : b - 1].max() <= 16, (row["clip_id"], a, b)
            assert not moving[a + 1 : b].any()
        # every visible move (>= 1 px of any object) changes many pixels
        boxes = np.array([o["boxes_px"] for o in truth["objects"]])  # (n, T, 4)
        shift = np.abs(np.diff(boxes, axis=1)).max(axis=(0, 2))  # [i-1]: frame i vs i-1
        assert changed[shift >= 1].min() >= 50, row["clip_id"]


def test_scenes_obey_the_design() -> None:
    cfg = synth.SynthConfig()
    for i in range(48):
        bodies, _ = synth_scene.plan_scene(cfg, 0, i)
        assert 2 <= len(bodies) <= 3 and len({b.cls for b in bodies}) == len(bodies)
        sound = [t for t, _ in bodies[0].impacts]
        assert sound and min(sound) > cfg.still_margin_s
        for b in bodies:
            for t, speed in b.impacts:
                assert cfg.still_margin_s < t < cfg.duration_s - cfg.still_margin_s and speed > 0
        for b in bodies[1:]:  # silent distractors never land in sync with the sound
            gap = synth_scene.MIN_SYNC_GAP_S
            assert all(abs(t - s) >= gap for t, _ in b.impacts for s in sound)
        # arrow of time: each bounce is slower than the one before (within one motion)
        speeds = [v for _, v in bodies[0].impacts]
        assert any(a > b for a, b in zip(speeds, speeds[1:], strict=False))


def test_splits_are_stratified_and_seeded() -> None:
    s = synth._splits(320, 0)
    for c in range(8):
        per = [s[i] for i in range(c, 320, 8)]
        assert (per.count("train"), per.count("val"), per.count("test")) == (28, 6, 6)
    assert synth._splits(320, 0) == s != synth._splits(320, 1)


def test_manifest_roundtrip(tmp_path: Path) -> None:
    rows = [{"a": 1, "b": "x", "c": [1, 2]}, {"a": 2, "b": "y,z", "d": 0.5}]
    write_manifest(tmp_path / "m.jsonl", rows)
    assert read_manifest(tmp_path / "m.jsonl") == rows
    write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(tmp_path / "m.csv") == [
        {"a": "1", "b": "x", "c": "[1,2]", "d": ""},
        {"a": "2", "b": "y,z", "c": "", "d": "0.5"},
    ]
    assert sorted(os.listdir(tmp_path)) == ["m.csv", "m.jsonl"]  # no temp files left
    with pytest.raises(ValueError, match="suffix"):
        write_manifest(tmp_path / "m.txt", rows)


def test_cli_synth_and_report(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "data_prep.cli", "synth", "--out", str(out), "--num-clips", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 built" in proc.stdout and "decode report" in proc.stdout
    assert "4/4 files probed" in proc.stdout
    assert len(read_manifest(out / "labels.csv")) == 4
    again = subprocess.run(cmd + ["--no-report"], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=300)  # fmt: skip
    assert again.returncode == 0 and "0 built, 4 already done" in again.stdout
    assert "decode report" not in again.stdout
