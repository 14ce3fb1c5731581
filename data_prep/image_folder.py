"""``avssl-prep images ROOT --out OUT``: a folder of images -> an image manifest, in place.

Design notes: docs/design/prep_tracking_cli.md, "data_prep/image_folder.py".
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from avssl.data.manifest import remove_stale_temps
from avssl.data.suffixes import IMAGE_SUFFIXES

from . import shards
from .outputs import PrepResult, csv_text, json_bytes, jsonl_bytes, write_if_changed
from .parallel import default_workers, imap_progress
from .scan import not_taken

SPLITS = ("train", "val", "test")
NUM_FOLDS = 5


@dataclass
class ShardResult:
    """A shard run of ``avssl-prep images``: its note, files opened, how many would not read."""

    command: str
    shard: tuple[int, int]
    note: Path
    opened: int
    bad: int

    def summary(self) -> str:
        i, n = self.shard
        return (
            f"{self.command} shard {i}/{n}: opened {self.opened} files ({self.bad} bad) -> "
            f"{self.note}; when all {n} shards are done run "
            f"'avssl-prep merge {self.note.parent} SHARD_DIRS...'"
        )


def _truncation(data: bytes) -> str | None:
    """Why a PNG or JPEG stops early (None when it ends as its format says; other formats are
    not checked). OpenCV decodes a cut JPEG with a warning, grey below the cut, so a cut must be
    found before decoding: a PNG's chunks must run to its IEND chunk, a JPEG must hold its
    end-of-image marker (entropy-coded data never contains it: 0xFF is stuffed there)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if data[12:16] != b"IHDR" and len(data) >= 16:
            return None  # not a PNG past its signature: the decoder says "unreadable"
        pos = 8
        while pos + 8 <= len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            if not kind.isalpha():
                return None  # garbage, not a cut: left to the decoder
            if kind == b"IEND":
                return None
            if pos + 12 + length > len(data):
                name = kind.decode("latin-1")
                return (
                    f"PNG chunk '{name}' at byte {pos} needs {12 + length} bytes, the file ends "
                    f"at {len(data)}"
                )
            pos += 12 + length
        return f"PNG ends at byte {len(data)} without its IEND chunk"
    if data.startswith(b"\xff\xd8\xff") and b"\xff\xd9" not in data:
        return f"JPEG ends at byte {len(data)} without its end-of-image marker"
    return None


def _check(job: tuple[str, str]) -> tuple[str, str, str]:
    """``(rel, reason, message)`` for one file; reason ``""`` when it reads.

    Reasons: those of :func:`avssl.errors.check_file_entry` (``broken-link``, ``link-loop``,
    ``not-a-file``, ``permission-denied``; nothing is opened before it passes: a FIFO would
    block), ``empty``, ``truncated``, ``unreadable`` (OpenCV cannot decode it, or refuses its
    declared size) and ``not-8-bit``."""
    from avssl import errors

    root, rel = job
    path = Path(root, rel)
    try:
        st = errors.check_file_entry(path)
    except errors.MediaError as e:
        return rel, e.reason, str(e)
    if st.st_size == 0:
        return rel, "empty", "zero bytes"
    import cv2

    from avssl.data.image import read_image

    try:
        cut = _truncation(path.read_bytes())
        if cut:
            return rel, "truncated", f"{path}: {cut}"
        read_image(path)
    except ValueError as e:
        return rel, "not-8-bit" if "8-bit" in str(e) else "unreadable", str(e)
    except cv2.error as e:  # e.g. a header declaring more pixels than OpenCV accepts
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return rel, "unreadable", f"{path}: OpenCV refused it: {last}"
    except OSError as e:  # vanished or unreadable between the check and the read
        return rel, "unreadable", f"{path}: {e}"
    return rel, "", ""


def _hash_unit(text: str) -> float:
    return int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), 16) / 2**64


