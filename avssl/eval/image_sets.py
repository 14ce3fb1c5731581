"""The rows a frozen-feature evaluation embeds: image and video manifests read into an
:class:`EvalSet` (``avssl-eval linear | knn | retrieval``, :mod:`avssl.eval.vision`).
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/image_sets.py".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import prep_hint, read_manifest, resolve_under
from avssl.data.suffixes import AUDIO_SUFFIXES, IMAGE_SUFFIXES


@dataclass(frozen=True)
class Sample:
    """One manifest row to embed."""

    id: str  # the row's path relative to the dataset root (unique key in caches and reports)
    path: Path  # the file
    label: int  # class id; -1 without one
    split: str
    class_name: str = ""
    labels: tuple[str, ...] | None = None  # multi-label rows (AudioSet MIDs)
    num_frames: int | None = None  # videos: counted frames, when the manifest has them


@dataclass
class EvalSet:
    """The rows of one evaluation: an image or a video set, with names for reports."""

    name: str  # dataset name for file names and results, e.g. "digits", "synth", "ucf101-split1"
    kind: str  # "image" | "video"
    manifests: list[Path]
    root: Path  # what sample ids are relative to
    samples: list[Sample]
    classes: list[str]  # names by class id
    infos: dict[str, Any] = field(default_factory=dict)  # id -> VideoInfo from a probe.jsonl

    def indices(self, splits: Sequence[str]) -> np.ndarray:
        """Row indices whose split is one of ``splits``, in manifest order."""
        want = set(splits)
        return np.array([i for i, s in enumerate(self.samples) if s.split in want], np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def split_names(self) -> list[str]:
        return sorted({s.split for s in self.samples})


def default_manifest() -> Path:
    """The built-in set's manifest: ``$AVSSL_DATA/synth/manifest.jsonl`` (default avssl-data)."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "synth" / "manifest.jsonl"


def spread(rows: list[Any], n: int | None) -> list[Any]:
    """``n`` rows spread evenly over ``rows`` (all of them when ``n`` is None or 0)."""
    if not n or len(rows) <= n:
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]


def _resolve_manifest(path: Path) -> Path:
    if path.is_dir():
        for name in ("images.jsonl", "manifest.jsonl", "train.jsonl", "videos.jsonl"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{path}: no images.jsonl, manifest.jsonl, train.jsonl or videos.jsonl in this folder"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest{prep_hint(path)}")
    return path


def _card(manifest: Path) -> tuple[dict[str, Any], Path | None]:
    """The dataset card next to a manifest: prep.json in its folder or the folder above (the
    ``splitK/`` files), else the built-in set's dataset.json; ``({}, None)`` without one."""
    for cand in (manifest.parent / "prep.json", manifest.parent.parent / "prep.json",
                 manifest.parent / "dataset.json"):  # fmt: skip
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{cand}: not valid JSON ({e})") from None
            if isinstance(data, dict):
                return data, cand
    return {}, None


def _row_kind(row: dict[str, Any], where: str) -> str:
    if "audio_video" in row:
        raise ValueError(
            f"{where}: an audio-visual pair manifest; give the video manifest (train.jsonl / "
            "test.jsonl) instead"
        )
    if any(k in row for k in ("frames", "subsequences", "five")):
        raise ValueError(
            f"{where}: a pretext-task manifest; give a video manifest (train.jsonl, test.jsonl, "
            "videos.jsonl) or the built-in set's manifest.jsonl"
        )
    if "video" in row:
        return "video"
    if "file" in row:
        return "file"
    if "path" in row:
        suffix = Path(str(row["path"])).suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            raise ValueError(
                f"{where}: an audio manifest ({row['path']}); these commands embed images and "
                "video frames (audio: avssl-eval esc50)"
            )
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"{where}: {row['path']!r} is not an image ({sorted(IMAGE_SUFFIXES)})")
        return "image"
    raise ValueError(f"{where}: a row without 'path', 'file' or 'video'; not a known manifest")


