"""AudioSet metadata: segment lists in both header forms, classes, ontology subtrees, and file
names of the usual downloaders matched to segments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from media import shared_data_dir

from data_prep.audioset_files import FileMatch, match_files
from data_prep.audioset_meta import (
    MEDIA_SUFFIXES,
    AudioSetClass,
    OntologyNode,
    Segment,
    descendants,
    expand_classes,
    read_class_labels,
    read_ontology,
    read_segments,
    split_of_csv,
)

# The first rows of the real balanced_train_segments.csv (plain form), verbatim.
PLAIN_ROWS = [
    '--PJHxphWEs,30.000,40.000,"/m/09x0r,/t/dd00088"',
    '--ZhevVpy1s,50.000,60.000,"/m/012xff"',
    '--aE2O5G5WE,0.000,10.000,"/m/03fwl,/m/04rlf,/m/09x0r"',
    '--aO5cdqSAg,30.000,40.000,"/t/dd00003,/t/dd00005"',
    '--aaILOrkII,200.000,210.000,"/m/032s66,/m/073cg4"',
    '--cB2ZVjpnA,30.000,40.000,"/m/01y3hg"',
]
PLAIN_HEADER = "YTID,start_seconds,end_seconds,positive_labels"
EXPECTED_ROWS = [
    Segment("--PJHxphWEs", 30.0, 40.0, ("/m/09x0r", "/t/dd00088")),
    Segment("--ZhevVpy1s", 50.0, 60.0, ("/m/012xff",)),
    Segment("--aE2O5G5WE", 0.0, 10.0, ("/m/03fwl", "/m/04rlf", "/m/09x0r")),
    Segment("--aO5cdqSAg", 30.0, 40.0, ("/t/dd00003", "/t/dd00005")),
    Segment("--aaILOrkII", 200.0, 210.0, ("/m/032s66", "/m/073cg4")),
    Segment("--cB2ZVjpnA", 30.0, 40.0, ("/m/01y3hg",)),
]


def official(rows: list[str], num_segs: int | None = None) -> str:
    """The plain rows rewritten as Google publishes them: three '#' lines, ', ' separators."""
    out = []
    for row in rows:
        ytid, start, end, labels = row.split(",", 3)
        out.append(f"{ytid}, {start}, {end}, {labels}")
    n = len(rows) if num_segs is None else num_segs
    positives = sum(r.split(",", 3)[3].count("/") // 2 for r in rows)
    head = [
        "# Segments csv created Sun Mar  5 10:54:25 2017",
        f"# num_ytids={n}, num_segs={n}, num_unique_labels=527, num_positive_labels={positives}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    return "\n".join(head + out) + "\n"


@pytest.fixture(scope="module")
def audioset() -> Path:
    d = shared_data_dir() / "audioset"
    if not (d / "class_labels_indices.csv").exists():
        pytest.skip(f"AudioSet metadata not found at {d} (set AVSSL_SHARED_DATA to its parent)")
    return d


@pytest.fixture(scope="module")
def classes(audioset: Path) -> list[AudioSetClass]:
    return read_class_labels(audioset / "class_labels_indices.csv")


@pytest.fixture(scope="module")
def ontology(audioset: Path) -> dict[str, OntologyNode]:
    return read_ontology(audioset / "ontology.json")


# --------------------------------------------------------------------------------------------
# Real files
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_lists(audioset: Path, classes: list[AudioSetClass]) -> tuple[list[Segment], list[Segment]]:
    return (
        read_segments(audioset / "balanced_train_segments.csv", classes),
        read_segments(audioset / "eval_segments.csv", classes),
    )


def test_real_class_labels(classes: list[AudioSetClass]) -> None:
    assert len(classes) == 527
    assert [c.index for c in classes] == list(range(527))
    assert classes[0] == AudioSetClass(0, "/m/09x0r", "Speech")
    assert classes[1] == AudioSetClass(1, "/m/05zppz", "Male speech, man speaking")  # was quoted
    assert classes[526] == AudioSetClass(526, "/m/07hvw1", "Field recording")


def test_real_segment_lists(
    audioset: Path, real_lists: tuple[list[Segment], list[Segment]]
) -> None:
    bal, ev = real_lists
    assert (len(bal), len(ev)) == (22160, 20371)
    assert bal[: len(EXPECTED_ROWS)] == EXPECTED_ROWS
    assert bal[-1] == Segment("zzya4dDVRLk", 30.0, 40.0, ("/m/01v_m0", "/m/0hdsk"))
    assert ev[0] == Segment(
        "--4gqARaEJE", 0.0, 10.0, ("/m/068hy", "/m/07q6cd_", "/m/0bt9lr", "/m/0jbk")
    )
    assert ev[1] == Segment("--BfvyPmVMo", 20.0, 30.0, ("/m/03l9g",))
    assert Segment("AE5oZzfu2-E", 239.8, 249.8, ("/m/0326g",)) in bal  # a start off the second
    # Google's headers declare num_positive_labels=52882 / 51804 and 527 labels in each list.
    assert sum(len(s.labels) for s in bal) == 52882
    assert sum(len(s.labels) for s in ev) == 51804
    assert len({m for s in bal for m in s.labels}) == len({m for s in ev for m in s.labels}) == 527
    assert {s.ytid for s in bal}.isdisjoint(s.ytid for s in ev)
    assert split_of_csv(audioset / "eval_segments.csv") == "test"
    assert split_of_csv(audioset / "balanced_train_segments.csv") == "train"
    assert split_of_csv("lists/unbalanced_train_segments.csv") == "train"


def test_real_rows_in_official_form(
    audioset: Path, real_lists: tuple[list[Segment], list[Segment]], tmp_path: Path
) -> None:
    """The first 200 real rows, rewritten in Google's form, read back to the same segments."""
    rows = (audioset / "balanced_train_segments.csv").read_text().splitlines()[1:201]
    off = tmp_path / "balanced_train_segments.csv"
    off.write_text(official(rows))
    assert read_segments(off) == real_lists[0][:200]


