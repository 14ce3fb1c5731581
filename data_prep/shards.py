"""Shards of the per-file preps (esc50, audio-folder, images): ``--shard I/N`` and merge
(byte-identical to an unsharded run; docs/manifests.md, "Resuming, shards and merging").

Design notes: docs/design/prep_tracking_cli.md, "data_prep/shards.py".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from avssl.data.manifest import atomic_write_text

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


def read_notes(
    paths: Sequence[Path], agree: Callable[[ShardNote], Any], what: str
) -> dict[int, tuple[ShardNote, Path]]:
    """The notes of all N shards of one run, by shard index, with their paths: the one check of
    both shard schemes (these notes, and the video preps' ``shard-I-of-N.json``).

    Raises ValueError when a shard appears twice with different contents or a note differs from
    the first in ``agree(note)`` (``what`` says in what) or in N, and FileNotFoundError when a
    shard is missing."""
    if not paths:
        raise FileNotFoundError("no shard notes ({command}-shard-I-of-N.json) found")
    notes: dict[int, tuple[ShardNote, Path]] = {}
    for p in paths:
        note = json.loads(Path(p).read_text("utf-8"))
        i = int(note["shard"][0])
        if i in notes and notes[i][0] != note:
            other = notes[i][1]
            raise ValueError(f"{p}: shard {i} appears twice with different contents ({other})")
        notes[i] = note, Path(p)
    ref, ref_path = notes[min(notes)]
    n = int(ref["shard"][1])
    for i, (note, path) in notes.items():
        if (agree(note), note["shard"][1]) != (agree(ref), n):
            raise ValueError(
                f"{path}: shard {i} comes from {what} or another shard count than {ref_path}"
            )
    absent = [i for i in range(n) if i not in notes]
    if absent:
        prefix = f"{ref['command']}: " if "command" in ref else ""
        raise FileNotFoundError(
            f"{prefix}shards {absent} of {n} are missing (give their directories)"
        )
    return notes


def merge_notes(paths: Sequence[Path]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(command, params, results by file)`` from the notes of all N shards of one per-file
    prep (:func:`read_notes` checks them)."""
    notes = read_notes(paths, itemgetter("command", "params"), "another command, other parameters")
    results: dict[str, Any] = {}
    for i in sorted(notes):
        note = notes[i][0]
        for f, r in zip(note["files"], note["results"], strict=True):
            if f in results:
                raise ValueError(f"{f}: opened by two shards")
            results[f] = r
    ref = notes[min(notes)][0]
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
