"""``avssl-prep images``: an image folder -> images.jsonl + prep.json + quarantine.csv; layouts,
quarantine of broken files, determinism, idempotent re-runs, and the manifest read by the trainer
and by avssl-eval."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from avssl.data.manifest import read_manifest
from data_prep import cli
from data_prep.image_folder import prep_images


def _png(path: Path, value: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value, np.uint8)
    img[2:5, 3:9] = (255 - value, value // 2, 40)
    assert cv2.imwrite(str(path), img)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """ImageFolder layout, two classes, a loose image, one empty and one corrupt file."""
    root = tmp_path / "pics"
    for i in range(6):
        _png(root / "cat" / f"c{i}.png", 10 * i)
        _png(root / "dog" / "sub" / f"d{i}.jpg", 100 + 10 * i)
    _png(root / "loose.png", 7)
    (root / "dog" / "empty.png").write_bytes(b"")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")  # hidden files are ignored
    return root


def test_image_folder_manifest_quarantine_and_card(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = prep_images(folder, out, test_fraction=0.3, seed=1, workers=1)
    rows = read_manifest(out / "images.jsonl")
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert len(rows) == 13 and res.counts["images"] == 13
    assert {r["label"] for r in rows} == {"cat", "dog", ""}
    by = {r["path"]: r for r in rows}
    assert by["cat/c0.png"]["class_id"] == 0 and by["dog/sub/d0.jpg"]["class_id"] == 1
    assert by["loose.png"]["class_id"] == -1
    assert set(rows[0]) == {"v", "path", "class_id", "label", "split", "fold"}  # as the digits
    assert {r["split"] for r in rows} == {"train", "test"}
    assert all(1 <= r["fold"] <= 5 for r in rows)
    bad = read_manifest(out / "quarantine.csv")
    assert [(b["path"], b["reason"]) for b in bad] == [
        ("cat/broken.png", "unreadable"),
        ("dog/empty.png", "empty"),
    ]
    card = json.loads((out / "prep.json").read_text())
    assert card["root"] == str(folder.resolve()) and card["kind"] == "images"
    assert card["layout"] == "class-folders" and card["classes"] == ["cat", "dog"]
    assert card["counts"]["quarantined"] == 2
    assert card["counts"]["quarantine_reasons"] == {"empty": 1, "unreadable": 1}

    # a re-run changes nothing, not even the modification times; a new seed moves the split
    files = [out / n for n in ("images.jsonl", "quarantine.csv", "prep.json")]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]
    prep_images(folder, out, test_fraction=0.3, seed=1, workers=1)
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before
    other = tmp_path / "other"
    prep_images(folder, other, test_fraction=0.3, seed=1, workers=2)  # same with 2 workers
    assert (other / "images.jsonl").read_bytes() == before[0][0]
    # the split is by path: a new image does not move the others
    _png(folder / "cat" / "c9.png", 99)
    prep_images(folder, out, test_fraction=0.3, seed=1, workers=1)
    grown = {r["path"]: r["split"] for r in read_manifest(out / "images.jsonl")}
    assert all(grown[p] == r["split"] for p, r in by.items())


def test_split_folders_flat_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split_root = tmp_path / "split"
    for split in ("train", "test"):
        for c in ("a", "b"):
            _png(split_root / split / c / "x.png", 50)
    out = tmp_path / "o1"
    assert cli.main(["images", str(split_root), "--out", str(out), "--workers", "1"]) == 0
    assert "4 images of 2 classes" in capsys.readouterr().out
    rows = read_manifest(out / "images.jsonl")
    assert [(r["path"], r["split"], r["label"]) for r in rows] == [
        ("test/a/x.png", "test", "a"),
        ("test/b/x.png", "test", "b"),
        ("train/a/x.png", "train", "a"),
        ("train/b/x.png", "train", "b"),
    ]
    assert json.loads((out / "prep.json").read_text())["layout"] == "split-folders"

    flat = tmp_path / "flat"
    for i in range(3):
        _png(flat / f"{i}.png", i)
    prep_images(flat, tmp_path / "o2", workers=1)
    rows = read_manifest(tmp_path / "o2" / "images.jsonl")
    assert all(r["class_id"] == -1 for r in rows) and len(rows) == 3

    empty = tmp_path / "none"
    empty.mkdir()
    assert cli.main(["images", str(empty), "--out", str(tmp_path / "o3")]) == 2
    assert "no images" in capsys.readouterr().err


def test_the_trainer_and_the_evaluation_read_it(folder: Path, tmp_path: Path) -> None:
    """Paths are relative to prep.json's root: avssl-train and avssl-eval both find the files."""
    from avssl.config import load_config
    from avssl.data.dataset import FrameReader
    from avssl.eval.vision import load_eval_set
    from avssl.train import TrainConfig, _rows

    out = tmp_path / "out"
    prep_images(folder, out, workers=1)
    cfg = load_config(TrainConfig, None, ["task=rotation", f"data.manifest={out / 'images.jsonl'}"])
    train, val, root, _ = _rows(cfg)
    assert root == folder.resolve() and len(train) + len(val) == 13
    assert FrameReader(root, (8, 8)).image(train[0]["path"]).shape == (1, 3, 8, 8)
    ev = load_eval_set(out / "images.jsonl")
    assert ev.kind == "image" and all(s.path.is_file() for s in ev.samples)
    assert ev.classes[:2] == ["cat", "dog"]


def test_a_killed_runs_temps_go_and_the_users_files_stay(folder: Path) -> None:
    """In place (OUT = the image tree): the half-written manifest of a killed run goes; a file of
    the same shape inside the user's class folders is not the prep's and stays."""
    prep_images(folder, folder, workers=1)
    before = (folder / "images.jsonl").read_bytes()
    stale = folder / ".images.ab12cd34.tmp.jsonl"
    stale.write_text('{"path": "cut')
    theirs = next(p for p in folder.iterdir() if p.is_dir()) / ".notes.tmp.txt"
    theirs.write_text("mine")
    prep_images(folder, folder, workers=1)
    assert not stale.exists()
    assert theirs.read_text() == "mine"
    assert (folder / "images.jsonl").read_bytes() == before