# --------------------------------------------------------------------------------------------
# Segment list forms and errors (no shared data needed)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        official(PLAIN_ROWS),
        official(PLAIN_ROWS).replace("\n", "\r\n"),
        "\n".join([PLAIN_HEADER, *PLAIN_ROWS]) + "\n",
        "\r\n".join(["YTID, start_seconds, end_seconds, positive_labels", *PLAIN_ROWS]),
        "\n".join(PLAIN_ROWS),  # no header
        "\n\n".join([PLAIN_HEADER, *PLAIN_ROWS]) + "\n\n\n",  # blank lines
        "\ufeff" + "\n".join([PLAIN_HEADER, *PLAIN_ROWS]),  # a BOM from a spreadsheet
        "\n".join([PLAIN_HEADER, *(r.replace('"', "") for r in PLAIN_ROWS)]),  # labels unquoted
    ],
    ids=["official", "official-crlf", "plain", "plain-spaces-crlf", "headerless", "blank-lines",
         "bom", "unquoted"],
)  # fmt: skip
def test_segment_list_forms(tmp_path: Path, text: str) -> None:
    p = tmp_path / "eval_segments.csv"
    p.write_bytes(text.encode())
    assert read_segments(p) == EXPECTED_ROWS


def test_official_file_has_the_official_spacing() -> None:
    text = official(PLAIN_ROWS[:1])
    assert text.splitlines()[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    assert text.splitlines()[3] == '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"'


def test_labels_checked_against_classes(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(official(PLAIN_ROWS[:2]))
    two = [AudioSetClass(0, "/m/09x0r", "Speech"), AudioSetClass(1, "/t/dd00088", "Gargling")]
    with pytest.raises(ValueError, match=r"x.csv:5: label '/m/012xff' is not one of the label"):
        read_segments(p, two)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['--PJHxphWE,30.000,40.000,"/m/09x0r"'], r":2: YTID '--PJHxphWE' is not 11 characters"),
        (['--PJHxphWE!,30.000,40.000,"/m/09x0r"'], r":2: YTID '--PJHxphWE!' is not 11 charac"),
        (['--PJHxphWEs,40.000,40.000,"/m/09x0r"'], r":2: start 40.000 is not before end 40.000"),
        (['--PJHxphWEs,50,40,"/m/09x0r"'], r":2: start 50 is not before end 40"),
        (['--PJHxphWEs,thirty,40.000,"/m/09x0r"'], r":2: time 'thirty' is not a number"),
        (['--PJHxphWEs,30.000,nan,"/m/09x0r"'], r":2: time 'nan' is not a number"),
        (['--PJHxphWEs,-5,40.000,"/m/09x0r"'], r":2: time '-5' is not a number"),
        (['--PJHxphWEs,30.000,40.000,""'], r":2: segment --PJHxphWEs has no label"),
        (['--PJHxphWEs,30.000,40.000'], r":2: expected 'YTID, start, end"),
        (['--PJHxphWEs,30.000,40.000,"speech"'], r":2: label 'speech' is not a MID"),
        (['--PJHxphWEs,30.000,40.000,"/m/09x0r,/m/09x0r"'], r":2: a label is listed twice"),
        ([PLAIN_ROWS[0], PLAIN_ROWS[1], PLAIN_ROWS[0]], r":4: segment --PJHxphWEs at 30 s already"),
    ],
    ids=["ytid-short", "ytid-char", "start-eq-end", "start-gt-end", "start-word", "end-nan",
         "negative", "no-labels", "no-label-field", "label-not-mid", "label-twice", "duplicate"],
)  # fmt: skip
def test_segment_errors_name_file_and_line(tmp_path: Path, rows: list[str], message: str) -> None:
    p = tmp_path / "bad_segments.csv"
    p.write_text("\n".join([PLAIN_HEADER, *rows]) + "\n")
    with pytest.raises(ValueError, match=r"bad_segments\.csv" + message):
        read_segments(p)


