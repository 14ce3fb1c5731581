"""``avssl-prep audioset`` end to end: the real segment lists, ontology and class list, with
generated clips named after real segments in the common download patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avssl.data.encode import write_audio, write_video
from avssl.data.manifest import read_manifest
from data_prep import cli
from data_prep.audioset_meta import (
    expand_classes,
    read_class_labels,
    read_ontology,
    read_segments,
)
from tests.media import click_audio, index_frames, shared_data_dir

AS = shared_data_dir() / "audioset"
pytestmark = pytest.mark.skipif(
    not (AS / "eval_segments.csv").is_file(),
    reason=f"the AudioSet lists are not at {AS} (../shared/data absent)",
)
SR = 44100


def _clip(path: Path, seconds: float = 4.0, fps: float = 25, audio: bool = True,
          silent: bool = False) -> None:  # fmt: skip
    n = int(seconds * fps)
    sound = None
    if audio:
        clicks = [] if silent else [int(SR * (0.3 + 0.45 * k)) for k in range(8)]
        sound = click_audio(int(seconds * SR), clicks, channels=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, index_frames(n, 48, 64), fps=fps, codec="h264", gop=25, audio=sound,
                sample_rate=SR)  # fmt: skip


@pytest.fixture(scope="module")
def audioset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    classes = read_class_labels(AS / "class_labels_indices.csv")
    instruments = set(expand_classes(["Musical instrument"], read_ontology(AS / "ontology.json"),
                                     classes))  # fmt: skip
    train = [s for s in read_segments(AS / "balanced_train_segments.csv")]
    test = [s for s in read_segments(AS / "eval_segments.csv")]
    inst_train = [s for s in train if instruments & set(s.labels)][:5]
    inst_test = [s for s in test if instruments & set(s.labels)][:2]
    other = next(s for s in train if not instruments & set(s.labels))
    root = tmp_path_factory.mktemp("audioset_videos")
    names = {
        inst_train[0]: f"{inst_train[0].ytid}_{inst_train[0].start_s:.3f}.mp4",
        inst_train[1]: f"sub/{inst_train[1].ytid}_{int(inst_train[1].start_s)}_"
                       f"{int(inst_train[1].end_s)}.mp4",
        inst_train[2]: f"Y{inst_train[2].ytid}.mp4",
        inst_train[3]: f"{inst_train[3].ytid}_{int(inst_train[3].start_s * 1000)}.mp4",
        inst_test[0]: f"eval/{inst_test[0].ytid}_{inst_test[0].start_s:.1f}.mp4",
        inst_test[1]: f"eval/{inst_test[1].ytid}_{inst_test[1].start_s:.1f}.mp4",
        other: f"{other.ytid}_{other.start_s:.3f}.mp4",
    }  # fmt: skip
    wav = f"{inst_train[4].ytid}_{inst_train[4].start_s:.3f}.wav"  # sound only: no frame
    write_audio(root / wav, click_audio(SR, [1000], channels=1), sample_rate=SR)
    for seg, name in names.items():
        _clip(root / name, silent=seg is inst_train[3], fps=30 if seg is inst_test[0] else 25)
    (root / "notes" / "readme.mp4").parent.mkdir()
    (root / "notes" / "readme.mp4").write_bytes(b"not a video at all")
    out, cache = tmp_path_factory.mktemp("as_out"), tmp_path_factory.mktemp("as_cache")
    argv = ["audioset", str(AS / "balanced_train_segments.csv"), str(AS / "eval_segments.csv"),
            "--videos", str(root), "--classes", "Musical instrument", "--out", str(out),
            "--cache", str(cache), "--workers", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    return {"root": root, "out": out, "cache": cache, "names": names, "instruments": instruments,
            "train": inst_train, "test": inst_test, "other": other, "argv": argv,
            "wav": wav}  # fmt: skip


def test_availability_and_quarantine(audioset: dict) -> None:
    out, names = audioset["out"], audioset["names"]
    videos = {r["video"]: r for r in read_manifest(out / "videos.jsonl")}
    silent = names[audioset["train"][3]]
    expected_ok = {names[s] for s in audioset["train"][:3] + audioset["test"]}
    assert set(videos) == expected_ok
    q = {r["path"]: r["reason"] for r in read_manifest(out / "quarantine.csv")}
    assert q == {silent: "silent-audio", audioset["wav"]: "no-video-stream"}
    unlisted = {r["path"] for r in read_manifest(out / "unlisted.csv")}
    assert names[audioset["other"]] in unlisted  # not an instrument segment: not selected
    assert "notes/readme.mp4" in unlisted
    missing = read_manifest(out / "missing.csv")
    card = __import__("json").loads((out / "prep.json").read_text())
    assert card["videos"]["missing"] == len(missing) > 1000
    for rel, r in videos.items():
        assert set(r["labels"]) <= audioset["instruments"] and r["labels"]
        assert set(r["labels"]) <= set(r["all_labels"])
        seg = next(s for s, n in names.items() if n == rel)
        assert r["ytid"] == seg.ytid and r["segment_start_s"] == seg.start_s
        assert r["cut"] is True  # every name here carries the start or the Y prefix


def test_roles_and_pairs(audioset: dict) -> None:
    out, names = audioset["out"], audioset["names"]
    test_files = {names[s] for s in audioset["test"]}
    for role in ("train", "test"):
        for task in ("avc", "sync"):
            rows = read_manifest(out / f"{task}_{role}.jsonl")
            assert rows
            files = {r["video"] for r in rows} | {r["audio_video"] for r in rows}
            assert (files <= test_files) if role == "test" else not (files & test_files)
            pos = sum(r["target"] for r in rows)
            assert pos == len(rows) - pos  # 50:50
            assert all(r["v"] == 1 and r["audio_s"] == 1.0 for r in rows)
    frames = read_manifest(out / "avc_train.jsonl")
    assert len({r["frame"] for r in frames if r["kind"] == "pos"}) >= 6  # ~1 per second each


def test_rerun_resumes_identically(audioset: dict) -> None:
    out = audioset["out"]
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert cli.main(audioset["argv"]) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before


def test_cli_errors(tmp_path: Path) -> None:
    assert cli.main(["audioset", str(AS / "eval_segments.csv"), "--videos",
                     str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    (tmp_path / "empty").mkdir()
    assert cli.main(["audioset", str(AS / "eval_segments.csv"), "--videos",
                     str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    bad_class = ["--classes", "Musicl instrumnt"]
    assert cli.main(["audioset", str(AS / "eval_segments.csv"), "--videos", str(tmp_path),
                     *bad_class, "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    np.testing.assert_equal(len(read_segments(AS / "eval_segments.csv")), 20371)
