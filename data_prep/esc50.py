"""``avssl-prep esc50``: ESC-50 as published -> a clip manifest with the official 5 folds.

Design notes: docs/design/prep_tracking_cli.md, "data_prep/esc50.py".
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .audio_sets import (
    AUDIO_TIMEOUT_S,
    FORMAT_VERSION,
    AudioPrepResult,
    ClipSet,
    prep_clip_set,
)
from .scan import not_taken

#: The columns of ESC-50's ``meta/esc50.csv`` (extra columns are allowed and ignored).
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = 5
ESC50_CLASSES = 50


@dataclass(frozen=True)
class Esc50Entry:
    """One row of ``meta/esc50.csv`` (``line`` is its line number in the file)."""

    filename: str
    fold: int
    target: int
    category: str
    esc10: bool
    src_file: str
    take: str
    line: int


def find_esc50_root(root: str | os.PathLike[str]) -> Path:
    """The ESC-50 folder: ``root`` itself when it holds ``meta/esc50.csv`` (the published
    ``ESC-50-master`` layout), else the one sub-folder of ``root`` that does."""
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    r = r.resolve()
    if (r / "meta" / "esc50.csv").is_file():
        return r
    found = sorted(d for d in r.iterdir() if (d / "meta" / "esc50.csv").is_file())
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(d.name for d in found)
        raise FileNotFoundError(f"{r}: several ESC-50 folders ({names}); give one of them")
    raise FileNotFoundError(
        f"{r}: no meta/esc50.csv here or in a sub-folder; expected the ESC-50 layout "
        "ESC-50-master/audio/*.wav + ESC-50-master/meta/esc50.csv"
    )


def _int_in(text: str, lo: int, hi: int) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if lo <= value <= hi else None


def read_esc50_csv(path: str | os.PathLike[str]) -> list[Esc50Entry]:
    """Parse and validate ESC-50's ``meta/esc50.csv``.

    Checks every row: ``fold`` is an integer 1..5, ``target`` an integer 0..49, each target has
    one category and each category one target, ``filename`` is a plain file name listed once,
    ``esc10`` is True/False (any case). Any subset of the official rows is accepted. Raises
    ValueError whose message starts with ``path:line: what is wrong`` (up to 10 problems).
    """
    p = Path(path)
    problems: list[str] = []
    entries: list[Esc50Entry] = []
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        absent = [c for c in ESC50_COLUMNS if c not in header]
        if absent:
            raise ValueError(
                f"{p}:1: missing column(s) {', '.join(absent)}; expected the header "
                f"{','.join(ESC50_COLUMNS)}"
            )
        col = {c: header.index(c) for c in ESC50_COLUMNS}
        first_file: dict[str, int] = {}
        target_of: dict[str, tuple[int, int]] = {}  # category -> (target, line)
        category_of: dict[int, tuple[str, int]] = {}  # target -> (category, line)
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                problems.append(f"{p}:{line}: {len(cells)} cells, the header has {len(header)}")
                continue
            v = {c: cells[i].strip() for c, i in col.items()}
            where = f"{p}:{line}"
            fold = _int_in(v["fold"], 1, ESC50_FOLDS)
            target = _int_in(v["target"], 0, ESC50_CLASSES - 1)
            name, category = v["filename"], v["category"]
            if fold is None:
                problems.append(f"{where}: fold {v['fold']!r} is not an integer in 1..5")
            if target is None:
                problems.append(f"{where}: target {v['target']!r} is not an integer in 0..49")
            if not category:
                problems.append(f"{where}: empty category")
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                problems.append(f"{where}: filename {name!r} is not a plain file name")
            elif name in first_file:
                problems.append(
                    f"{where}: filename {name!r} is already listed on line {first_file[name]}"
                )
            else:
                first_file[name] = line
            if v["esc10"].lower() not in ("true", "false"):
                problems.append(f"{where}: esc10 {v['esc10']!r} is not True or False")
            if target is not None and category:
                seen_cat = category_of.setdefault(target, (category, line))
                seen_tgt = target_of.setdefault(category, (target, line))
                if seen_cat[0] != category:
                    problems.append(
                        f"{where}: target {target} is category {category!r} here but "
                        f"{seen_cat[0]!r} on line {seen_cat[1]}"
                    )
                elif seen_tgt[0] != target:
                    problems.append(
                        f"{where}: category {category!r} has target {target} here but "
                        f"{seen_tgt[0]} on line {seen_tgt[1]}"
                    )
            if fold is not None and target is not None:
                entries.append(
                    Esc50Entry(name, fold, target, category, v["esc10"].lower() == "true",
                               v["src_file"], v["take"], line)
                )  # fmt: skip
    if not problems and not entries:
        problems.append(f"{p}:2: no clip rows after the header")
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError("\n".join(problems[:10]) + more)
    return entries


def prep_esc50(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool = True,
    timeout_s: float = AUDIO_TIMEOUT_S,
    shard: tuple[int, int] | None = None,
    probed: dict[str, Any] | None = None,
) -> AudioPrepResult:
    """ESC-50 in its published layout -> ``out/clips.jsonl`` with the official folds.

    ``shard`` I/N probes only every N-th listed wav and writes a shard note instead of the
    manifests; ``probed`` is for ``avssl-prep merge`` (data_prep/shards.py).

    ``root`` is the ``ESC-50-master`` folder (``audio/*.wav``, ``meta/esc50.csv``) or its
    parent. The csv is validated (:func:`read_esc50_csv`); every listed wav on disk is probed.
    Writes clips.jsonl, quarantine.csv, missing.csv, unlisted.csv and prep.json (docs/manifests.md).
    """
    t0 = time.monotonic()
    r = find_esc50_root(root)
    entries = read_esc50_csv(r / "meta" / "esc50.csv")
    present, missing, unlisted, stray = _esc50_files(r, entries)
    names = {e.target: e.category for e in entries}
    listed = {
        f"audio/{e.filename}": {
            "v": FORMAT_VERSION, "path": f"audio/{e.filename}", "label": e.category,
            "class_id": e.target, "fold": e.fold, "esc10": e.esc10, "src_file": e.src_file,
            "take": e.take,
        }
        for e in present
    }  # fmt: skip
    missing_rows = [{"path": f"audio/{e.filename}", "label": e.category, "class_id": e.target,
                     "fold": e.fold} for e in missing]  # fmt: skip
    listed_per_fold = Counter(e.fold for e in entries)

    def describe(ok: dict[str, Any], bad: list[dict[str, str]]) -> ClipSet:
        clips = {"listed": len(entries), "ok": len(ok), "quarantined": len(bad),
                 "missing": len(missing), "skipped": len(stray),
                 "unlisted": len(unlisted)}  # fmt: skip
        return ClipSet(
            "esc50", r, {"meta": "meta/esc50.csv"}, [names.get(t) for t in range(max(names) + 1)],
            listed, ok, bad,
            {"missing.csv": (("path", "label", "class_id", "fold"), missing_rows),
             "unlisted.csv": (("path",), [{"path": f"audio/{n}"} for n in unlisted])},
            stray, clips, {str(k): {"listed": listed_per_fold[k]} for k in sorted(listed_per_fold)},
            {"esc10_clips": sum(1 for rel, row in listed.items() if rel in ok and row["esc10"])},
        )  # fmt: skip

    return prep_clip_set(
        "esc50", {"root": str(r)}, r, Path(out).resolve(), list(listed), describe, started=t0,
        label="prep esc50", workers=workers, progress=progress, timeout_s=timeout_s, shard=shard,
        probed=probed,
    )  # fmt: skip


def _esc50_files(r: Path, entries: list[Esc50Entry]) -> tuple[Any, Any, list[str], Any]:
    """The csv's entries on disk and not (each sorted by name), the unlisted files of
    ``r/audio`` and what else lies there (skipped.csv rows)."""
    audio = r / "audio"
    if not audio.is_dir():
        raise FileNotFoundError(
            f"{audio}: no audio folder (expected ROOT/audio/*.wav next to ROOT/meta/esc50.csv)"
        )
    # A listed name that is a dangling link, a FIFO or a folder is probed (and quarantined with
    # that reason), not reported missing; unlisted.csv names files, not sub-folders.
    on_disk: dict[str, bool] = {}  # name -> is a folder
    for d in os.scandir(audio):
        if not d.name.startswith("."):
            try:
                on_disk[d.name] = d.is_dir()
            except OSError:  # a link loop
                on_disk[d.name] = False
    listed = {e.filename for e in entries}
    present = sorted((e for e in entries if e.filename in on_disk), key=lambda e: e.filename)
    missing = sorted((e for e in entries if e.filename not in on_disk), key=lambda e: e.filename)
    unlisted = sorted(n for n, is_dir in on_disk.items() if n not in listed and not is_dir)
    stray = [
        replace(k, path=f"audio/{k.path}") for k in not_taken(audio, set(on_disk), takes="wav")
    ]
    return present, missing, unlisted, stray