def test_official_header_errors(tmp_path: Path) -> None:
    p = tmp_path / "short.csv"
    p.write_text(official(PLAIN_ROWS, num_segs=7))  # declares 7, holds 6: truncated download
    with pytest.raises(ValueError, match=r"short\.csv:2: header declares num_segs=7 .* holds 6"):
        read_segments(p)
    p.write_text(official(PLAIN_ROWS).replace("num_ytids=6", "num_ytids=5"))
    with pytest.raises(ValueError, match=r"short\.csv:2: header declares num_ytids=5 .* holds 6"):
        read_segments(p)
    p.write_text(official(PLAIN_ROWS).replace("positive_labels", "labels"))
    with pytest.raises(ValueError, match=r"short\.csv:3: header .* expected YTID, start_seconds"):
        read_segments(p)
    dup = official(PLAIN_ROWS[:2]) + official(PLAIN_ROWS[:1]).splitlines()[-1] + "\n"
    p.write_text(dup)
    with pytest.raises(ValueError, match=r"short\.csv:6: segment --PJHxphWEs at 30 s already"):
        read_segments(p)


def test_plain_header_only_on_top(tmp_path: Path) -> None:
    p = tmp_path / "late.csv"
    p.write_text("\n".join([PLAIN_ROWS[0], PLAIN_HEADER]))
    with pytest.raises(ValueError, match=r"late\.csv:2: YTID 'YTID' is not 11 characters"):
        read_segments(p)


