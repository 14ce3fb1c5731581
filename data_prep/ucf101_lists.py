"""The official UCF-101 split lists (``ucfTrainTestlist/``), read exactly as published.

Groundwork for ``avssl-prep ucf101`` (issue 3): pure parsing, no media access.

The published files have their quirks, all handled here and tested on the real files:

- CRLF line ends (and a trailing blank line in some files);
- ``classInd.txt`` numbers classes from 1; ``trainlistNN.txt`` lines are
  ``Class/v_Class_gGG_cCC.avi N`` with that 1-based label; ``testlistNN.txt`` lines carry no label;
- the folder ``HandstandPushups/`` holds files named ``v_HandStandPushups_*``: the class is the
  folder (as in ``classInd.txt``), never the file name's middle part;
- split N tests on groups 7(N-1)+1 .. 7N (1-7, 8-14, 15-21) and trains on the other 18 groups.

Labels in avssl are 0-based: ``label = classInd number - 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["UCFClip", "parse_clip_path", "read_class_index", "read_split_list", "read_splits"]

_NAME = re.compile(r"^v_(?P<cls>[A-Za-z]+)_g(?P<group>\d{2})_c(?P<clip>\d{2})\.avi$")


@dataclass(frozen=True)
class UCFClip:
    relpath: str  # "Class/v_Class_gGG_cCC.avi", relative to the UCF-101 root
    class_name: str  # the folder, as in classInd.txt
    label: int  # 0-based
    group: int  # 1..25: clips of one group come from one long video (never split across sets)
    clip: int


def parse_clip_path(relpath: str) -> tuple[str, int, int]:
    """``"Class/v_Class_g08_c01.avi"`` -> ``("Class", 8, 1)``; ValueError names the bad path."""
    parts = relpath.strip().replace("\\", "/").split("/")
    if len(parts) != 2:
        raise ValueError(f"UCF-101 clip path {relpath!r}: expected 'Class/v_Class_gGG_cCC.avi'")
    folder, name = parts
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"UCF-101 clip path {relpath!r}: file name is not v_Class_gGG_cCC.avi")
    if m["cls"].lower() != folder.lower():  # HandstandPushups/v_HandStandPushups_*: case only
        raise ValueError(f"UCF-101 clip path {relpath!r}: folder {folder!r} vs file {m['cls']!r}")
    return folder, int(m["group"]), int(m["clip"])


def _lines(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_class_index(path: str | Path) -> list[str]:
    """``classInd.txt`` -> class names, position = 0-based label. Checks the numbering 1..N."""
    p = Path(path)
    names: list[str] = []
    for n, line in _lines(p):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{p}:{n}: expected 'N ClassName', got {line!r}")
        if int(fields[0]) != len(names) + 1:
            raise ValueError(f"{p}:{n}: class number {fields[0]}, expected {len(names) + 1}")
        names.append(fields[1])
    if not names:
        raise ValueError(f"{p}: no classes")
    return names


def read_split_list(path: str | Path, classes: list[str]) -> list[UCFClip]:
    """A train or test list -> clips. A train line's label must match its folder's class."""
    p = Path(path)
    index = {c: i for i, c in enumerate(classes)}
    out: list[UCFClip] = []
    seen: set[str] = set()
    for n, line in _lines(p):
        fields = line.split()
        if len(fields) not in (1, 2):
            raise ValueError(f"{p}:{n}: expected 'Class/v_...avi [label]', got {line!r}")
        try:
            folder, group, clip = parse_clip_path(fields[0])
        except ValueError as e:
            raise ValueError(f"{p}:{n}: {e}") from None
        if folder not in index:
            raise ValueError(f"{p}:{n}: class {folder!r} is not in classInd")
        label = index[folder]
        if len(fields) == 2 and int(fields[1]) - 1 != label:
            raise ValueError(
                f"{p}:{n}: label {fields[1]} but {folder!r} is class {label + 1} in classInd"
            )
        if fields[0] in seen:
            raise ValueError(f"{p}:{n}: {fields[0]} is listed twice")
        seen.add(fields[0])
        out.append(UCFClip(fields[0], folder, label, group, clip))
    return out


def read_splits(list_dir: str | Path) -> tuple[list[str], dict[int, dict[str, list[UCFClip]]]]:
    """Read ``classInd.txt`` and every ``trainlist0N.txt`` / ``testlist0N.txt`` present.

    Returns ``(classes, {split: {"train": [...], "test": [...]}})``. A split whose train and test
    lists share a clip, or share a group (which would leak one long video into both), is refused.
    """
    d = Path(list_dir)
    classes = read_class_index(d / "classInd.txt")
    splits: dict[int, dict[str, list[UCFClip]]] = {}
    for k in (1, 2, 3):
        train_p, test_p = d / f"trainlist0{k}.txt", d / f"testlist0{k}.txt"
        if not train_p.exists() and not test_p.exists():
            continue
        if not (train_p.exists() and test_p.exists()):
            missing = test_p if train_p.exists() else train_p
            raise FileNotFoundError(f"{missing}: split {k} needs both its train and test list")
        train, test = read_split_list(train_p, classes), read_split_list(test_p, classes)
        shared = {c.group for c in train} & {c.group for c in test}
        if shared:
            raise ValueError(f"{d}: split {k} has groups {sorted(shared)} in both train and test")
        splits[k] = {"train": train, "test": test}
    if not splits:
        raise FileNotFoundError(f"{d}: no trainlist0N.txt / testlist0N.txt found")
    return classes, splits
