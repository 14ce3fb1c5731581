"""``avssl-prep av-digits`` (data_prep/av_digits.py): built from a tiny generated sheet and
FSDD-style wavs, plus one run on the real sources in ../shared/data when they are there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data_prep.av_digits import DEFAULT_DIGITS, DEFAULT_FSDD, prep_av_digits
from data_prep.cli import main

CELL = 20
COLS = 4  # columns 0-1 train, 2-3 test: 10 images per digit and split
SPEAKERS = ("ann", "bob", "cy")
TAKES = 8  # takes 0-4 test (15 recordings per digit), 5-7 train (9)
SR = 16000


def _length_8k(digit: int, speaker: int, take: int) -> int:
    """Some shorter than 1 s, some longer (at 8 kHz), odd and even."""
    return 1001 + 1499 * take + 37 * speaker + digit


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    import cv2
    import soundfile as sf

    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(1)
    sheet = rng.integers(0, 256, (50 * CELL, COLS * CELL), dtype=np.uint8)
    png = root / "digits.png"
    assert cv2.imwrite(str(png), sheet)
    wavs = root / "recordings"
    wavs.mkdir()
    for d in range(10):
        for s, name in enumerate(SPEAKERS):
            for t in range(TAKES):
                x = rng.integers(-3000, 3000, _length_8k(d, s, t)).astype(np.int16)
                x[0] = x[-1] = 2000  # non-zero ends: the padding is exactly the zeros
                sf.write(str(wavs / f"{d}_{name}_{t}.wav"), x, 8000, subtype="PCM_16")
    return png, wavs, sheet


@pytest.fixture(scope="module")
def built(sources: tuple[Path, Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    png, wavs, _ = sources
    out = tmp_path_factory.mktemp("out") / "av-digits"
    result = prep_av_digits(png, wavs, out, seed=3, mosaics=40)
    assert len(result.written) == 9
    return out


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cell(sheet: np.ndarray, image_id: str) -> np.ndarray:
    r, c = (int(v) for v in image_id.split("_"))
    return sheet[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]


def _take(stem: str) -> int:
    return int(stem.rsplit("_", 1)[1])


def test_shapes_and_audio(built: Path, sources: tuple[Path, Path, np.ndarray]) -> None:
    from scipy.signal import resample_poly

    _, wavs, sheet = sources
    frames = np.load(built / "frames.npy")
    audio = np.load(built / "audio.npy")
    mosaics = np.load(built / "mosaics.npy")
    assert frames.shape == (50 * COLS, CELL, CELL, 3) and frames.dtype == np.uint8
    assert audio.shape == (10 * len(SPEAKERS) * TAKES * SR,) and audio.dtype == np.int16
    assert mosaics.shape == (40, 2 * CELL, 2 * CELL, 3) and mosaics.dtype == np.uint8
    for k in (0, 7, 199):  # row-major sheet order, grey copied to 3 channels
        r, c = divmod(k, COLS)
        assert (frames[k] == _cell(sheet, f"{r}_{c}")[..., None]).all()
    # recording j, sorted by (digit, speaker, take): 1 s, centred, resample_poly(2, 1)
    order = [(d, s, t) for d in range(10) for s in range(len(SPEAKERS)) for t in range(TAKES)]
    for j in (0, 5, 6, 17, len(order) - 1):
        d, s, t = order[j]
        import soundfile as sf

        x, _ = sf.read(str(wavs / f"{d}_{SPEAKERS[s]}_{t}.wav"), dtype="int16")
        y = resample_poly(x.astype(np.float64), 2, 1)
        got = audio[j * SR : (j + 1) * SR]
        if len(y) < SR:
            a = (SR - len(y)) // 2
            assert not got[:a].any() and not got[a + len(y) :].any()
            assert got[a] != 0 and got[a + len(y) - 1] != 0
            want = y
            got = got[a : a + len(y)]
        else:
            a = (len(y) - SR) // 2
            want = y[a : a + SR]
        assert np.array_equal(got, np.clip(np.rint(want), -32768, 32767).astype(np.int16))


def test_split_pairing_and_coverage(built: Path) -> None:
    every_rec = {f"{d}_{s}_{t}" for d in range(10) for s in SPEAKERS for t in range(TAKES)}
    seen_rows: set[int] = set()
    seen_recs: set[str] = set()
    for split in ("train", "test"):
        rows = _jsonl(built / f"avc_{split}.jsonl")
        pos = rows[0::2]
        assert len(pos) == 10 * (10 if split == "train" else 15)  # max(n_img, n_rec) per digit
        assert [r["kind"] for r in rows] == ["pos", "other"] * len(pos)
        assert len({r["video"] for r in pos}) == len(pos)
        for r in pos:
            col = int(r["image"].split("_")[1])
            assert (col < COLS // 2) == (split == "train")
            assert (_take(r["recording"]) >= 5) == (split == "train")
            assert r["recording"].split("_")[0] == r["labels"][0] == str(r["class_id"])
            assert r["video"] == f"{split}/{r['class_id']}/{r['image']}+{r['recording']}"
            assert r["audio_video"] == r["video"] and r["target"] == 1
            j = r["cache_audio_sample"] // SR
            assert r["cache_audio_sample"] == j * SR and r["cache_audio_start_s"] == -float(j)
            assert r["cache_row"] // COLS // 5 == r["class_id"]
            assert (r["frame"], r["frame_s"], r["fps"], r["span"]) == (0, 0.5, 1.0, [0.0, 0, 1])
        seen_rows |= {r["cache_row"] for r in pos}
        seen_recs |= {r["recording"] for r in pos}
        want_recs = {s for s in every_rec if (_take(s) >= 5) == (split == "train")}
        assert {r["recording"] for r in pos} == want_recs
    assert seen_rows == set(range(50 * COLS)) and seen_recs == every_rec


def test_negatives_come_from_another_pair(built: Path) -> None:
    for split in ("train", "test"):
        rows = _jsonl(built / f"avc_{split}.jsonl")
        by_video = {r["video"]: r for r in rows[0::2]}
        same = 0
        for p, n in zip(rows[0::2], rows[1::2], strict=True):
            assert n["target"] == 0 and n["kind"] == "other"
            frame_keys = ("video", "cache_row", "image", "labels", "frame", "frame_s")
            assert all(n[k] == p[k] for k in frame_keys)
            other = by_video[n["audio_video"]]  # a positive of the same split
            assert other["video"] != p["video"] and other["recording"] != p["recording"]
            assert n["cache_audio_sample"] == other["cache_audio_sample"]
            assert n["cache_audio_start_s"] == other["cache_audio_start_s"]
            assert n["audio_labels"] == other["labels"]
            same += n["audio_labels"] == p["labels"]
        assert same < len(rows) // 4  # ~10% say the same digit


def test_mosaics_and_localization(built: Path, sources: tuple[Path, Path, np.ndarray]) -> None:
    sheet = sources[2]
    mosaics = np.load(built / "mosaics.npy")
    frames = np.load(built / "frames.npy")
    rows = _jsonl(built / "localization_test.jsonl")
    vggss = json.loads((built / "localization_test.json").read_text())
    assert len(rows) == len(vggss) == 40
    boxes = ([0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1])
    for m, (r, v) in enumerate(zip(rows, vggss, strict=True)):
        assert r["id"] == v["file"] == f"mosaic_{m:05d}" and r["cache_row"] == m
        assert len(set(r["digits"])) == 4 and r["size"] == [2 * CELL, 2 * CELL]
        q = r["target_quadrant"]
        assert r["bbox"] == v["bbox"] == [boxes[q]]
        assert r["labels"] == [v["class"]] == [str(r["digits"][q])]
        assert r["recording"].split("_")[0] == v["class"] and _take(r["recording"]) < 5
        assert r["cache_audio_sample"] % SR == 0
        # the box's pixels are a test image of the spoken digit, as on the sheet
        x1, y1, x2, y2 = (round(c * 2 * CELL) for c in r["bbox"][0])
        crop = mosaics[m, y1:y2, x1:x2]
        image_id = r["images"][q]
        assert int(image_id.split("_")[1]) >= COLS // 2  # a test column
        assert int(image_id.split("_")[0]) // 5 == r["digits"][q]
        assert (crop == _cell(sheet, image_id)[..., None]).all()
        assert (crop == frames[r["image_rows"][q]]).all()
        for k, d in enumerate(r["digits"]):
            assert int(r["images"][k].split("_")[0]) // 5 == d


def test_gallery_and_card(built: Path) -> None:
    rows = _jsonl(built / "gallery_test.jsonl")
    assert [r["class_id"] for r in rows] == [d for d in range(10) for _ in range(10)]
    assert len({r["cache_row"] for r in rows}) == 100
    assert all(int(r["image"].split("_")[1]) >= COLS // 2 for r in rows)
    card = json.loads((built / "prep.json").read_text())
    assert card["format"] == "avssl-prep" and card["dataset"] == "av-digits"
    assert card["cache_dir"] == str(built.resolve())
    assert card["config"]["cache_sample_rate"] == SR and card["config"]["seed"] == 3
    assert card["counts"]["pairs"] == {"train": 100, "test": 150}
    assert card["counts"]["recordings_per_split"] == {"train": 90, "test": 150}


def test_rerun_is_identical(
    built: Path, sources: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    png, wavs, _ = sources
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in built.iterdir()}
    assert prep_av_digits(png, wavs, built, seed=3, mosaics=40).written == []
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in built.iterdir()}
    assert after == before  # no temporary files left, nothing rewritten
    other = tmp_path / "again"
    prep_av_digits(png, wavs, other, seed=3, mosaics=40)
    for name, (data, _) in before.items():
        if name != "prep.json":  # it names its own folder
            assert (other / name).read_bytes() == data, name
    a, b = (json.loads((d / "prep.json").read_text()) for d in (built, other))
    assert {**a, "cache_dir": None} == {**b, "cache_dir": None}
    seed4 = tmp_path / "seed4"
    prep_av_digits(png, wavs, seed4, seed=4, mosaics=40)
    assert (seed4 / "avc_train.jsonl").read_bytes() != before["avc_train.jsonl"][0]


def test_missing_source_exit_2(
    sources: tuple[Path, Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, wavs, _ = sources
    out = tmp_path / "out"
    argv = ["av-digits", "--digits", str(png), "--fsdd", str(tmp_path / "nope"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "avssl-prep av-digits:" in err and "nope" in err and "FSDD" in err
    assert "Traceback" not in err
    argv = ["av-digits", "--digits", str(tmp_path / "no.png"), "--fsdd", str(wavs)]
    assert main([*argv, "--out", str(out)]) == 2
    assert "digits sheet" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        prep_av_digits(png, tmp_path / "nope", out)


@pytest.mark.skipif(
    not (DEFAULT_DIGITS.is_file() and DEFAULT_FSDD.is_dir()),
    reason=f"the real sources are not here ({DEFAULT_DIGITS}, {DEFAULT_FSDD})",
)
def test_real_sources(tmp_path: Path) -> None:
    result = prep_av_digits(out=tmp_path / "av-digits")
    c = result.counts
    assert c["pairs"] == {"train": 2500, "test": 2500}
    assert c["avc_rows"] == {"train": 5000, "test": 5000}
    assert c["recordings"] == 2000 and c["recordings_per_split"] == {"train": 1800, "test": 200}
    assert c["images"] == 5000 and c["mosaics"] == 500 and c["gallery"] == 100
    for split in ("train", "test"):
        assert 0.05 < c["same_digit_negatives"][split] / 2500 < 0.15
    assert np.load(tmp_path / "av-digits" / "audio.npy", mmap_mode="r").shape == (2000 * SR,)
    assert np.load(tmp_path / "av-digits" / "frames.npy", mmap_mode="r").shape == (5000, 20, 20, 3)