def test_class_label_errors(tmp_path: Path) -> None:
    p = tmp_path / "class_labels_indices.csv"
    p.write_bytes(b'index,mid,display_name\r\n0,/m/09x0r,"Speech"\r\n1,/m/05zppz,"Male, man"\r\n')
    assert read_class_labels(p) == [
        AudioSetClass(0, "/m/09x0r", "Speech"),
        AudioSetClass(1, "/m/05zppz", "Male, man"),
    ]
    p.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n2,/m/05zppz,"Male"\n')
    with pytest.raises(ValueError, match=r"class_labels_indices\.csv:3: class index 2, expected 1"):
        read_class_labels(p)
    p.write_text('0,/m/09x0r,"Speech"\n1,/m/09x0r,"Male"\n')  # no header is fine; a twin MID not
    with pytest.raises(ValueError, match=r"indices\.csv:2: MID /m/09x0r already on line 1"):
        read_class_labels(p)
    p.write_text('0,/m/09x0r,"Speech"\n1,/m/05zppz,"speech"\n')
    with pytest.raises(ValueError, match=r"indices\.csv:2: display name 'speech' already on line"):
        read_class_labels(p)
    p.write_text('0,m09x0r,"Speech"\n')
    with pytest.raises(ValueError, match=r"indices\.csv:1: 'm09x0r' is not a MID"):
        read_class_labels(p)


# --------------------------------------------------------------------------------------------
# Ontology
# --------------------------------------------------------------------------------------------
def test_musical_instrument_subset(
    ontology: dict[str, OntologyNode], classes: list[AudioSetClass]
) -> None:
    mid_of = {c.name: c.mid for c in classes}
    by_name = expand_classes(["Musical instrument"], ontology, classes)
    assert by_name == expand_classes(["/m/04szw"], ontology, classes)
    assert by_name == expand_classes(["  musical INSTRUMENT "], ontology, classes)
    # 92 ontology nodes under "Musical instrument", 80 of them label classes (the node itself
    # included; "Choir" and "Bicycle bell" come in through their second parents).
    assert len(by_name) == 80 and len(descendants("/m/04szw", ontology)) == 92
    assert by_name == sorted(by_name) and len(set(by_name)) == 80
    for name in ("Musical instrument", "Guitar", "Electric guitar", "Piano", "Drum", "Snare drum",
                 "Violin, fiddle", "Flute", "Choir", "Bicycle bell"):  # fmt: skip
        assert mid_of[name] in by_name, name
    for name in ("Music", "Speech", "Singing", "Rock music", "Dog"):
        assert mid_of[name] not in by_name, name
    music = expand_classes(["Music"], ontology, classes)
    assert set(by_name) < set(music) and len(music) == 150
    assert ontology["/m/04szw"].name == "Musical instrument" and not ontology["/m/04szw"].abstract


def test_expand_leaf_union_and_errors(
    ontology: dict[str, OntologyNode], classes: list[AudioSetClass]
) -> None:
    assert ontology["/m/02bxd"].child_ids == ()
    assert expand_classes(["Didgeridoo"], ontology, classes) == ["/m/02bxd"]
    guitar = expand_classes(["guitar"], ontology, classes)
    assert len(guitar) == 7 and "/m/0342h" in guitar
    both = expand_classes(["Guitar", "Didgeridoo", "/m/0342h"], ontology, classes)
    assert both == sorted({*guitar, "/m/02bxd"})
    # a display name only found among the classes works too (here it is in both)
    assert expand_classes(["Male speech, man speaking"], ontology, classes) == ["/m/05zppz"]
    with pytest.raises(
        ValueError, match=r"'Guitarr' is not an AudioSet .* close matches: \['Guitar'"
    ):
        expand_classes(["Guitarr"], ontology, classes)
    with pytest.raises(ValueError, match=r"close matches: \['Musical instrument'"):
        expand_classes(["musical instruments"], ontology, classes)
    with pytest.raises(ValueError, match=r"'/m/04szwx' is not an AudioSet MID; .*'/m/04szw'"):
        expand_classes(["/m/04szwx"], ontology, classes)
    with pytest.raises(ValueError, match=r"'Yawn' \(/m/01j423\) has no label class"):
        expand_classes(["Yawn"], ontology, classes)  # in the ontology, not among the 527
    with pytest.raises(TypeError, match="list of names"):
        expand_classes("Guitar", ontology, classes)
    assert expand_classes([], ontology, classes) == []


