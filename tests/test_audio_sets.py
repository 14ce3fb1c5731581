"""ESC-50 and labelled-folder audio prep (data_prep.audio_sets), end to end.

ESC-50: the REAL meta/esc50.csv (../shared/data/esc50) with generated wavs for 12 listed clips
across the 5 folds, a listed file of random bytes, a listed truncated wav and an unlisted wav;
the rest of the 2,000 listed clips is missing. Folder: the real FSDD recordings
(../shared/data/fsdd) and small generated trees for the pattern and fold rules.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from avssl.data.decode import probe_audio
from avssl.data.encode import write_audio
from avssl.data.manifest import read_manifest
from data_prep.audio_folder import PathPattern, assign_folds, prep_audio_folder
from data_prep.audio_sets import natural_key
from data_prep.esc50 import prep_esc50, read_esc50_csv
from tests.media import shared_data_dir

ESC50_CSV = shared_data_dir() / "esc50" / "esc50.csv"
FSDD = shared_data_dir() / "fsdd" / "recordings"
needs_esc50 = pytest.mark.skipif(
    not ESC50_CSV.is_file(), reason=f"the real ESC-50 csv is not at {ESC50_CSV}"
)
needs_fsdd = pytest.mark.skipif(
    not FSDD.is_dir(), reason=f"the FSDD recordings are not at {FSDD} (../shared/data absent)"
)
OUTPUTS_ESC50 = ("clips.jsonl", "quarantine.csv", "missing.csv", "unlisted.csv", "prep.json")
OUTPUTS_FOLDER = ("clips.jsonl", "quarantine.csv", "unmatched.csv", "prep.json")


def _tone(seconds: float = 0.2, rate: int = 44100, channels: int = 1, freq: float = 440.0):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.repeat(x[None], channels, axis=0)


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


def _bytes(out: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in names}


# --------------------------------------------------------------------------------------------
# ESC-50
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def esc50_tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not ESC50_CSV.is_file():
        pytest.skip(f"the real ESC-50 csv is not at {ESC50_CSV}")
    root = tmp_path_factory.mktemp("esc") / "ESC-50-master"
    (root / "meta").mkdir(parents=True)
    shutil.copy(ESC50_CSV, root / "meta" / "esc50.csv")
    listed = _csv_rows(ESC50_CSV)
    by_fold: dict[str, list[str]] = {}
    for name in sorted(listed):
        by_fold.setdefault(listed[name]["fold"], []).append(name)
    # 12 good clips over all 5 folds (3, 3, 2, 2, 2), then a corrupt and a truncated listed one.
    good = [n for k, take in zip("12345", (3, 3, 2, 2, 2), strict=True) for n in by_fold[k][:take]]
    corrupt, truncated = by_fold["3"][5], by_fold["5"][7]
    audio = root / "audio"
    audio.mkdir()
    for i, name in enumerate(good):
        write_audio(audio / name, _tone(freq=200.0 + 50 * i), sample_rate=44100)
    silent, stereo = good[4], good[7]
    write_audio(audio / silent, np.zeros((1, 8820), np.float32), sample_rate=44100)
    write_audio(audio / stereo, _tone(channels=2), sample_rate=44100)
    (audio / corrupt).write_bytes(np.random.default_rng(0).bytes(4000))
    write_audio(audio / truncated, _tone(), sample_rate=44100)
    data = (audio / truncated).read_bytes()
    (audio / truncated).write_bytes(data[: len(data) // 2])
    write_audio(audio / "9-999999-A-0.wav", _tone(), sample_rate=44100)  # unlisted
    write_audio(audio / "._1-100032-A-0.wav", _tone(), sample_rate=44100)  # hidden: skipped.csv
    return {
        "root": root,
        "listed": listed,
        "good": good,
        "silent": silent,
        "stereo": stereo,
        "corrupt": corrupt,
        "truncated": truncated,
    }


@pytest.fixture(scope="module")
def esc50_out(esc50_tree: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("esc_out")
    result = prep_esc50(esc50_tree["root"], out, workers=1, progress=False)
    assert result.out == out.resolve()
    assert result.counts == {
        "ok": 12,
        "quarantined": 2,
        "missing": 2000 - 14,
        "unlisted": 1,
        "skipped": 1,
        "probed": 14,
    }
    text = result.summary()
    assert "12 ok, 2 quarantined" in text and "1986 listed but missing" in text
    assert "1 other entries not taken (skipped.csv)" in text
    assert (out / "skipped.csv").read_text().splitlines()[1] == (
        "audio/._1-100032-A-0.wav,hidden,hidden file"
    )
    assert "1: 3, 2: 3, 3: 2, 4: 2, 5: 2" in text
    return out


@needs_esc50
def test_esc50_clips_follow_the_csv(esc50_tree: dict, esc50_out: Path) -> None:
    rows = read_manifest(esc50_out / "clips.jsonl")
    listed = esc50_tree["listed"]
    assert [r["path"] for r in rows] == sorted(f"audio/{n}" for n in esc50_tree["good"])
    assert {r["fold"] for r in rows} == {1, 2, 3, 4, 5}
    for r in rows:
        src = listed[r["path"].removeprefix("audio/")]
        assert r["v"] == 1
        assert r["fold"] == int(src["fold"])  # folds exactly as given
        assert r["class_id"] == int(src["target"])
        assert r["label"] == src["category"]
        assert r["esc10"] is (src["esc10"] == "True")
        assert (r["src_file"], r["take"]) == (src["src_file"], src["take"])
        assert r["sample_rate"] == 44100
        assert r["duration_s"] == pytest.approx(0.2, abs=1e-3)
        name = r["path"].removeprefix("audio/")
        assert r["channels"] == (2 if name == esc50_tree["stereo"] else 1)
        assert r["audible"] is (name != esc50_tree["silent"])  # silent clips are kept
    assert list(rows[0])[:5] == ["v", "path", "label", "class_id", "fold"]


@needs_esc50
def test_esc50_reports_missing_unlisted_and_quarantine(esc50_tree: dict, esc50_out: Path) -> None:
    quarantine = read_manifest(esc50_out / "quarantine.csv")
    reasons = {r["path"]: r["reason"] for r in quarantine}
    assert reasons == {
        f"audio/{esc50_tree['corrupt']}": "not-media",
        f"audio/{esc50_tree['truncated']}": "truncated",
    }
    for r in quarantine:  # messages name the file relative to ROOT, not where ROOT lies
        assert r["message"].startswith(r["path"] + ":")
        assert str(esc50_tree["root"]) not in r["message"]
    assert read_manifest(esc50_out / "unlisted.csv") == [{"path": "audio/9-999999-A-0.wav"}]
    missing = read_manifest(esc50_out / "missing.csv")
    present = set(esc50_tree["good"]) | {esc50_tree["corrupt"], esc50_tree["truncated"]}
    assert len(missing) == 2000 - len(present)
    assert {m["path"].removeprefix("audio/") for m in missing} == set(
        esc50_tree["listed"]
    ) - present
    one = missing[0]
    src = esc50_tree["listed"][one["path"].removeprefix("audio/")]
    assert (one["label"], one["class_id"], one["fold"]) == (
        src["category"],
        src["target"],
        src["fold"],
    )


@needs_esc50
def test_esc50_card(esc50_tree: dict, esc50_out: Path) -> None:
    card = json.loads((esc50_out / "prep.json").read_text())
    listed = esc50_tree["listed"]
    assert card["dataset"] == "esc50"
    assert card["root"] == str(esc50_tree["root"].resolve())
    classes = card["classes"]
    assert len(classes) == 50
    for src in listed.values():
        assert classes[int(src["target"])] == src["category"]
    assert classes[0] == "dog"
    assert card["clips"] == {
        "listed": 2000,
        "ok": 12,
        "quarantined": 2,
        "missing": 1986,
        "unlisted": 1,
        "skipped": 1,
    }
    assert card["quarantine_reasons"] == {"not-media": 1, "truncated": 1}
    assert card["folds"] == {
        "1": {"listed": 400, "clips": 3},
        "2": {"listed": 400, "clips": 3},
        "3": {"listed": 400, "clips": 2},
        "4": {"listed": 400, "clips": 2},
        "5": {"listed": 400, "clips": 2},
    }
    per_class = card["clips_per_class"]
    assert list(per_class) == classes and sum(per_class.values()) == 12
    for name in esc50_tree["good"]:
        assert per_class[listed[name]["category"]] >= 1
    esc10 = sum(listed[n]["esc10"] == "True" for n in esc50_tree["good"])
    assert card["esc10_clips"] == esc10


@needs_esc50
def test_esc50_is_deterministic_and_accepts_the_parent(
    esc50_tree: dict, esc50_out: Path, tmp_path: Path
) -> None:
    # Same bytes from a second run given the parent of ESC-50-master.
    again = prep_esc50(esc50_tree["root"].parent, tmp_path / "again", workers=1, progress=False)
    assert _bytes(again.out, OUTPUTS_ESC50) == _bytes(esc50_out, OUTPUTS_ESC50)
    with pytest.raises(FileNotFoundError, match="no meta/esc50.csv"):
        prep_esc50(tmp_path / "again", tmp_path / "x", progress=False)


def _edit_csv(src: Path, dst: Path, edit) -> Path:
    lines = [x if x.endswith("\n") else x + "\n" for x in src.read_text().splitlines(True)]
    edit(lines)
    dst.write_text("".join(lines))
    return dst


def _set_cell(line: int, column: int, value: str):
    """An edit that sets one cell (0-based column) of the csv's 1-based ``line``."""

    def edit(lines: list[str]) -> None:
        cells = lines[line - 1].rstrip("\n").split(",")
        cells[column] = value
        lines[line - 1] = ",".join(cells) + "\n"

    return edit


