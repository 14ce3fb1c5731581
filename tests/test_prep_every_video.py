"""``avssl-prep`` takes every video a user has and accounts for every file it does not (issue 21).

- GIFs, frame folders and video files are videos; hidden files, annotation folders, single
  images, sound and other files are named in skipped.csv with why, and counted in the summary.
- A file whose damage the decoder conceals is kept with the damage recorded and its damaged
  frames never sampled; ``--strict-decode`` quarantines it.
- On the real folders of ../shared/data every file is accounted for, and frame counts equal
  the decoded counts in their FACTS.md.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_frame_folder import damaged_h264, write_frames, write_gif

from avssl.data.encode import write_audio, write_video
from avssl.data.selftest import index_frame
from data_prep.cli import main as prep_main


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _samples(out: Path) -> set[int]:
    """Every frame index any temporal sample of ``out`` uses."""
    used: set[int] = set()
    for task in ("shuffle_learn", "arrow_of_time"):
        for r in _jsonl(out / f"{task}.jsonl"):
            used.update(r["frames"])
    for r in _jsonl(out / "odd_one_out.jsonl"):
        for s in r["subsequences"]:
            used.update(s)
    return used


def test_folder_takes_gifs_and_frame_folders_and_names_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    (root / "clips").mkdir(parents=True)
    write_gif(root / "clips" / "anim.gif", [10] * 30)
    write_gif(root / "clips" / "still.gif", [10])  # one frame: a picture, not a video
    write_video(root / "clips" / "a.mp4", (index_frame(i, 48, 64) for i in range(30)), fps=25)
    write_frames(root / "davis" / "JPEGImages" / "bear", 30, size=(48, 64))
    write_frames(root / "davis" / "Annotations" / "bear", 30, name="{:05d}.png", size=(48, 64))
    write_frames(root / "seq" / "frames", 30, size=(48, 64))
    write_frames(root / "seq" / "masks", 1, name="{:05d}.png", size=(48, 64))
    (root / "seq" / "frames" / "notes.txt").write_text("x")
    write_frames(root / "gap", 10, size=(48, 64))
    (root / "gap" / "00004.jpg").unlink()
    write_frames(root / "single", 1, size=(48, 64))  # one image: not a frame folder
    (root / "README.txt").write_text("x")
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.mp4").write_bytes(b"x")
    write_audio(root / "clips" / "sound.wav", np.zeros((1, 8000), np.float32), sample_rate=8000)
    out = tmp_path / "out"
    assert prep_main(["folder", str(root), "--out", str(out), "--workers", "1"]) == 0
    summary = capsys.readouterr().out
    videos = {r["video"]: r for r in _jsonl(out / "videos.jsonl")}
    assert set(videos) == {"clips/a.mp4", "clips/anim.gif", "davis/JPEGImages/bear", "seq/frames"}
    assert videos["clips/anim.gif"]["num_frames"] == 30
    assert videos["davis/JPEGImages/bear"]["num_frames"] == 30
    assert videos["seq/frames"]["container"] == "frames"
    bad = {r["path"]: r["reason"] for r in _rows(out / "quarantine.csv")}
    assert bad == {"clips/still.gif": "still-image", "gap": "frame-gap"}
    skipped = {r["path"]: r["kind"] for r in _rows(out / "skipped.csv")}
    assert skipped == {
        ".cache/": "hidden",
        ".hidden.mp4": "hidden",
        "README.txt": "not-video",
        "clips/sound.wav": "audio",
        "davis/Annotations/": "annotation",
        "seq/frames/notes.txt": "frame-folder-extra",
        "seq/masks/": "annotation",
        "single/00000.jpg": "image",
    }
    m = re.search(r"skipped\s+(\d+) not taken \((.*)\)", summary)
    assert m and int(m.group(1)) == 8, summary
    assert "2 annotation" in m.group(2) and "2 hidden" in m.group(2)
    card = json.loads((out / "prep.json").read_text())
    assert card["videos"]["skipped"] == 8 and card["skipped"]["annotation"] == 2


def test_concealed_damage_is_kept_and_never_sampled(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _, damaged = damaged_h264(root)
    (root / "clean.mp4").unlink()
    out = tmp_path / "out"
    args = ["folder", str(root), "--workers", "1", "--motion", "diff", "--floor", "0"]
    assert prep_main([*args, "--out", str(out)]) == 0
    (row,) = _jsonl(out / "videos.jsonl")
    assert row["decode_warnings"] > 0 and row["damaged_frames"] == list(range(40, 60))
    used = _samples(out)
    assert used and not used & set(row["damaged_frames"])
    assert any(f > 60 for f in used) and any(f < 40 for f in used)  # both sides still sampled
    strict = tmp_path / "strict"
    assert prep_main([*args, "--out", str(strict), "--strict-decode"]) == 0
    (bad,) = _rows(strict / "quarantine.csv")
    assert bad["reason"] == "corrupt" and "decode error" in bad["message"]


def _facts(folder: Path) -> dict[str, int]:
    """Decoded frame counts from a FACTS.md table: file (or frame folder) -> frames."""
    out = {}
    for line in (folder / "FACTS.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 7 and (m := re.match(r"(\d+)", cells[6])) and cells[1] != "file":
            out[cells[1].rstrip("/")] = int(m.group(1))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["real-motion", "tracking", "av-faces"])
def test_real_folders_every_file_accounted_for(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    root = shared_data / name
    out = tmp_path / "out"
    assert prep_main(["folder", str(root), "--out", str(out), "--motion", "diff"]) == 0
    videos = {r["video"]: r for r in _jsonl(out / "videos.jsonl")}
    bad = {r["path"] for r in _rows(out / "quarantine.csv")}
    skipped = [r["path"] for r in _rows(out / "skipped.csv")]
    assert not bad, _rows(out / "quarantine.csv")
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        taken = rel in videos or f.parent.relative_to(root).as_posix() in videos
        under = any(rel == s or (s.endswith("/") and rel.startswith(s)) for s in skipped)
        assert taken or under, f"{rel} is neither taken nor named in skipped.csv"
    facts = _facts(root)
    for video, row in videos.items():
        assert row["num_frames"] == facts[video.split("/")[-1] if name != "tracking" else video]
    if name == "tracking":
        assert {v for v in videos if v.endswith("/frames")} >= {
            "propainter_bmx-trees/frames", "dasiamrpn_bag/frames"}  # fmt: skip
        assert "propainter_bmx-trees/masks/" in skipped
    if name == "real-motion":
        assert sum(v.endswith(".gif") for v in videos) == 4
        assert "propainter__test-sample1.mp4" in videos  # trailing bytes after its movie


def test_ucf101_as_mmaction2_rawframes(shared_data: Path, tmp_path: Path) -> None:
    """UCF-101 extracted to rawframes (``<Class>/v_X_gXX_cYY/img_00001.jpg``) is found by the
    official lists' ``.avi`` names, and a stray file is named in skipped.csv."""
    lists = shared_data / "ucf101" / "ucfTrainTestlist"
    root = tmp_path / "rawframes"
    clip = root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01"
    write_frames(clip, 40, name="img_{:05d}.jpg", start=1, size=(48, 64))
    write_frames(clip, 39, name="flow_x_{:05d}.jpg", start=1, size=(48, 64))
    (root / "ApplyEyeMakeup" / "notes.txt").write_text("x")
    out = tmp_path / "out"
    argv = ["ucf101", str(root), "--splits", str(lists), "--out", str(out), "--motion", "diff"]
    assert prep_main(argv) == 0
    (row,) = _jsonl(out / "videos.jsonl")
    assert row["video"] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01" and row["num_frames"] == 40
    assert row["splits"]["1"] == "train" and row["container"] == "frames"
    assert {r["path"]: r["kind"] for r in _rows(out / "skipped.csv")} == {
        "ApplyEyeMakeup/notes.txt": "not-video"}  # fmt: skip