def test_ontology_cycle_and_errors(tmp_path: Path) -> None:
    nodes = [
        {"id": "/m/a", "name": "A", "child_ids": ["/m/b"], "restrictions": ["abstract"]},
        {"id": "/m/b", "name": "B", "child_ids": ["/m/c", "/m/a"], "restrictions": []},
        {"id": "/m/c", "name": "C", "child_ids": ["/m/b"], "restrictions": ["blacklist"]},
        {"id": "/m/d", "name": "D", "child_ids": [], "restrictions": []},
    ]
    p = tmp_path / "ontology.json"
    p.write_text(json.dumps(nodes, indent=1))
    onto = read_ontology(p)
    assert list(onto) == ["/m/a", "/m/b", "/m/c", "/m/d"]
    assert onto["/m/b"].child_ids == ("/m/c", "/m/a")
    assert onto["/m/a"].abstract and onto["/m/c"].blacklisted and not onto["/m/b"].blacklisted
    classes = [AudioSetClass(0, "/m/b", "B"), AudioSetClass(1, "/m/c", "C"),
               AudioSetClass(2, "/m/d", "D")]  # fmt: skip
    assert descendants("/m/c", onto) == {"/m/a", "/m/b", "/m/c"}
    assert expand_classes(["a"], onto, classes) == ["/m/b", "/m/c"]
    assert expand_classes(["/m/d"], onto, classes) == ["/m/d"]
    nodes[3]["child_ids"] = ["/m/zz"]
    p.write_text(json.dumps(nodes))
    with pytest.raises(ValueError, match=r"ontology\.json: node /m/d \('D'\) has unknown child"):
        read_ontology(p)
    nodes[3]["child_ids"], nodes[3]["id"] = [], "/m/a"
    p.write_text(json.dumps(nodes))
    with pytest.raises(ValueError, match=r"ontology\.json: node 3 \(/m/a\): id /m/a appears twice"):
        read_ontology(p)
    p.write_text('[\n {"id": "/m/a",\n  "name": }\n]')
    with pytest.raises(ValueError, match=r"ontology\.json:3: not JSON"):
        read_ontology(p)


# --------------------------------------------------------------------------------------------
# Matching local files
# --------------------------------------------------------------------------------------------
A = Segment("abc-_DEF123", 30.0, 40.0, ("/m/09x0r",))
B = Segment("-x_Y-z_9_8_", 7.8, 17.8, ("/m/09x0r",))  # '-' first, '_' last: the 11-char edge
T0 = Segment("twoSegs_0-A", 0.0, 10.0, ("/m/09x0r",))
T1 = Segment("twoSegs_0-A", 100.0, 110.0, ("/m/09x0r",))
Y = Segment("Yabcdefghij", 20.0, 30.0, ("/m/09x0r",))  # an id that starts with 'Y'
SEGS = [A, B, T0, T1, Y]