def _rows_to_samples(
    manifest: Path, root: Path, split_key: str | None, file_split: str | None
) -> tuple[str, list[Sample], dict[int, str]]:
    """Rows -> samples. A row's split: its ``split`` field, else ``file_split``, else its role
    in split ``split_key`` of its ``splits`` field, else ``"all"``."""
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: empty manifest")
    stem_split = file_split
    kinds: set[str] = set()
    samples: list[Sample] = []
    names: dict[int, str] = {}
    for n, row in enumerate(rows, 1):
        where = f"{manifest}:{n}"
        if "v" in row and row["v"] != 1:
            raise ValueError(f"{where}: manifest format version {row['v']!r}; this reader knows 1")
        kind = _row_kind(row, where)
        kinds.add(kind)
        rel = str(row[{"video": "video", "file": "file", "image": "path"}[kind]])
        if "split" in row:
            split = str(row["split"])
        elif stem_split is not None:
            split = stem_split
        elif isinstance(row.get("splits"), dict):
            roles: dict[str, Any] = row["splits"]
            key = split_key if split_key is not None else ("1" if "1" in roles else None)
            if key is None and len(roles) == 1:
                key = next(iter(roles))
            if key not in roles:
                raise ValueError(
                    f"{where}: no role for split {key!r} (roles: {roles}); use --split"
                )
            split = str(roles[key])
        else:
            split = "all"
        label = int(row.get("class_id", -1))
        name = str(row.get("class_name", row.get("label", "")))
        if label >= 0 and name:
            names.setdefault(label, name)
        multi = row.get("labels")
        frames = row.get("num_frames")
        samples.append(
            Sample(
                id=rel,
                path=resolve_under(root, rel, where=where),
                label=label,
                split=split,
                class_name=name,
                labels=tuple(str(x) for x in multi) if isinstance(multi, list) else None,
                num_frames=int(frames) if isinstance(frames, int) else None,
            )
        )
    if len(kinds) > 1:
        raise ValueError(f"{manifest}: rows of different kinds ({sorted(kinds)})")
    return kinds.pop(), samples, names


def load_eval_set(
    manifest: str | os.PathLike[str],
    *,
    test_manifest: str | os.PathLike[str] | None = None,
    split: str | None = None,
) -> EvalSet:
    """Read an image or video manifest (module docstring) into an :class:`EvalSet`.

    ``test_manifest`` adds a second file (its rows' split: their ``split`` field, else the file
    name ``train``/``test``/``val``, else ``test``). A ``train.jsonl`` with a sibling ``test.jsonl``
    gets that file added. ``split`` picks the role of ``videos.jsonl`` rows (``splits`` field).
    """
    first = _resolve_manifest(Path(manifest))
    files = [first]
    if test_manifest is not None:
        files.append(_resolve_manifest(Path(test_manifest)))
    elif first.name == "train.jsonl" and (first.parent / "test.jsonl").is_file():
        files.append(first.parent / "test.jsonl")
    card, card_path = _card(first)
    kinds: set[str] = set()
    samples: list[Sample] = []
    names: dict[int, str] = {}
    roots: list[Path] = []
    infos: dict[str, Any] = {}
    for i, m in enumerate(files):
        m_card, m_card_path = _card(m)
        root = m.parent
        if m_card_path is not None and m_card_path.name == "prep.json" and m_card.get("root"):
            root = Path(str(m_card["root"]))
            from avssl.data.dataset import load_probe_infos

            infos.update(load_probe_infos(m_card_path.parent / "probe.jsonl"))
        roots.append(root)
        file_split = m.stem if m.stem in ("train", "test", "val") else None
        if i == 1 and file_split is None:
            file_split = "test"  # --test-manifest: its rows are test rows
        kind, part, part_names = _rows_to_samples(m, root, split, file_split)
        kinds.add("image" if kind == "image" else "video")
        samples += part
        for k, v in part_names.items():
            names.setdefault(k, v)
    if len(kinds) > 1:
        raise ValueError(f"{[str(f) for f in files]}: an image and a video manifest cannot mix")
    # names
    raw_classes = card.get("classes")
    classes: list[str] = []
    if isinstance(raw_classes, list):
        classes = [str(c["name"]) if isinstance(c, dict) else str(c) for c in raw_classes]
    top = max((s.label for s in samples), default=-1)
    for k in range(len(classes), top + 1):
        classes.append(names.get(k, str(k)))
    # dataset name
    if card_path is not None and card_path.name == "prep.json":
        name = str(card.get("dataset") or first.parent.name)
        if re.fullmatch(r"split\d+", first.parent.name):
            name = f"{name}-{first.parent.name}"
    elif card_path is not None:  # dataset.json of the built-in set
        name = "synth" if card.get("name") == "avssl-synth" else str(card.get("name", "synth"))
    else:
        name = first.parent.name or "dataset"
    return EvalSet(name, kinds.pop(), files, roots[0], samples, classes, infos)
