"""``avssl-prep ucf101`` / ``folder`` / ``merge`` end to end, on a generated UCF-101 tree.

The tree uses the real ``ucfTrainTestlist`` (so almost every listed clip is missing), synthetic
Xvid clips with motion (data_prep.synth scenes), the real UCF-101 clip from ../shared/data, a
file of random bytes and a truncated file -- both named as listed clips -- and an unlisted file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avssl.data import decode
from avssl.data.encode import write_video
from avssl.data.manifest import read_manifest
from data_prep import cli, synth
from data_prep.scan import scan_folder, scan_ucf101
from data_prep.video_manifests import record_name
from data_prep.videos import MineConfig, merge_shards, prep_videos
from tests.media import real_clip, shared_data_dir

LISTS = shared_data_dir() / "ucf101" / "ucfTrainTestlist"
pytestmark = pytest.mark.skipif(
    not (LISTS / "classInd.txt").is_file(),
    reason=f"the official UCF-101 split lists are not at {LISTS} (../shared/data absent)",
)
REAL = "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"  # train in split 1
SYNTH = {  # relpath -> synth scene index
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi": 0,  # train 1
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": 1,  # test 1
    "Archery/v_Archery_g10_c02.avi": 2,  # train 1
    "Archery/v_Archery_g02_c01.avi": 3,  # test 1
    "HandstandPushups/v_HandStandPushups_g12_c01.avi": 4,  # the folder/file case quirk
    "Archery/v_Archery_g15_c01.avi": 5,  # train 1 and 2, test 3
}
CORRUPT = "Basketball/v_Basketball_g11_c01.avi"
TRUNCATED = "Bowling/v_Bowling_g12_c01.avi"
UNLISTED = "Archery/v_Archery_g26_c01.avi"
FAST = MineConfig(tuples_per_video=24, questions_per_video=8, clips_per_video=8)
CFG = synth.SynthConfig(num_frames=150)


def _write_synth(path: Path, index: int, seed: int = 3) -> None:
    frames, _, _ = synth.make_clip(CFG, seed, index)
    write_video(path, frames, fps=CFG.fps, codec="mpeg4", gop=50, max_b_frames=1,
                packed_b_frames=True)  # fmt: skip


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ucf") / "UCF-101"
    for rel, index in SYNTH.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _write_synth(root / rel, index)
    src = real_clip("ucf101_xvid_packed.avi")
    if src is not None:
        shutil.copy(src, root / REAL)
    (root / CORRUPT).parent.mkdir(parents=True)
    (root / CORRUPT).write_bytes(np.random.default_rng(0).bytes(20000))
    (root / TRUNCATED).parent.mkdir(parents=True)
    whole = (root / "Archery/v_Archery_g10_c02.avi").read_bytes()
    (root / TRUNCATED).write_bytes(whole[: len(whole) * 2 // 5])
    shutil.copy(root / "Archery/v_Archery_g02_c01.avi", root / UNLISTED)
    return root


@pytest.fixture(scope="module")
def ucf_out(ucf_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ucf_out")
    scan = scan_ucf101(ucf_tree.parent, LISTS, "all")  # the parent: UCF-101/ is found inside
    prep_videos(scan, out, config=FAST, workers=2, progress=False)
    return out


def _manifests(out: Path) -> dict[str, bytes]:
    names = [p for p in out.rglob("*") if p.suffix in (".jsonl", ".csv")]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(names)}


def test_scan_reports_missing_and_unlisted(ucf_tree: Path) -> None:
    scan = scan_ucf101(ucf_tree, LISTS, "1")
    found = {e.relpath for e in scan.entries}
    assert found == {*SYNTH, CORRUPT, TRUNCATED} | ({REAL} if (ucf_tree / REAL).exists() else set())
    assert len(scan.entries) + len(scan.missing) == 13320  # every clip of the lists, once
    assert scan.unlisted == [UNLISTED]
    hsp = next(e for e in scan.entries if e.relpath.startswith("HandstandPushups/"))
    assert hsp.class_name == "HandstandPushups" and hsp.class_id == 36 and hsp.group == 12
    test1 = next(e for e in scan.entries if e.relpath.endswith("g01_c01.avi"))
    assert test1.splits == {"1": "test", "2": "train", "3": "train"}


def test_manifests_and_quarantine(ucf_out: Path, ucf_tree: Path) -> None:
    videos = {r["video"]: r for r in read_manifest(ucf_out / "videos.jsonl")}
    assert set(videos) == {e.relpath for e in scan_ucf101(ucf_tree, LISTS).entries} - {
        CORRUPT, TRUNCATED,
    }  # fmt: skip
    quarantine = {r["path"]: r for r in read_manifest(ucf_out / "quarantine.csv")}
    assert set(quarantine) == {CORRUPT, TRUNCATED}
    assert quarantine[CORRUPT]["reason"] == "not-media"
    assert quarantine[TRUNCATED]["reason"] == "truncated"
    assert CORRUPT in quarantine[CORRUPT]["message"]
    for rel, row in videos.items():
        info = decode.probe(ucf_tree / rel)
        assert row["num_frames"] == info.num_frames  # counted, not the header's claim
        assert row["fingerprint"] and row["size_bytes"] == (ucf_tree / rel).stat().st_size
        assert row["splits"]["1"] in ("train", "test")
    missing = read_manifest(ucf_out / "missing.csv")
    assert len(missing) == 13320 - len(videos) - 2
    assert [r["path"] for r in read_manifest(ucf_out / "unlisted.csv")] == [UNLISTED]
    card = json.loads((ucf_out / "prep.json").read_text())
    assert card["videos"]["quarantined"] == 2 and card["videos"]["ok"] == len(videos)
    assert set(card["splits"]) == {"1", "2", "3"}
    probe_rows = read_manifest(ucf_out / "probe.jsonl")
    assert {r["video"] for r in probe_rows} == set(videos)


@pytest.mark.parametrize("split", ["1", "2", "3"])
def test_pretext_samples_come_from_the_splits_training_videos(ucf_out: Path, split: str) -> None:
    videos = {r["video"]: r for r in read_manifest(ucf_out / "videos.jsonl")}
    d = ucf_out / f"split{split}"
    train = {r["video"] for r in read_manifest(d / "train.jsonl")}
    test = {r["video"] for r in read_manifest(d / "test.jsonl")}
    assert train and test and not train & test
    assert train == {v for v, r in videos.items() if r["splits"][split] == "train"}
    total = 0
    for task in ("shuffle_learn", "odd_one_out", "arrow_of_time"):
        rows = read_manifest(d / f"{task}.jsonl")
        total += len(rows)
        assert {r["video"] for r in rows} <= train, f"{task}: a test video of split {split}"
        for r in rows:
            n = videos[r["video"]]["num_frames"]
            frames = r.get("frames") or [i for s in r["subsequences"] for i in s]
            assert r["v"] == 1 and all(0 <= i < n for i in frames)
    assert total > 0


def test_shuffle_learn_rows_follow_the_paper(ucf_out: Path) -> None:
    rows = read_manifest(ucf_out / "split1" / "shuffle_learn.jsonl")
    assert len({r["video"] for r in rows}) >= 3  # the synthetic clips move enough to mine
    for r in rows:
        a, b, c, d, e = r["five"]
        assert a < b < c < d < e and d - b <= FAST.tau_max
        assert b - a >= FAST.tau_min and e - d >= FAST.tau_min
        w0, w1 = r["window"]
        assert w0 <= a and e < w1
        expect = {"pos_fwd": [b, c, d], "pos_rev": [d, c, b], "neg_a": [b, a, d],
                  "neg_e": [b, e, d]}[r["kind"]]  # fmt: skip
        assert r["frames"] == expect
        assert r["target"] == int(r["kind"].startswith("pos"))
    positives = np.mean([r["target"] for r in rows])
    assert 0.1 < positives < 0.45  # 25% asked; a few dozen rows


def test_real_ucf_clip_is_mined(ucf_out: Path, ucf_tree: Path) -> None:
    if not (ucf_tree / REAL).exists():
        pytest.skip("the real UCF-101 clip is not in ../shared/data/av-clips")
    rec = json.loads((ucf_out / "records" / REAL.replace("/", "__")).with_suffix(".avi.json")
                     .read_text())  # fmt: skip
    assert rec["status"] == "ok" and rec["video"]["num_frames"] == 164
    assert rec["video"]["kind"] == "avi/mpeg4/packed-b"
    assert rec["shuffle_learn"] and rec["arrow_of_time"]


def test_rerun_reuses_everything_and_is_identical(ucf_out: Path, ucf_tree: Path) -> None:
    before = _manifests(ucf_out)
    result = prep_videos(scan_ucf101(ucf_tree, LISTS, "all"), ucf_out, config=FAST, workers=1,
                         progress=False)  # fmt: skip
    assert result.counts.get("processed", 0) == 0 and result.counts["reused"] == 9
    assert _manifests(ucf_out) == before


def test_changed_file_is_reprocessed(ucf_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    shutil.copytree(ucf_tree / "Archery", root / "Archery")
    out = tmp_path / "out"
    r1 = prep_videos(scan_folder(root), out, config=FAST, workers=1, progress=False)
    assert r1.counts["processed"] == 4
    rows1 = {r["video"]: r for r in read_manifest(out / "videos.jsonl")}
    changed = "Archery/v_Archery_g10_c02.avi"
    _write_synth(root / changed, 4)  # other content, same name
    r2 = prep_videos(scan_folder(root), out, config=FAST, workers=1, progress=False)
    assert r2.counts == {"processed": 1, "ok": 1, "reused": 3}
    rows2 = {r["video"]: r for r in read_manifest(out / "videos.jsonl")}
    assert rows2[changed]["fingerprint"] != rows1[changed]["fingerprint"]
    assert rows2["Archery/v_Archery_g02_c01.avi"] == rows1["Archery/v_Archery_g02_c01.avi"]


def test_a_probe_without_reference_chains_is_made_again(ucf_tree: Path, tmp_path: Path) -> None:
    """A record written before the probe recorded reference chains (issue 25) is re-made on a
    re-run, so that loaders find them in probe.jsonl; the others are reused."""
    root = tmp_path / "videos"
    shutil.copytree(ucf_tree / "Archery", root / "Archery")
    out = tmp_path / "out"
    prep_videos(scan_folder(root), out, config=FAST, workers=1, progress=False)
    probes = {r["video"]: r for r in read_manifest(out / "probe.jsonl")}
    assert all("frame_refs" in r for r in probes.values())
    old = out / "records" / record_name("Archery/v_Archery_g10_c02.avi")
    rec = json.loads(old.read_text())
    del rec["info"]["frame_refs"], rec["info"]["frame_pts"]
    old.write_text(json.dumps(rec))
    r2 = prep_videos(scan_folder(root), out, config=FAST, workers=1, progress=False)
    assert r2.counts == {"processed": 1, "ok": 1, "reused": 3}
    again = {r["video"]: r for r in read_manifest(out / "probe.jsonl")}
    assert again == probes


def test_shards_merge_to_the_unsharded_result(ucf_out: Path, ucf_tree: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    scan = scan_ucf101(ucf_tree, LISTS, "all")
    dirs = []
    for i in range(3):
        d = tmp_path / f"shard{i}"
        r = prep_videos(scan, d, config=FAST, workers=1, shard=(i, 3), progress=False)
        assert not (d / "videos.jsonl").exists() and (d / f"shard-{i}-of-3.json").is_file()
        assert sum(r.counts.get(k, 0) for k in ("processed", "reused")) in (2, 3)
        dirs.append(d)
    with pytest.raises(FileNotFoundError, match=r"shards \[2\] of 3 are missing"):
        merge_shards(tmp_path / "merged", dirs[:2])
    merge_shards(tmp_path / "merged", dirs)
    assert _manifests(tmp_path / "merged") == _manifests(ucf_out)


def test_seed_changes_samples_not_videos(ucf_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "v"
    shutil.copytree(ucf_tree / "Archery", root / "Archery")
    outs = []
    for seed in (0, 1):
        o = tmp_path / f"s{seed}"
        prep_videos(scan_folder(root), o, config=MineConfig(seed=seed, tuples_per_video=24),
                    workers=1, progress=False)  # fmt: skip
        outs.append(o)
    a, b = (read_manifest(o / "shuffle_learn.jsonl") for o in outs)
    assert a and b and a != b
    assert read_manifest(outs[0] / "videos.jsonl") == read_manifest(outs[1] / "videos.jsonl")


def _records(out: Path) -> list[Path]:
    """Committed records only (pathlib's glob also matches the hidden temporary files)."""
    return [p for p in (out / "records").glob("*.json") if not p.name.startswith(".")]


def test_killed_run_resumes_to_identical_manifests(ucf_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "v"
    for rel in SYNTH:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ucf_tree / rel, root / rel)
    args = ["folder", str(root), "--tuples-per-video", "24", "--workers", "1"]
    ref = tmp_path / "ref"
    assert cli.main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "data_prep.cli", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_records(out)) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_records(out))
    stale = out / "records" / ".v_killed.abcd1234.tmp.json"  # as a kill mid-write leaves one
    stale.write_text("{")
    assert 2 <= done < len(SYNTH), "the run was not killed mid-way"
    assert not (out / "videos.jsonl").exists()
    assert cli.main([*args, "--out", str(out)]) == 0
    assert _manifests(out) == _manifests(ref)
    leftovers = [p.name for p in out.rglob(".*tmp*")]
    assert not leftovers