# file (relative to root) -> ("found", segment, cut) | ("unmatched",) | ("ambiguous", keys)
#                          | ("skipped",)
MATCH_TABLE: list[tuple[str, tuple]] = [
    ("abc-_DEF123_30.000.mp4", ("found", A, True)),
    ("abc-_DEF123_30_40.mp4", ("found", A, True)),
    ("abc-_DEF123_30.000_40.000.webm", ("found", A, True)),
    ("abc-_DEF123_000030_000040.mp4", ("found", A, True)),
    ("abc-_DEF123_000030.mp4", ("found", A, True)),  # VGGSound style
    ("abc-_DEF123_30000_40000.flac", ("found", A, True)),  # audiosetdl: milliseconds
    ("abc-_DEF123_30000.m4a", ("found", A, True)),
    ("Yabc-_DEF123.wav", ("found", A, True)),  # audioset_tagging_cnn: a cut clip
    ("Yabc-_DEF123_30.000_40.000.wav", ("found", A, True)),
    ("abc-_DEF123.mkv", ("found", A, False)),  # the whole video
    ("sub/dir/abc-_DEF123_30.mp4", ("found", A, True)),
    ("abc-_DEF123_30.3.MP4", ("found", A, True)),  # 0.3 s off; suffix case ignored
    ("abc-_DEF123_29.6_39.6.mp4", ("found", A, True)),
    ("-x_Y-z_9_8__7.8_17.8.opus", ("found", B, True)),
    ("-x_Y-z_9_8__7800_17800.ogg", ("found", B, True)),
    ("-x_Y-z_9_8_.mov", ("found", B, False)),
    ("Y-x_Y-z_9_8__8.mp3", ("found", B, True)),
    ("Yabcdefghij_20.mp4", ("found", Y, True)),  # the 'Y' belongs to the id
    ("YYabcdefghij.wav", ("found", Y, True)),  # a 'Y' prefix before an id starting with 'Y'
    ("twoSegs_0-A_100.avi", ("found", T1, True)),
    ("twoSegs_0-A_0_10.m4v", ("found", T0, True)),
    ("twoSegs_0-A.mp4", ("ambiguous", (T0.key, T1.key))),  # no start, two segments
    ("YtwoSegs_0-A.wav", ("ambiguous", (T0.key, T1.key))),
    ("abc-_DEF123_32.mp4", ("unmatched",)),  # 2 s off
    ("abc-_DEF123_29.4.mp4", ("unmatched",)),  # 0.6 s off
    ("twoSegs_0-A_300.mp4", ("unmatched",)),  # under 1000: seconds only, never 0.3 s
    ("abc-_DEF123_30_20.mp4", ("unmatched",)),  # end before start
    ("abc-_DEF123_30000.0.mp4", ("unmatched",)),  # a decimal is seconds, never milliseconds
    ("abc-_DEF123_30_40_extra.mp4", ("unmatched",)),
    ("abc-_DEF123_30s.mp4", ("unmatched",)),
    ("abc-_DEF123x.mp4", ("unmatched",)),
    ("abc-_DEF12.mp4", ("unmatched",)),  # 10 chars
    ("zzzzzzzzzzz_30.mp4", ("unmatched",)),  # an id not in the lists
    ("holiday.mp4", ("unmatched",)),
    ("abc-_DEF123_30.txt", ("skipped",)),  # not media
    (".abc-_DEF123_30.mp4", ("skipped",)),  # hidden file
    (".cache/abc-_DEF123_30.mp4", ("skipped",)),  # hidden folder
]


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()


@pytest.mark.parametrize(("rel", "expected"), MATCH_TABLE, ids=[r for r, _ in MATCH_TABLE])
def test_match_file_names(tmp_path: Path, rel: str, expected: tuple) -> None:
    touch(tmp_path, rel)
    res = match_files(tmp_path, SEGS)
    kind = expected[0]
    if kind == "found":
        seg, cut = expected[1], expected[2]
        assert res.found == {seg.key: FileMatch(rel, cut)}
        assert res.unmatched == [] and res.ambiguous == []
    elif kind == "ambiguous":
        assert res.found == {} and res.unmatched == []
        assert [(a.relpaths, a.keys) for a in res.ambiguous] == [((rel,), expected[1])]
    else:
        assert res.found == {} and res.ambiguous == []
        assert res.unmatched == ([rel] if kind == "unmatched" else [])
    assert res.missing == [s for s in SEGS if s.key not in res.found]


