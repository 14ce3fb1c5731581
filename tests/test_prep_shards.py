"""``--shard I/N`` + ``avssl-prep merge`` for the per-file preps (esc50, audio-folder, images):
a 2-shard run merged gives files byte-identical to an unsharded run, through the command line,
with the shards in their own directories or all in OUT; missing or mismatched shards are refused.
(The video preps' shards: tests/test_prep_videos.py::test_shards_merge_to_the_unsharded_result.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avssl.data.encode import write_audio
from data_prep import cli
from tests.media import shared_data_dir
from tests.test_prep_images import _png

ESC50_CSV = shared_data_dir() / "esc50" / "esc50.csv"
OUT_ESC50 = ("clips.jsonl", "quarantine.csv", "missing.csv", "unlisted.csv", "prep.json")
OUT_FOLDER = ("clips.jsonl", "quarantine.csv", "unmatched.csv", "prep.json")
OUT_IMAGES = ("images.jsonl", "quarantine.csv", "prep.json")


def _tone(i: int, seconds: float = 0.05, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (300.0 + 40 * i) * t)).astype(np.float32)[None]


def _files(out: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in names}


def _sharded_equals_unsharded(
    tmp_path: Path, argv: list[str], outputs: tuple[str, ...], n: int = 2
) -> None:
    """``argv + --out``: once unsharded, then as n shards in their own directories and as n
    shards sharing OUT, each merged; all three give the same bytes."""
    ref = tmp_path / "ref"
    assert cli.main([*argv, "--out", str(ref)]) == 0
    want = _files(ref, outputs)
    command = argv[0]
    dirs = [tmp_path / f"shard{i}" for i in range(n)]
    for i, d in enumerate(dirs):
        assert cli.main([*argv, "--out", str(d), "--shard", f"{i}/{n}"]) == 0
        assert (d / f"{command}-shard-{i}-of-{n}.json").is_file()
        assert not any((d / o).exists() for o in outputs)  # a shard writes no manifest
    # every file is opened by exactly one shard
    opened = [json.loads((d / f"{command}-shard-{i}-of-{n}.json").read_text())["files"]
              for i, d in enumerate(dirs)]  # fmt: skip
    assert sum(len(f) for f in opened) == len({x for f in opened for x in f}) > 0
    assert cli.main(["merge", str(tmp_path / "merged"), *map(str, dirs)]) == 0
    assert _files(tmp_path / "merged", outputs) == want
    shared = tmp_path / "shared"
    for i in range(n):
        assert cli.main([*argv, "--out", str(shared), "--shard", f"{i}/{n}"]) == 0
    assert cli.main(["merge", str(shared)]) == 0  # SHARD_DIRS default: OUT itself
    assert _files(shared, outputs) == want
    # a missing shard, and a shard of another run, are refused
    assert cli.main(["merge", str(tmp_path / "m2"), str(dirs[0])]) == 2
    assert not (tmp_path / "m2" / outputs[0]).exists()


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    for k, lab in enumerate(("2", "10", "dog")):
        for i in range(4):
            (root / lab).mkdir(parents=True, exist_ok=True)
            write_audio(root / lab / f"{lab}_{i}.wav", _tone(4 * k + i), sample_rate=16000)
    (root / "10" / "10_bad.wav").write_bytes(b"RIFF not really a wav")  # quarantined
    write_audio(root / "loose.wav", _tone(99), sample_rate=16000)  # unmatched
    return root


def test_audio_folder_shards(audio_folder: Path, tmp_path: Path) -> None:
    argv = ["audio-folder", str(audio_folder), "--pattern", "{label:seg}/{_:seg}",
            "--num-folds", "3", "--workers", "1"]  # fmt: skip
    _sharded_equals_unsharded(tmp_path, argv, OUT_FOLDER)
    q = (tmp_path / "merged" / "quarantine.csv").read_text()
    assert "10/10_bad.wav" in q  # the bad file's verdict came through the shard note


def test_images_shards(tmp_path: Path) -> None:
    root = tmp_path / "pics"
    for i in range(5):
        _png(root / "cat" / f"c{i}.png", 10 * i)
        _png(root / "dog" / f"d{i}.jpg", 100 + 10 * i)
    _png(root / "loose.png", 7)
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    argv = ["images", str(root), "--test-fraction", "0.3", "--seed", "1", "--workers", "1"]
    _sharded_equals_unsharded(tmp_path, argv, OUT_IMAGES, n=3)


@pytest.mark.skipif(not ESC50_CSV.is_file(), reason=f"the real ESC-50 csv is not at {ESC50_CSV}")
def test_esc50_shards(tmp_path: Path) -> None:
    root = tmp_path / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    shutil.copy(ESC50_CSV, root / "meta" / "esc50.csv")
    names = sorted(
        line.split(",")[0] for line in ESC50_CSV.read_text().splitlines()[1:] if line.strip()
    )
    (root / "audio").mkdir()
    for i, name in enumerate(names[:7]):
        write_audio(root / "audio" / name, _tone(i, rate=44100), sample_rate=44100)
    (root / "audio" / names[7]).write_bytes(np.random.default_rng(0).bytes(4000))  # corrupt
    write_audio(root / "audio" / "9-999999-A-0.wav", _tone(9, rate=44100), sample_rate=44100)
    _sharded_equals_unsharded(tmp_path, ["esc50", str(root), "--workers", "1"], OUT_ESC50)


def test_mismatched_shards_are_refused(audio_folder: Path, tmp_path: Path) -> None:
    base = ["audio-folder", str(audio_folder), "--workers", "1", "--pattern"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main([*base, "{label:seg}/{_:seg}", "--out", str(a), "--shard", "0/2"]) == 0
    assert cli.main([*base, "{label:seg}/{_:path}", "--out", str(b), "--shard", "1/2"]) == 0
    assert cli.main(["merge", str(tmp_path / "m"), str(a), str(b)]) == 2  # other parameters
    # the folder changed since the shards ran: a file nobody probed
    c = tmp_path / "c"
    for i in range(2):
        assert cli.main([*base, "{label:seg}/{_:seg}", "--out", str(c), "--shard", f"{i}/2"]) == 0
    write_audio(audio_folder / "dog" / "dog_9.wav", _tone(50), sample_rate=16000)
    assert cli.main(["merge", str(c)]) == 2
    with pytest.raises(SystemExit):
        cli.main([*base, "{label:seg}/{_:seg}", "--out", str(c), "--shard", "2/2"])


def test_video_folder_shards_through_the_cli(tmp_path: Path) -> None:
    """The video preps through the same `avssl-prep merge` (their own records; the engine's
    tests are in tests/test_prep_videos.py): `folder` on 6 synthetic clips, 2 shards."""
    from data_prep import synth

    synth.build_synth(tmp_path / "s", num_clips=6, seed=5, workers=1, progress=False)
    argv = ["folder", str(tmp_path / "s" / "videos"), "--workers", "1", "--tuples-per-video",
            "6", "--questions-per-video", "3", "--clips-per-video", "3"]  # fmt: skip

    def manifests(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))}

    assert cli.main([*argv, "--out", str(tmp_path / "ref")]) == 0
    want = manifests(tmp_path / "ref")
    assert "videos.jsonl" in want and len(want) >= 4
    dirs = [tmp_path / f"v{i}" for i in range(2)]
    for i, d in enumerate(dirs):
        assert cli.main([*argv, "--out", str(d), "--shard", f"{i}/2"]) == 0
    assert cli.main(["merge", str(tmp_path / "merged"), *map(str, dirs)]) == 0
    assert manifests(tmp_path / "merged") == want


def test_arrow_max_stride_spans_more_time(tmp_path: Path) -> None:
    """`--arrow-max-stride S`: arrow clips' frames 1..S apart (the default, 2, never more)."""
    from data_prep import synth

    synth.build_synth(tmp_path / "s", num_clips=3, seed=5, workers=1, progress=False)
    argv = ["folder", str(tmp_path / "s" / "videos"), "--workers", "1", "--tuples-per-video",
            "2", "--questions-per-video", "2", "--clips-per-video", "24"]  # fmt: skip

    def strides(out: Path) -> set[int]:
        rows = [json.loads(x) for x in (out / "arrow_of_time.jsonl").read_text().splitlines()]
        return {abs(r["frames"][1] - r["frames"][0]) for r in rows}

    assert cli.main([*argv, "--out", str(tmp_path / "d")]) == 0
    assert strides(tmp_path / "d") <= {1, 2}
    assert cli.main([*argv, "--out", str(tmp_path / "s6"), "--arrow-max-stride", "6"]) == 0
    got = strides(tmp_path / "s6")
    assert got <= set(range(1, 7)) and max(got) > 2
    with pytest.raises(SystemExit):
        cli.main([*argv, "--out", str(tmp_path / "x"), "--arrow-max-stride", "0"])
