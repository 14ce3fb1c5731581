"""``avssl-prep images ROOT --out OUT``: a folder of images -> an image manifest, in place.

Layouts (the images are found recursively; suffixes as ``avssl-eval`` reads them):

* ``ROOT/<class>/.../*.png``: ImageFolder -- the first folder under ROOT is the class (class ids
  in sorted order of the names);
* ``ROOT/<split>/<class>/...``, when every folder directly under ROOT is ``train``, ``val`` or
  ``test``: the split comes from the folder, the class from the next one;
* files directly in ROOT (alone or next to class folders) have no class (``class_id`` -1).

Output (``OUT``; the images stay where they are)::

    OUT/images.jsonl     one row per readable image, sorted by path
    OUT/quarantine.csv   path, reason, message of every file that could not be read
    OUT/prep.json        the card: root, layout, rules, classes, counts

Rows have the digits manifest's fields (``data_prep/images.py``): ``"v": 1``, ``path`` (POSIX,
relative to ``root`` in prep.json -- the trainer and the evaluations both resolve it there),
``class_id``, ``label``, ``split``, ``fold``.

* **split** -- the folder's, else ``test`` for a fraction ``--test-fraction`` of the images
  chosen by a hash of the path (``blake2b("{seed}:{path}")``), ``train`` for the rest: adding or
  removing an image never moves another one.
* **fold** -- ``1 + k % 5`` for the k-th image of its (class, split) in path order.

Every file is opened with the reader ``avssl-train`` and ``avssl-eval`` use
(:func:`avssl.data.image.read_image`); one that fails -- zero bytes (``empty``), a PNG or JPEG
cut short (``truncated``), not an image OpenCV can decode or will allocate (``unreadable``), not
8-bit (``not-8-bit``), or not a readable regular file at all (``broken-link``, ``link-loop``,
``not-a-file``, ``permission-denied``) -- goes to quarantine.csv with the reason, and the run
goes on. Writes are atomic; a file whose bytes would not change is not
rewritten, so a re-run on the same folder changes nothing (not even modification times, which
key the evaluations' feature caches).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avssl.data.manifest import remove_stale_temps
from data_prep import shards
from data_prep.images import _write_if_changed
from data_prep.parallel import Progress, default_workers, imap_jobs
from data_prep.scan import not_taken

__all__ = ["ImagesResult", "prep_images", "register_images"]

SPLITS = ("train", "val", "test")
NUM_FOLDS = 5


@dataclass(frozen=True)
class ImagesResult:
    """What :func:`prep_images` wrote."""

    out: Path
    manifest: Path
    counts: dict[str, Any]

    def summary(self) -> str:
        c = self.counts
        splits = ", ".join(f"{k} {v}" for k, v in c["per_split"].items())
        return (
            f"images: {c['images']} images of {c['classes']} classes ({splits}); "
            f"{c['quarantined']} quarantined (quarantine.csv), {c.get('skipped', 0)} other "
            f"entries not taken (skipped.csv); manifest {self.manifest}"
        )


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


def _suffixes() -> frozenset[str]:
    from avssl.data.suffixes import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


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
) -> ImagesResult | ShardResult:
    """Index the images under ``root`` into ``out`` (module docstring).

    ``shard`` I/N opens only every N-th image and writes a shard note instead of the manifest
    (a :class:`ShardResult`); ``checked`` is for ``avssl-prep merge``: the shards' results by
    path, used instead of opening the files (data_prep/shards.py)."""
    src = Path(root).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a folder of images")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction {test_fraction}: expected 0 <= f < 1")
    suffixes = _suffixes()
    files = sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*")  # any entry: a link, FIFO or folder named x.png is quarantined
        if p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not files:
        raise ValueError(f"{src}: no images ({', '.join(sorted(suffixes))}) found")
    top = {f.split("/")[0] for f in files if "/" in f}
    by_split = bool(top) and top <= set(SPLITS) and all("/" in f for f in files)
    layout = "split-folders" if by_split else ("class-folders" if top else "flat")

    def parts(rel: str) -> tuple[str | None, str]:
        """(split from the folder or None, class name or "")."""
        p = rel.split("/")
        if by_split:
            return p[0], (p[1] if len(p) > 2 else "")
        return None, (p[0] if len(p) > 1 else "")

    classes = sorted({c for c in (parts(f)[1] for f in files) if c})
    class_id = {c: i for i, c in enumerate(classes)}

    ok: dict[str, bool] = {}
    bad: list[tuple[str, str, str]] = []
    if checked is not None:
        got = [(f, *r) for f, r in zip(files, shards.take_results(files, checked), strict=True)]
    else:
        todo = shards.select(files, shard)
        bar = Progress("images", len(todo), "files")
        got = []
        for rel, reason, message in imap_jobs(
            _check, [(str(src), f) for f in todo], default_workers(workers)
        ):
            got.append((rel, reason, message))
            bar.step(note=f", {sum(1 for g in got if g[1])} quarantined")
        if shard is not None:
            by = {g[0]: [g[1], g[2]] for g in got}
            params = {"root": str(src), "test_fraction": test_fraction, "seed": seed,
                      "name": name}  # fmt: skip
            note = shards.write_note(Path(out), "images", shard, params, todo,
                                     [by[f] for f in todo])  # fmt: skip
            return ShardResult("images", shard, note, len(todo), sum(1 for g in got if g[1]))
    for rel, reason, message in got:
        ok[rel] = not reason
        if reason:
            bad.append((rel, reason, message))
    bad.sort()

    rows: list[dict[str, Any]] = []
    seen: Counter[tuple[int, str]] = Counter()
    for rel in files:
        if not ok[rel]:
            continue
        split, cls = parts(rel)
        if split is None:
            split = "test" if _hash_unit(f"{seed}:{rel}") < test_fraction else "train"
        cid = class_id.get(cls, -1)
        fold = 1 + seen[(cid, split)] % NUM_FOLDS
        seen[(cid, split)] += 1
        rows.append({"v": 1, "path": rel, "class_id": cid, "label": cls, "split": split,
                     "fold": fold})  # fmt: skip

    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o, recursive=False)  # a killed run's half-written manifests (not the images)
    manifest = o / "images.jsonl"
    _write_if_changed(manifest, "".join(json.dumps(r) + "\n" for r in rows).encode())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "reason", "message"))
    writer.writerows(bad)
    _write_if_changed(o / "quarantine.csv", buf.getvalue().encode())
    ours = {"images.jsonl", "quarantine.csv", "prep.json", "skipped.csv"}
    outs = {
        (o.resolve() / f).relative_to(src).as_posix()
        for f in ours
        if (o.resolve() / f).is_relative_to(src)
    }  # the manifests written in place are no strays
    stray = not_taken(src, set(files) | outs, takes="images")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "kind", "why"))
    writer.writerows((k.path, k.kind, k.why) for k in stray)
    _write_if_changed(o / "skipped.csv", buf.getvalue().encode())
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
        "dataset": name or src.name,
        "kind": "images",
        "root": str(src),
        "layout": layout,
        "split_rule": (
            "the top folder (train/val/test)"
            if by_split
            else f"test when blake2b('{seed}:' + path) / 2**64 < {test_fraction}, else train"
        ),
        "fold_rule": f"1 + k % {NUM_FOLDS}, k = the image's rank in its (class, split) by path",
        "classes": classes,
        "counts": counts,
    }
    _write_if_changed(o / "prep.json", (json.dumps(card, indent=2) + "\n").encode())
    return ImagesResult(o, manifest, counts)


def register_images(sub: argparse._SubParsersAction) -> None:
    """Add ``avssl-prep images`` to ``sub`` (an entry of ``data_prep.cli.SUBCOMMANDS``)."""
    p = sub.add_parser(
        "images",
        help="a folder of images (ImageFolder or flat) -> an image manifest, in place",
        description=(
            "Index the images under ROOT (ROOT/<class>/..., ROOT/<train|val|test>/<class>/..., "
            "or files directly in ROOT without a class) into OUT/images.jsonl (path relative to "
            "ROOT, class_id, label, split, fold) with OUT/prep.json (root, classes, counts) and "
            "OUT/quarantine.csv (files that would not read: empty, unreadable, not 8-bit). The "
            "images are not copied. Without split folders, a hash of the path puts "
            "--test-fraction of them in 'test'. Re-running changes nothing. For 'avssl-train "
            "rotation|relative-position|colorization|exemplar|simclr|mae|multi-task' and "
            "'avssl-eval linear | knn | retrieval'."
        ),
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="the folder of images")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the manifest goes")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of the images held out as 'test' when ROOT has no split folders "
        "(default 0.2; by a hash of the path, so it is stable as the folder grows)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash (default 0)")
    p.add_argument("--name", default=None, help="dataset name in reports (default: ROOT's name)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="W",
        help="processes that open the images (default: one per core, at most 8)",
    )
    p.add_argument(
        "--shard",
        type=shards.parse_shard,
        default=None,
        metavar="I/N",
        help=shards.SHARD_HELP.format(command="images"),
    )
    p.set_defaults(func=_run_images)


def _run_images(args: argparse.Namespace) -> int:
    try:
        result = prep_images(args.root, args.out, test_fraction=args.test_fraction,
                             seed=args.seed, name=args.name, workers=args.workers,
                             shard=args.shard)  # fmt: skip
    except (OSError, ValueError) as e:
        print(f"avssl-prep images: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