def test_match_whole_tree(tmp_path: Path) -> None:
    """All the table's files in one tree: a segment that collects several files is ambiguous (the
    start-less twoSegs files do not compete); keeping one name per segment pairs them all."""
    touch(tmp_path, *(rel for rel, _ in MATCH_TABLE))
    res = match_files(tmp_path, SEGS)
    assert res.found == {
        T0.key: FileMatch("twoSegs_0-A_0_10.m4v", True),
        T1.key: FileMatch("twoSegs_0-A_100.avi", True),
    }
    assert res.missing == [A, B, Y]
    crowded = {a.keys[0]: a for a in res.ambiguous if len(a.relpaths) > 1}
    assert set(crowded) == {A.key, B.key, Y.key}
    single = sorted(a.relpaths[0] for a in res.ambiguous if len(a.relpaths) == 1)
    assert single == ["YtwoSegs_0-A.wav", "twoSegs_0-A.mp4"]
    assert len(crowded[A.key].relpaths) == 13 and "files fit one segment" in crowded[A.key].reason
    assert sorted(res.unmatched) == res.unmatched
    assert len(res.unmatched) == sum(1 for _, e in MATCH_TABLE if e[0] == "unmatched")

    only = tmp_path / "one"
    touch(
        only,
        "a/abc-_DEF123_30_40.mp4",
        "-x_Y-z_9_8_.mkv",
        "YYabcdefghij.wav",
        "b/twoSegs_0-A_0.mp4",
    )
    res = match_files(only, SEGS)
    assert res.found == {
        A.key: FileMatch("a/abc-_DEF123_30_40.mp4", True),
        B.key: FileMatch("-x_Y-z_9_8_.mkv", False),
        Y.key: FileMatch("YYabcdefghij.wav", True),
        T0.key: FileMatch("b/twoSegs_0-A_0.mp4", True),
    }
    assert res.missing == [T1] and res.unmatched == [] and res.ambiguous == []
    # the video and its audio beside it: narrow the suffixes to pick one
    touch(only, "a/abc-_DEF123_30_40.wav")
    res = match_files(only, SEGS)
    assert A.key not in res.found and A in res.missing
    assert [a.relpaths for a in res.ambiguous] == [
        ("a/abc-_DEF123_30_40.mp4", "a/abc-_DEF123_30_40.wav")
    ]
    res = match_files(only, SEGS, suffixes=[".WAV"])
    assert res.found == {
        A.key: FileMatch("a/abc-_DEF123_30_40.wav", True),
        Y.key: FileMatch("YYabcdefghij.wav", True),
    }
    assert res.found.keys() | {s.key for s in res.missing} == {s.key for s in SEGS}


def test_match_cut_override_and_ties(tmp_path: Path) -> None:
    touch(tmp_path, "twoSegs_0-A.mp4")
    res = match_files(tmp_path, SEGS, cut=False)  # a whole video serves both its segments
    assert res.found == {T0.key: FileMatch("twoSegs_0-A.mp4", False),
                         T1.key: FileMatch("twoSegs_0-A.mp4", False)}  # fmt: skip
    assert len(match_files(tmp_path, SEGS, cut=True).ambiguous) == 1
    res = match_files(tmp_path, [A, T0], cut=True)  # one segment: a pre-cut {ytid}.mp4 clip
    assert res.found == {T0.key: FileMatch("twoSegs_0-A.mp4", True)}
    near = [
        Segment("abc-_DEF123", 30.0, 40.0, ("/m/a",)),
        Segment("abc-_DEF123", 30.5, 40.5, ("/m/a",)),
    ]
    touch(tmp_path, "abc-_DEF123_30.25.mp4", "abc-_DEF123_30.4.mp4")
    res = match_files(tmp_path, near)
    assert res.found == {("abc-_DEF123", 30.5): FileMatch("abc-_DEF123_30.4.mp4", True)}
    tie = [a for a in res.ambiguous if a.relpaths == ("abc-_DEF123_30.25.mp4",)]
    assert len(tie) == 1 and tie[0].keys == (("abc-_DEF123", 30.0), ("abc-_DEF123", 30.5))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        match_files(tmp_path / "abc-_DEF123_30.4.mp4", near)


