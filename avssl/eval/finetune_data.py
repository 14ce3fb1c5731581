"""The labelled videos (or images) of a fine-tuning run (``avssl-eval finetune``; the formats are
in :mod:`avssl.eval.finetune`'s docstring): rows read and checked, train/test kept apart, and the
examples -- a random clip of a training video, every test clip of a test video."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.dataset import FrameReader, load_probe_infos
from avssl.data.manifest import read_manifest, resolve_under
from avssl.data.suffixes import IMAGE_SUFFIXES
from avssl.eval.clips import clip_indices, eval_starts
from avssl.eval.image_sets import spread


@dataclass
class FinetuneData:
    """Training and test items (dicts: ``id``, ``label``, ``num_frames``, ``index``) of one
    dataset, and how to read them."""

    name: str
    manifest: Path
    test_manifest: Path | None
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    train_root: Path
    test_root: Path
    train_probe: Path | None
    test_probe: Path | None
    classes: list[str]
    notes: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _card(manifest: Path) -> tuple[dict[str, Any], Path | None]:
    """The prep card beside the manifest (or one folder up: ucf101's ``splitK/``)."""
    for d in (manifest.parent, manifest.parent.parent):
        for name in ("prep.json", "dataset.json"):
            if (d / name).is_file():
                return json.loads((d / name).read_text()), d
    return {}, None


def _row_path(row: dict[str, Any], manifest: Path, i: int) -> str:
    for key in ("video", "file", "path"):
        if isinstance(row.get(key), str):
            return str(row[key])
    raise ValueError(f"{manifest}: row {i + 1} has no 'video', 'file' or 'path' field")


def _read_rows(manifest: Path) -> tuple[list[dict[str, Any]], Path, Path | None, dict]:
    """Rows with ``id`` (path relative to the root), ``label``, ``num_frames``, ``split``; the
    root, the probe file (or None) and the card."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: manifest not found")
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    card, card_dir = _card(manifest)
    root = Path(card["root"]) if isinstance(card.get("root"), str) else manifest.parent
    first = _row_path(rows[0], manifest, 0)
    resolve_under(root, first, where=f"{manifest}: row 1")  # before any look at the disk
    if not (root / first).exists() and (manifest.parent / first).exists():
        root = manifest.parent
    if not (root / first).exists():
        raise FileNotFoundError(f"{manifest}: {first} not found under {root} (the data root)")
    probe = card_dir / "probe.jsonl" if card_dir and (card_dir / "probe.jsonl").is_file() else None
    out = []
    for i, r in enumerate(rows):
        if "v" in r and r["v"] != 1:
            raise ValueError(f"{manifest}: row {i + 1} has format version {r['v']}, expected 1")
        rel = _row_path(r, manifest, i)
        resolve_under(root, rel, where=f"{manifest}: row {i + 1}")  # never outside the root
        if "class_id" not in r:
            raise ValueError(f"{manifest}: row {i + 1} ({rel}) has no class_id")
        image = Path(rel).suffix.lower() in IMAGE_SUFFIXES
        n = 1 if image else r.get("num_frames")
        out.append(
            {
                "id": rel,
                "label": int(r["class_id"]),
                "num_frames": None if n is None else int(n),
                "split": r.get("split"),
                "name": r.get("class_name", r.get("label")),
                "fingerprint": r.get("fingerprint"),
            }
        )
    return out, root, probe, card


def _fill_num_frames(items: list[dict[str, Any]], root: Path, probe: Path | None) -> None:
    missing = [it for it in items if it["num_frames"] is None]
    if not missing:
        return
    from avssl.data import decode

    infos = load_probe_infos(probe)
    for it in missing:
        info = infos.get(it["id"]) or decode.probe(root / it["id"])
        it["num_frames"] = int(info.num_frames)


def _dataset_name(manifest: Path, card: dict[str, Any]) -> str:
    name = str(card.get("name") or card.get("dataset") or manifest.parent.name)
    name = name.removeprefix("avssl-")
    if re.fullmatch(r"split\d+", manifest.parent.name):
        name += "-" + manifest.parent.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def load_data(cfg: Any, manifest: Path, test_manifest: Path | None) -> FinetuneData:
    """Read and check the training and test rows (module docstring).

    Raises:
        FileNotFoundError: a manifest or the data root is missing.
        ValueError: rows without a split where one is needed, no training or test rows, or a
            test video that is also a training video.
    """
    rows, root, probe, card = _read_rows(manifest)
    notes: dict[str, Any] = {}
    if test_manifest is None:
        if any(r["split"] is None for r in rows):
            raise ValueError(
                f"{manifest}: rows without a 'split' field; give the test rows with --test "
                "(avssl-prep ucf101: --manifest splitK/train.jsonl --test splitK/test.jsonl)"
            )
        train = [r for r in rows if r["split"] in cfg.data.train_splits]
        test = [r for r in rows if r["split"] == cfg.data.test_split]
        test_root, test_probe = root, probe
        notes["unused_rows"] = len(rows) - len(train) - len(test)
    else:
        train = rows
        test, test_root, test_probe, _ = _read_rows(test_manifest)
    unlabelled = sum(r["label"] < 0 for r in train) + sum(r["label"] < 0 for r in test)
    if unlabelled:
        notes["unlabelled_rows_dropped"] = unlabelled
        train = [r for r in train if r["label"] >= 0]
        test = [r for r in test if r["label"] >= 0]
    for what, items in (("training", train), ("test", test)):
        if not items:
            splits = sorted({str(r["split"]) for r in rows})
            raise ValueError(f"{manifest}: no labelled {what} rows (splits: {splits})")
    train_paths = {(root / r["id"]).resolve() for r in train}
    both = sorted(str(p) for p in {(test_root / r["id"]).resolve() for r in test} & train_paths)
    if both:
        raise ValueError(
            f"{len(both)} test videos are also training videos (e.g. {both[0]}): train and test "
            "rows must come from disjoint videos"
        )
    fps = {r["fingerprint"] for r in train if r["fingerprint"]}
    same = sum(1 for r in test if r["fingerprint"] and r["fingerprint"] in fps)
    if same:
        notes["test_files_identical_to_a_training_file"] = same
    train = spread(sorted(train, key=lambda r: r["id"]), cfg.data.max_train_rows)
    test = spread(sorted(test, key=lambda r: r["id"]), cfg.data.max_test_rows)
    _fill_num_frames(train, root, probe)
    _fill_num_frames(test, test_root, test_probe)
    for items in (train, test):
        for i, r in enumerate(items):
            r["index"] = i
    num_classes = max(r["label"] for r in train + test) + 1
    names = {r["label"]: str(r["name"]) for r in train + test if r["name"] not in (None, "")}
    card_classes = card.get("classes")
    classes = []
    for k in range(num_classes):
        if k in names:
            classes.append(names[k])
        elif isinstance(card_classes, list) and k < len(card_classes):
            c = card_classes[k]
            classes.append(str(c.get("name", k)) if isinstance(c, dict) else str(c))
        else:
            classes.append(str(k))
    return FinetuneData(
        _dataset_name(manifest, card),
        manifest,
        test_manifest,
        train,
        test,
        root,
        test_root,
        probe,
        test_probe,
        classes,
        notes,
    )


class ClipReader(FrameReader):
    """:class:`FrameReader` for videos, plus images (a one-frame video: every index is 0)."""

    def __init__(self, root: Path, size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(root, size, **kwargs)
        self._images: dict[str, torch.Tensor] = {}

    def __call__(self, rel: str, indices: Any) -> torch.Tensor:
        if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            return super().__call__(rel, indices)
        img = self._image(rel)
        return img.unsqueeze(0).expand(len(indices), -1, -1, -1).contiguous()

    def _image(self, rel: str) -> torch.Tensor:
        cache = self._images
        if rel in cache:
            return cache[rel]
        import cv2

        raw = cv2.imread(str(self.path(rel)), cv2.IMREAD_COLOR)
        if raw is None:
            raise ValueError(f"{self.path(rel)}: not an image OpenCV can read")
        h, w = self.size
        interp = cv2.INTER_AREA if raw.shape[0] > h or raw.shape[1] > w else cv2.INTER_LINEAR
        img = cv2.resize(raw, (w, h), interpolation=interp)[:, :, ::-1]  # BGR -> RGB
        t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        if self.cache_bytes > 0 and len(cache) * t.numel() < self.cache_bytes:
            cache[rel] = t
        return t


@dataclass(frozen=True)
class ClipExamples:
    """The examples of a fine-tuning run: clips of ``length`` frames ``stride`` apart."""

    length: int
    stride: int
    num_clips: int  # test clips per video (:func:`eval_starts`)

    @property
    def span(self) -> int:
        return (self.length - 1) * self.stride + 1

    def _indices(self, start: int, n: int) -> list[int]:
        return clip_indices(start, self.length, self.stride, n)

    def train(
        self, row: dict[str, Any], read: FrameReader, rng: np.random.Generator, epoch: int = 0
    ) -> dict[str, Any]:
        """One clip of the video at a random start (uniform over the starts that fit)."""
        n = int(row["num_frames"])
        start = int(rng.integers(0, max(n - self.span, 0) + 1))
        frames = read(row["id"], self._indices(start, n))
        return {"frames": frames, "target": torch.tensor(int(row["label"]))}

    def test(
        self, row: dict[str, Any], read: FrameReader, rng: np.random.Generator, epoch: int = 0
    ) -> dict[str, Any]:
        """Every test clip of one video: ``(K, T, 3, H, W)`` uint8."""
        n = int(row["num_frames"])
        starts, _ = eval_starts(n, self.span, self.num_clips)
        frames = read(row["id"], [i for s in starts for i in self._indices(s, n)])
        return {
            "frames": frames.view(len(starts), self.length, *frames.shape[1:]),
            "target": torch.tensor(int(row["label"])),
            "index": torch.tensor(int(row["index"])),
        }