@needs_esc50
@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (_set_cell(6, 1, "7"), 6, "fold '7' is not an integer in 1..5"),
        (_set_cell(9, 1, "x"), 9, "fold 'x' is not"),
        (_set_cell(3, 3, "dog"), 3, "category 'dog' has target 14 here but 0 on line 2"),
        (_set_cell(40, 2, "0"), 40, "target 0 is category .* here but 'dog' on line 2"),
        (
            lambda ls: ls.append(ls[1]),
            2002,
            "filename '1-100032-A-0.wav' is already listed on line 2",
        ),
        (_set_cell(10, 4, "maybe"), 10, "esc10 'maybe' is not True or False"),
        (_set_cell(10, 2, "50"), 10, "target '50' is not an integer in 0..49"),
        (_set_cell(11, 0, "a/b.wav"), 11, "not a plain file name"),
        (lambda ls: ls.__setitem__(0, "filename,fold,target,category\n"), 1, "missing column"),
        (lambda ls: ls.__setitem__(12, "1-x.wav,1\n"), 13, "2 cells, the header has 7"),
    ],
    ids=[
        "fold",
        "fold-text",
        "category",
        "target",
        "duplicate",
        "esc10",
        "target-range",
        "filename",
        "header",
        "cells",
    ],
)
def test_esc50_bad_csv_names_file_and_line(tmp_path: Path, edit, line: int, message: str) -> None:
    bad = _edit_csv(ESC50_CSV, tmp_path / "esc50.csv", edit)
    with pytest.raises(ValueError, match=message) as info:
        read_esc50_csv(bad)
    assert str(info.value).startswith(f"{bad}:{line}: ")
    # prep_esc50 refuses the same csv before probing anything.
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    shutil.copy(bad, tmp_path / "meta" / "esc50.csv")
    with pytest.raises(ValueError, match=message):
        prep_esc50(tmp_path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@needs_esc50
def test_esc50_csv_real_and_upper_case_booleans(tmp_path: Path) -> None:
    entries = read_esc50_csv(ESC50_CSV)
    assert len(entries) == 2000
    assert {e.fold for e in entries} == {1, 2, 3, 4, 5}
    assert len({e.target for e in entries}) == 50
    assert sum(e.esc10 for e in entries) == 400
    assert entries[0].line == 2 and entries[0].filename == "1-100032-A-0.wav"
    upper = _edit_csv(
        ESC50_CSV,
        tmp_path / "esc50.csv",
        lambda ls: ls.__setitem__(
            slice(1, None), [x.replace("True", "TRUE").replace("False", "FALSE") for x in ls[1:]]
        ),
    )
    assert read_esc50_csv(upper) == entries


# --------------------------------------------------------------------------------------------
# folder: real FSDD
# --------------------------------------------------------------------------------------------
@needs_fsdd
def test_fsdd_real_speaker_folds(tmp_path: Path) -> None:
    pattern = "{label}_{speaker}_{take}"
    by_speaker = prep_audio_folder(
        FSDD, tmp_path / "speaker", pattern=pattern, fold_field="speaker", dataset="fsdd",
        workers=2, progress=False,
    )  # fmt: skip
    rows = read_manifest(tmp_path / "speaker" / "clips.jsonl")
    assert len(rows) == 2000 and by_speaker.counts["ok"] == 2000
    card = by_speaker.card
    assert card["classes"] == [str(d) for d in range(10)]
    assert card["fold_rule"] == "field-values"
    assert {k: (v["values"], v["clips"]) for k, v in card["folds"].items()} == {
        "1": (["george"], 500),
        "2": (["jackson"], 500),
        "3": (["lucas"], 500),
        "4": (["nicolas"], 500),
    }
    speaker_fold = {"george": 1, "jackson": 2, "lucas": 3, "nicolas": 4}
    for r in rows:
        digit, speaker, take = Path(r["path"]).stem.split("_")
        assert (r["label"], r["class_id"], r["speaker"], r["take"]) == (
            digit,
            int(digit),
            speaker,
            take,
        )
        assert r["fold"] == speaker_fold[speaker]
        assert (r["sample_rate"], r["channels"]) == (8000, 1)
        assert 0.1 < r["duration_s"] < 3.0
    assert set(card["clips_per_class"].values()) == {200}

    # Two workers give the probe fields of a plain probe in this process.
    for r in rows[::100]:
        info = probe_audio(FSDD / r["path"])
        assert (r["duration_s"], r["sample_rate"], r["audible"]) == (
            round(info.duration_s, 6),
            info.sample_rate,
            info.audible,
        )


@needs_fsdd
def test_fsdd_real_take_folds() -> None:
    """Take folds on the real names (no probing needed): K=5 contiguous groups of 10 takes."""
    pattern = PathPattern("{label}_{speaker}_{take}")
    names = sorted(p.name for p in FSDD.glob("*.wav"))
    matched = {n: pattern.match(n) for n in names}
    assert len(matched) == 2000 and all(matched.values())
    fold_of, values, rule = assign_folds(matched, "take", 5)  # type: ignore[arg-type]
    assert rule == "field-groups"
    assert values["1"] == [str(t) for t in range(10)]  # numeric order, not 0, 1, 10, 11, ...
    assert values["5"] == [str(t) for t in range(40, 50)]
    assert sorted(Counter(fold_of.values()).items()) == [(k, 400) for k in range(1, 6)]
    for name, fold in fold_of.items():
        assert fold == int(name.split("_")[2].removesuffix(".wav")) // 10 + 1


# --------------------------------------------------------------------------------------------
# folder: patterns and fold rules on generated trees
# --------------------------------------------------------------------------------------------
def test_path_pattern_syntax() -> None:
    p = PathPattern("{label}_{speaker}_{take}")
    assert p.fields == ["label", "speaker", "take"]
    assert p.match("7_jackson_32.wav") == {"label": "7", "speaker": "jackson", "take": "32"}
    assert p.match("7_jackson_32.WAV") == {"label": "7", "speaker": "jackson", "take": "32"}
    assert p.match("7_jack_son_32.wav") is None  # {name} takes no underscore
    assert p.match("sub/7_jackson_32.wav") is None  # ... and no slash
    # Only audio suffixes are cut ({name} may hold dots); prep never offers other files.
    assert p.match("7_jackson_32.txt") == {"label": "7", "speaker": "jackson", "take": "32.txt"}
    seg = PathPattern("{label:seg}_{take}")
    assert seg.match("vacuum_cleaner_3.mp3") == {"label": "vacuum_cleaner", "take": "3"}
    assert PathPattern("{label:path}/{n}").match("a/b/c.ogg") == {"label": "a/b", "n": "c"}
    same = PathPattern("{label}/{label}-{n}")
    assert same.match("dog/dog-1.wav") == {"label": "dog", "n": "1"}
    assert same.match("dog/cat-1.wav") is None
    skip = PathPattern("{_}/{label}/{_:seg}")
    assert skip.fields == ["label"]
    assert skip.match("a/b/c_d.flac") == {"label": "b"}
    with_suffix = PathPattern("{label}/{n}.wav")
    assert with_suffix.match("a/1.wav") == {"label": "a", "n": "1"}
    assert with_suffix.match("a/1.mp3") is None
    assert PathPattern("x.{n}").match("x.1.opus") == {"n": "1"}
    for bad, message in [
        ("{1x}", "needs a name"),
        ("{x:foo}", "has kind 'foo'"),
        ("a}{x}", "unmatched '}'"),
        ("{x", "unmatched '{'"),
        ("", "non-empty"),
        ("/{x}", "relative"),
    ]:
        with pytest.raises(ValueError, match=message):
            PathPattern(bad)


@given(st.lists(st.integers(min_value=0, max_value=10**12), unique=True))
def test_natural_key_orders_numbers_by_value(values: list[int]) -> None:
    texts = [f"take{v}" for v in values]
    assert sorted(texts, key=natural_key) == [f"take{v}" for v in sorted(values)]


def test_natural_key_is_total() -> None:
    names = ["10", "2", "b", "B", "a10", "a2", "02", "a"]
    assert sorted(names, key=natural_key) == ["02", "2", "10", "a", "a2", "a10", "B", "b"]


def test_contiguous_fold_groups() -> None:
    matched = {f"{t}.wav": {"take": str(t)} for t in range(7)}
    fold_of, values, rule = assign_folds(matched, "take", 3)
    assert rule == "field-groups"
    assert values == {"1": ["0", "1"], "2": ["2", "3"], "3": ["4", "5", "6"]}
    assert [fold_of[f"{t}.wav"] for t in range(7)] == [1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="only 7 distinct"):
        assign_folds(matched, "take", 8)


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder") / "set"
    short = _tone(0.05, 16000)
    files = [f"{lab}/{lab}_{i}.wav" for lab in ("2", "10", "vacuum_cleaner") for i in range(4)]
    for i, rel in enumerate(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / rel, _tone(0.05, 16000, freq=300.0 + 40 * i), sample_rate=16000)
    write_audio(root / "2" / "2_9.mp3", short, sample_rate=16000)  # other codec
    (root / "10" / "10_bad.wav").write_bytes(b"RIFF not really a wav")  # quarantined
    write_audio(root / "loose.wav", short, sample_rate=16000)  # unmatched: not in a folder
    (root / "10" / "deep").mkdir()
    write_audio(root / "10" / "deep" / "x.wav", short, sample_rate=16000)  # unmatched
    (root / "2" / "notes.txt").write_text("not audio")  # skipped.csv: not an audio suffix
    (root / ".cache").mkdir()
    write_audio(root / ".cache" / "y.wav", short, sample_rate=16000)  # skipped.csv: hidden
    return root


def test_folder_layout_classes_and_unmatched(folder_tree: Path, tmp_path: Path) -> None:
    res = prep_audio_folder(
        folder_tree, tmp_path / "a", pattern="{label:seg}/{_:seg}", workers=1, progress=False
    )
    card = res.card
    assert card["classes"] == ["2", "10", "vacuum_cleaner"]  # numeric-aware, not "10" < "2"
    assert card["fields"] == ["label"]
    assert card["fold_rule"] == "none"
    assert card["folds"] == {"1": {"matched": 14, "clips": 13}}
    assert card["clips"] == {
        "files": 16,
        "matched": 14,
        "ok": 13,
        "quarantined": 1,
        "unmatched": 2,
    }
    assert res.counts == {"ok": 13, "quarantined": 1, "unmatched": 2, "skipped": 2, "probed": 14}
    # named, not ignored: the hidden folder as one row, the text file by its suffix
    assert read_manifest(tmp_path / "a" / "skipped.csv") == [
        {"path": ".cache/", "kind": "hidden", "why": "hidden folder, not searched"},
        {"path": "2/notes.txt", "kind": "not-media", "why": "not media by suffix (.txt)"},
    ]
    assert read_manifest(tmp_path / "a" / "unmatched.csv") == [
        {"path": "10/deep/x.wav"},
        {"path": "loose.wav"},
    ]
    q = read_manifest(tmp_path / "a" / "quarantine.csv")
    assert [(r["path"], r["reason"]) for r in q] == [("10/10_bad.wav", "not-media")]
    rows = read_manifest(tmp_path / "a" / "clips.jsonl")
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    ids = {r["label"]: r["class_id"] for r in rows}
    assert ids == {"2": 0, "10": 1, "vacuum_cleaner": 2}
    assert all(r["fold"] == 1 for r in rows)
    mp3 = next(r for r in rows if r["path"] == "2/2_9.mp3")
    assert mp3["codec"].startswith("mp3") and mp3["sample_rate"] == 16000  # FFmpeg: mp3float
    assert card["clips_per_class"] == {"2": 5, "10": 4, "vacuum_cleaner": 4}
    assert "13 ok, 1 quarantined" in res.summary() and "2 not matching" in res.summary()


def test_folder_hash_folds_are_deterministic(folder_tree: Path, tmp_path: Path) -> None:
    kwargs = dict(pattern="{label:seg}/{_:seg}_{n}", num_folds=3, workers=1, progress=False)
    a = prep_audio_folder(folder_tree, tmp_path / "a", **kwargs)
    b = prep_audio_folder(folder_tree, tmp_path / "b", **kwargs)
    assert _bytes(a.out, OUTPUTS_FOLDER) == _bytes(b.out, OUTPUTS_FOLDER)
    assert a.card["fold_rule"] == "path-hash"
    rows = read_manifest(a.out / "clips.jsonl")
    for r in rows:
        digest = hashlib.blake2b(r["path"].encode(), digest_size=8).digest()
        assert r["fold"] == int.from_bytes(digest, "big") % 3 + 1
    assert {r["fold"] for r in rows} == {1, 2, 3}
    assert sum(v["clips"] for v in a.card["folds"].values()) == len(rows) == 13
    assert [r["n"] for r in rows if r["label"] == "2"] == ["0", "1", "2", "3", "9"]


def test_folder_argument_errors(folder_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (dict(pattern="{label:seg}/{x:seg}", label_field="cls"), "label_field 'cls' is not"),
        (dict(pattern="{label:seg}/{x:seg}", fold_field="speaker"), "fold_field 'speaker'"),
        (dict(pattern="{label:seg}/{fold:seg}", fold_field="fold"), "name of a manifest column"),
        (dict(pattern="{label:seg}/{x:seg}", fold_field="label"), "is the label field"),
        (dict(pattern="{label:seg}/{x:seg}", num_folds=0), "num_folds must be >= 1"),
        (dict(pattern="{label:seg}/{_:seg}_{x}", fold_field="x", num_folds=9), "only 6 distinct"),
        (dict(pattern="{label}-{x}"), "none of the 16 audio file"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            prep_audio_folder(folder_tree, out, progress=False, **kwargs)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        prep_audio_folder(tmp_path / "nope", out, pattern="{label}", progress=False)
    assert not out.exists()


def test_folder_label_field_and_field_folds(folder_tree: Path, tmp_path: Path) -> None:
    res = prep_audio_folder(
        folder_tree, tmp_path / "a", pattern="{_:seg}/{cls:seg}_{take}", label_field="cls",
        fold_field="take", num_folds=2, suffixes=("WAV",), workers=1, progress=False,
    )  # fmt: skip
    rows = read_manifest(tmp_path / "a" / "clips.jsonl")
    assert all(r["label"] == r["cls"] for r in rows)
    assert not any(r["path"].endswith(".mp3") for r in rows)  # only .wav asked for
    assert res.card["suffixes"] == [".wav"]
    assert res.card["fold_rule"] == "field-groups"
    # takes 0, 1, 2, 3, bad: 5 values in 2 contiguous groups (2 + 3)
    assert res.card["folds"] == {
        "1": {"values": ["0", "1"], "matched": 6, "clips": 6},
        "2": {"values": ["2", "3", "bad"], "matched": 7, "clips": 6},
    }
    assert all(r["fold"] == (1 if r["take"] in ("0", "1") else 2) for r in rows)
    # one fold per value without num_folds (takes 0-3 of 3 classes + 10_bad)
    res = prep_audio_folder(
        folder_tree, tmp_path / "b", pattern="{_:seg}/{cls:seg}_{take}", label_field="cls",
        fold_field="take", workers=1, progress=False,
    )  # fmt: skip
    assert res.card["fold_rule"] == "field-values"
    assert {k: (v["values"], v["clips"]) for k, v in res.card["folds"].items()} == {
        "1": (["0"], 3), "2": (["1"], 3), "3": (["2"], 3), "4": (["3"], 3), "5": (["9"], 1),
        "6": (["bad"], 0),
    }  # fmt: skip