def test_match_user_pattern(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "clips/abc-_DEF123/30000.mp4",
        "clips/-x_Y-z_9_8_/7800.mp4",
        "other/twoSegs_0-A/100000.mp4",  # outside the pattern's folder
        "clips/twoSegs_0-A_100.mp4",  # a built-in name: not read when a pattern is given
    )
    res = match_files(tmp_path, SEGS, pattern="clips/{ytid}/{start_ms}")
    assert res.found == {
        A.key: FileMatch("clips/abc-_DEF123/30000.mp4", True),
        B.key: FileMatch("clips/-x_Y-z_9_8_/7800.mp4", True),
    }
    assert res.unmatched == ["clips/twoSegs_0-A_100.mp4", "other/twoSegs_0-A/100000.mp4"]
    res = match_files(tmp_path, SEGS, pattern="{any}/{ytid}/{start_ms}")
    assert set(res.found) == {A.key, B.key, T1.key}
    res = match_files(tmp_path, SEGS, pattern="{any}/{ytid}_{start}")
    assert res.found == {T1.key: FileMatch("clips/twoSegs_0-A_100.mp4", True)}

    whole = tmp_path / "whole"
    touch(whole, "v/abc-_DEF123 [HD].mkv", "v/Yabcdefghij [HD].mkv", "v/abc-_DEF123.mkv")
    res = match_files(whole, SEGS, pattern="{any}/{ytid} [HD]")
    assert res.found == {
        A.key: FileMatch("v/abc-_DEF123 [HD].mkv", False),
        Y.key: FileMatch("v/Yabcdefghij [HD].mkv", False),
    }
    assert res.unmatched == ["v/abc-_DEF123.mkv"]
    for bad, message in [
        ("{ytid}_{foo}", r"unknown field \{foo\}"),
        ("{start}", r"has no \{ytid\}"),
        ("{ytid}_{start}_{start}", r"\{start\} appears twice"),
        ("{ytid}_{start}_{start_ms}", "not both"),
        ("{ytid:>5}", r"unknown field \{ytid\}"),
        ("{ytid", "file name pattern"),
    ]:
        with pytest.raises(ValueError, match=message):
            match_files(tmp_path, SEGS, pattern=bad)


def test_match_skips_symlink_loops(tmp_path: Path) -> None:
    touch(tmp_path, "d/abc-_DEF123_30.mp4")
    os.symlink(tmp_path / "d", tmp_path / "d" / "again")
    os.symlink(tmp_path / "d", tmp_path / "link")
    res = match_files(tmp_path, SEGS)
    assert res.found == {A.key: FileMatch("d/abc-_DEF123_30.mp4", True)}
    assert res.ambiguous == [] and res.unmatched == []


def test_match_real_eval_ids(
    real_lists: tuple[list[Segment], list[Segment]], tmp_path: Path
) -> None:
    """Real ids (leading '-', '_' inside) named in four downloaders' ways, among 20,371 segments."""
    ev = real_lists[1]
    names = {}
    for i, s in enumerate(ev[:400]):
        names[s.key] = [
            f"{s.ytid}_{s.start_s:.3f}_{s.end_s:.3f}.mp4",
            f"Y{s.ytid}.wav",
            f"{s.ytid}_{int(s.start_s * 1000)}_{int(s.end_s * 1000)}.flac",
            f"{s.ytid[0]}/{s.ytid}.mkv",
        ][i % 4]
    touch(tmp_path, *names.values())
    res = match_files(tmp_path, ev)
    assert {k: m.relpath for k, m in res.found.items()} == names
    assert sum(not m.cut for m in res.found.values()) == 100
    assert len(res.missing) == 20371 - 400 and res.unmatched == [] and res.ambiguous == []
    assert MEDIA_SUFFIXES[0] == ".mp4" and ".opus" in MEDIA_SUFFIXES