def test_folder_classes_and_cli(tmp_path: Path, ucf_tree: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root = tmp_path / "v"
    shutil.copytree(ucf_tree / "ApplyEyeMakeup", root / "makeup")
    shutil.copy(ucf_tree / "Archery/v_Archery_g02_c01.avi", root / "loose.avi")
    (root / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    assert cli.main(["folder", str(root), "--out", str(out), "--motion", "diff",
                     "--tuples-per-video", "8"]) == 0  # fmt: skip
    summary = capsys.readouterr().out
    assert "folder manifests in" in summary and "quarantined" in summary
    rows = {r["video"]: r for r in read_manifest(out / "videos.jsonl")}
    assert rows["loose.avi"]["class_name"] == "" and rows["loose.avi"]["class_id"] == -1
    assert all(r["class_name"] == "makeup" for k, r in rows.items() if k.startswith("makeup/"))
    assert all(r["motion"] == "diff" for r in rows.values())
    assert (out / "shuffle_learn.jsonl").is_file()
    assert cli.main(["folder", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_transcode_cache_in_manifest(ucf_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "v"
    shutil.copytree(ucf_tree / "Archery", root / "Archery")
    out, cache = tmp_path / "out", tmp_path / "cache"
    prep_videos(scan_folder(root), out, config=FAST, workers=1, cache_dir=cache,
                progress=False)  # fmt: skip
    rows = read_manifest(out / "videos.jsonl")
    for r in rows:
        c = cache / r["cache_video"]
        assert decode.probe(c).num_frames == r["num_frames"] == r["cache_num_frames"]
    tuples = read_manifest(out / "shuffle_learn.jsonl")
    assert tuples and all("cache_video" in t for t in tuples)
    before = (out / "shuffle_learn.jsonl").read_bytes()
    shutil.rmtree(cache)  # a lost cache is rebuilt on the next run
    r2 = prep_videos(scan_folder(root), out, config=FAST, workers=1, cache_dir=cache,
                     progress=False)  # fmt: skip
    assert r2.counts.get("processed") == len(rows)
    assert (out / "shuffle_learn.jsonl").read_bytes() == before
    assert all((cache / r["cache_video"]).is_file() for r in rows)
