"""Shards of the per-file preps (esc50, audio-folder, images): ``--shard I/N`` and merge.

The video preps (ucf101, folder, audioset) shard through their per-video records
(:func:`data_prep.videos.prep_videos`). The per-file preps share this simpler scheme: the slow part
is opening every file (probing an audio file, reading an image), and everything else -- scanning
the folder, labels, folds, splits -- is cheap and deterministic. So a shard run

1. scans and validates exactly as an unsharded run would,
2. opens only the files ``files[I::N]`` of the sorted list of files to open, and
3. writes ``OUT/{command}-shard-I-of-N.json`` (the command, its parameters, its file list and the
   results) and no manifest.

``avssl-prep merge OUT SHARD_DIRS...`` reads the N notes, checks that they come from one command
with the same parameters and that together they cover every file to open exactly once, then runs
the command once more with the shards' results in place of opening the files: the files it
writes are byte-identical to an unsharded run's (tests/test_prep_shards.py). The merge re-scans
the source folder, so it must see the dataset (as every shard did); it refuses when the files to
open are no longer the ones the shards opened.

``digits``, ``av-digits`` and ``synth`` are not sharded (see their ``--help``): the first two
slice one sheet / one small recording set in seconds, and synth renders a seeded built-in set in
about a minute and resumes clip by clip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from avssl.data.manifest import atomic_write_text

__all__ = [
    "SHARDED_COMMANDS",
    "ShardNote",
    "find_notes",
    "merge_notes",
    "parse_shard",
    "select",
    "take_results",
    "write_note",
]

T = TypeVar("T")

#: The per-file commands that take ``--shard`` and merge through this module.
SHARDED_COMMANDS = ("esc50", "audio-folder", "images")
_NOTE = re.compile(r"^(?P<cmd>[a-z0-9-]+)-shard-(?P<i>\d+)-of-(?P<n>\d+)\.json$")

ShardNote = dict[str, Any]  # {"command", "shard": [i, n], "params", "files", "results"}


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` (argparse type): ``(I, N)`` with ``0 <= I < N``."""
    import argparse

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


SHARD_HELP = (
    "open only every N-th file, from the I-th (0-based), e.g. one shard per machine, and write "
    "OUT/{command}-shard-I-of-N.json instead of the manifest; when all N are done, 'avssl-prep "
    "merge OUT SHARD_DIRS...' writes the same files as an unsharded run"
)


def select(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """Shard ``I/N``'s part of ``items``: every N-th from the I-th (all of them without shards)."""
    if shard is None:
        return list(items)
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: expected 0 <= I < N")
    return list(items[i::n])


def write_note(
    out: Path,
    command: str,
    shard: tuple[int, int],
    params: dict[str, Any],
    files: list[str],
    results: list[Any],
) -> Path:
    """Write shard ``I/N``'s note into ``out``; ``results[k]`` is what opening ``files[k]`` gave
    (JSON values). Returns the note's path."""
    i, n = shard
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{command}-shard-{i}-of-{n}.json"
    note = {"command": command, "shard": [i, n], "params": params, "files": files,
            "results": results}  # fmt: skip
    atomic_write_text(path, json.dumps(note) + "\n")
    return path


def find_notes(dirs: Sequence[Path]) -> list[Path]:
    """The per-file shard notes (``{command}-shard-I-of-N.json``) in ``dirs``, sorted."""
    found: set[Path] = set()
    for d in dirs:
        for f in Path(d).glob("*-shard-*-of-*.json"):
            m = _NOTE.match(f.name)
            if m and m["cmd"] in SHARDED_COMMANDS:
                found.add(f.resolve())
    return sorted(found)


def merge_notes(paths: Sequence[Path]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(command, params, results by file)`` from the notes of all N shards of one run.

    Raises ValueError when the notes mix commands, parameters or shard counts, or a shard appears
    twice with different contents, and FileNotFoundError when a shard is missing."""
    if not paths:
        raise FileNotFoundError("no shard notes ({command}-shard-I-of-N.json) found")
    notes: dict[int, ShardNote] = {}
    where: dict[int, Path] = {}
    for p in paths:
        note = json.loads(Path(p).read_text("utf-8"))
        i = int(note["shard"][0])
        if i in notes and notes[i] != note:
            raise ValueError(f"{p}: shard {i} appears twice with different contents ({where[i]})")
        notes[i], where[i] = note, Path(p)
    ref = notes[min(notes)]
    n = int(ref["shard"][1])
    for i, note in notes.items():
        if (note["command"], note["params"], note["shard"][1]) != (
            ref["command"],
            ref["params"],
            n,
        ):
            raise ValueError(
                f"{where[i]}: shard {i} comes from another command, other parameters or "
                f"another shard count than {where[min(notes)]}"
            )
    absent = [i for i in range(n) if i not in notes]
    if absent:
        raise FileNotFoundError(
            f"{ref['command']}: shards {absent} of {n} are missing (give their directories)"
        )
    results: dict[str, Any] = {}
    for i in range(n):
        for f, r in zip(notes[i]["files"], notes[i]["results"], strict=True):
            if f in results:
                raise ValueError(f"{f}: opened by two shards")
            results[f] = r
    return str(ref["command"]), dict(ref["params"]), results


def take_results(files: Sequence[str], results: dict[str, Any]) -> list[Any]:
    """The merged ``results`` in the order of ``files``, the files this run would open; raises
    ValueError when the shards opened other files (the folder changed since they ran)."""
    if set(files) != set(results):
        extra, lost = sorted(set(files) - set(results)), sorted(set(results) - set(files))
        raise ValueError(
            "the files to open are not the ones the shards opened (the folder changed?): "
            f"{len(extra)} new (e.g. {extra[:2]}), {len(lost)} gone (e.g. {lost[:2]}); "
            "run the shards again"
        )
    return [results[f] for f in files]