def prep_images(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    workers: int | None = 1,
    shard: tuple[int, int] | None = None,
    checked: dict[str, Any] | None = None,
) -> PrepResult | ShardResult:
    """Index the images under ``root`` into ``out`` (docs/manifests.md).

    ``shard`` I/N opens only every N-th image and writes a shard note instead of the manifest
    (a :class:`ShardResult`); ``checked`` is for ``avssl-prep merge``: the shards' results by
    path, used instead of opening the files (data_prep/shards.py)."""
    src = Path(root).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a folder of images")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction {test_fraction}: expected 0 <= f < 1")
    files, by_split = _find_images(src)
    if checked is not None:
        got = [(f, *r) for f, r in zip(files, shards.take_results(files, checked), strict=True)]
    else:
        todo = shards.select(files, shard)
        got = _open_images(src, todo, workers)
        if shard is not None:
            by = {g[0]: [g[1], g[2]] for g in got}
            params = {"root": str(src), "test_fraction": test_fraction, "seed": seed,
                      "name": name}  # fmt: skip
            note = shards.write_note(Path(out), "images", shard, params, todo,
                                     [by[f] for f in todo])  # fmt: skip
            return ShardResult("images", shard, note, len(todo), sum(1 for g in got if g[1]))
    bad = sorted(g for g in got if g[1])
    readable = {g[0] for g in got if not g[1]}
    classes = sorted({c for c in (_parts(f, by_split)[1] for f in files) if c})
    class_id = {c: i for i, c in enumerate(classes)}
    rows: list[dict[str, Any]] = []
    seen: Counter[tuple[int, str]] = Counter()
    for rel in files:
        if rel not in readable:
            continue
        split, cls = _parts(rel, by_split)
        if split is None:
            split = "test" if _hash_unit(f"{seed}:{rel}") < test_fraction else "train"
        cid = class_id.get(cls, -1)
        fold = 1 + seen[(cid, split)] % NUM_FOLDS
        seen[(cid, split)] += 1
        rows.append({"v": 1, "path": rel, "class_id": cid, "label": cls, "split": split,
                     "fold": fold})  # fmt: skip
    nested = any("/" in f for f in files)
    layout = "split-folders" if by_split else ("class-folders" if nested else "flat")
    split_rule = (
        "the top folder (train/val/test)"
        if by_split
        else f"test when blake2b('{seed}:' + path) / 2**64 < {test_fraction}, else train"
    )
    about = {"dataset": name or src.name, "kind": "images", "root": str(src), "layout": layout,
             "split_rule": split_rule}  # fmt: skip
    return _write_images(Path(out), src, files, rows, bad, classes, about)


def _find_images(src: Path) -> tuple[list[str], bool]:
    """The image paths under ``src`` (sorted) and whether the top folders are the splits."""
    files = sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*")  # any entry: a link, FIFO or folder named x.png is quarantined
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not files:
        raise ValueError(f"{src}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    top = {f.split("/")[0] for f in files if "/" in f}
    return files, bool(top) and top <= set(SPLITS) and all("/" in f for f in files)


def _parts(rel: str, by_split: bool) -> tuple[str | None, str]:
    """(split from the folder or None, class name or "")."""
    p = rel.split("/")
    if by_split:
        return p[0], (p[1] if len(p) > 2 else "")
    return None, (p[0] if len(p) > 1 else "")


def _open_images(src: Path, todo: list[str], workers: int | None) -> list[tuple[str, str, str]]:
    """``(path, reason, message)`` of each of ``todo``, opened in ``workers`` processes."""
    jobs = [(str(src), f) for f in todo]
    return list(
        imap_progress(_check, jobs, default_workers(workers), "images", "files", bad=itemgetter(1))
    )


def _write_images(
    o: Path,
    src: Path,
    files: list[str],
    rows: list[dict[str, Any]],
    bad: list[tuple[str, str, str]],
    classes: list[str],
    about: dict[str, Any],
) -> PrepResult:
    """images.jsonl, quarantine.csv, skipped.csv and prep.json into ``o``."""
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o, recursive=False)  # a killed run's half-written manifests (not the images)
    manifest = o / "images.jsonl"
    write_if_changed(manifest, jsonl_bytes(rows))
    write_if_changed(o / "quarantine.csv", csv_text(("path", "reason", "message"), bad).encode())
    ours = {"images.jsonl", "quarantine.csv", "prep.json", "skipped.csv"}
    outs = {
        (o.resolve() / f).relative_to(src).as_posix()
        for f in ours
        if (o.resolve() / f).is_relative_to(src)
    }  # the manifests written in place are no strays
    stray = not_taken(src, set(files) | outs, takes="images")
    skipped = ((k.path, k.kind, k.why) for k in stray)
    write_if_changed(o / "skipped.csv", csv_text(("path", "kind", "why"), skipped).encode())
    counts: dict[str, Any] = {
        "images": len(rows),
        "classes": len(classes),
        "quarantined": len(bad),
        "skipped": len(stray),
        "quarantine_reasons": dict(sorted(Counter(r for _, r, _ in bad).items())),
        "per_split": dict(sorted(Counter(r["split"] for r in rows).items())),
        "per_class": {str(k): v for k, v in sorted(Counter(r["label"] for r in rows).items())},
    }
    card = {
        "format": "avssl-prep",
        "version": 1,
        **about,
        "fold_rule": f"1 + k % {NUM_FOLDS}, k = the image's rank in its (class, split) by path",
        "classes": classes,
        "counts": counts,
    }
    write_if_changed(o / "prep.json", json_bytes(card))
    splits = ", ".join(f"{k} {v}" for k, v in counts["per_split"].items())
    text = (
        f"images: {len(rows)} images of {len(classes)} classes ({splits}); {len(bad)} "
        f"quarantined (quarantine.csv), {len(stray)} other entries not taken (skipped.csv); "
        f"manifest {manifest}"
    )
    return PrepResult(o, manifest, counts, text)
