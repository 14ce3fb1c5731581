"""The official UCF-101 split lists: counts, labels, quirks, and no group in both sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from media import shared_data_dir

from data_prep.scan import parse_clip_path, read_class_index, read_split_list, read_splits


@pytest.fixture(scope="module")
def lists() -> Path:
    d = shared_data_dir() / "ucf101" / "ucfTrainTestlist"
    if not (d / "classInd.txt").exists():
        pytest.skip(f"UCF-101 split lists not found at {d} (set AVSSL_SHARED_DATA to their folder)")
    return d


def test_real_lists(lists: Path) -> None:
    classes, splits = read_splits(lists)
    assert (
        len(classes) == 101 and classes[0] == "ApplyEyeMakeup" and classes[36] == "HandstandPushups"
    )
    counts = {k: (len(s["train"]), len(s["test"])) for k, s in splits.items()}
    assert counts == {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}
    for k, s in splits.items():
        test_groups = {c.group for c in s["test"]}
        assert test_groups == set(range(7 * (k - 1) + 1, 7 * k + 1))
        assert {c.relpath for c in s["train"]}.isdisjoint(c.relpath for c in s["test"])
        assert {c.label for c in s["test"]} == set(range(101))
    hp = [c for c in splits[1]["train"] if c.class_name == "HandstandPushups"]
    assert hp and all(c.relpath.startswith("HandstandPushups/v_HandStandPushups_") for c in hp)
    assert all(c.label == 36 for c in hp)
    total = {c.relpath for s in splits[1].values() for c in s}
    assert len(total) == 13320


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", ("ApplyEyeMakeup", 8, 1)),
        ("HandstandPushups/v_HandStandPushups_g01_c02.avi", ("HandstandPushups", 1, 2)),
        ("  Archery/v_Archery_g25_c07.avi \r", ("Archery", 25, 7)),
        ("Archery\\v_Archery_g25_c07.avi", ("Archery", 25, 7)),
    ],
)
def test_parse_clip_path(path: str, expected: tuple[str, int, int]) -> None:
    assert parse_clip_path(path) == expected


@pytest.mark.parametrize(
    "path",
    ["v_Archery_g01_c01.avi", "Archery/Archery_g01_c01.avi", "Archery/v_Bowling_g01_c01.avi",
     "Archery/v_Archery_g1_c01.avi", "Archery/v_Archery_g01_c01.mp4"],
)  # fmt: skip
def test_parse_clip_path_refuses(path: str) -> None:
    with pytest.raises(ValueError, match="UCF-101 clip path"):
        parse_clip_path(path)


def test_bad_lists_name_file_and_line(tmp_path: Path) -> None:
    ind = tmp_path / "classInd.txt"
    ind.write_bytes(b"1 Archery\r\n2 Bowling\r\n\r\n")
    classes = read_class_index(ind)
    assert classes == ["Archery", "Bowling"]
    bad = tmp_path / "trainlist01.txt"
    bad.write_bytes(b"Archery/v_Archery_g01_c01.avi 1\r\nBowling/v_Bowling_g01_c01.avi 1\r\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:2: label 1 but 'Bowling' is class 2"):
        read_split_list(bad, classes)
    twice = tmp_path / "testlist01.txt"
    twice.write_bytes(b"Archery/v_Archery_g01_c01.avi\r\nArchery/v_Archery_g01_c01.avi\r\n")
    with pytest.raises(ValueError, match=r"testlist01.txt:2: .* listed twice"):
        read_split_list(twice, classes)
    gap = tmp_path / "classInd2.txt"
    gap.write_text("1 Archery\n3 Bowling\n")
    with pytest.raises(ValueError, match=r"classInd2.txt:2: class number 3, expected 2"):
        read_class_index(gap)


def test_group_leak_is_refused(tmp_path: Path) -> None:
    (tmp_path / "classInd.txt").write_text("1 Archery\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_g01_c02.avi\n")
    with pytest.raises(ValueError, match=r"groups \[1\] in both train and test"):
        read_splits(tmp_path)
