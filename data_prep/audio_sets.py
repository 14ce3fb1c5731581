"""What the labelled audio preps (``esc50``, ``audio-folder``) share: probing every file in worker
processes and the one writer of a clip set (:func:`write_clip_set`). Outputs: docs/manifests.md.

Design notes: docs/design/prep_tracking_cli.md, "data_prep/audio_sets.py".
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avssl import errors
from avssl.data.manifest import atomic_write_text, remove_stale_temps, write_manifest

from .outputs import csv_text
from .parallel import default_workers, imap_progress
from .scan import Skipped, write_skipped

#: Version of the manifest rows (the ``"v"`` field of every row); see docs/manifests.md.
FORMAT_VERSION = 1
ESC50_ROWS = 2000  # the official csv; a subset is accepted (and said so in the summary)
#: Per-file decode time limit (s); a file that takes longer is quarantined (decode-timeout).
AUDIO_TIMEOUT_S = 120.0
#: With ``workers=None`` a run starts at most one worker per this many files (fewer files run in
#: this process; the measurements behind it: design notes, "Constants").
FILES_PER_WORKER = 500


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: ``"2" < "10"``, ``"take2" < "take10"``.

    Digit runs sort before text; text compares case-insensitively; ties (``"02"`` vs ``"2"``,
    ``"A"`` vs ``"a"``) are broken by the plain string, so the order is total and stable.
    """
    parts = []
    for i, run in enumerate(_DIGITS.split(text)):
        if run:
            parts.append((0, int(run), "") if i % 2 else (1, 0, run.casefold()))
    return (tuple(parts), text)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_text(path, csv_text(columns, ([r.get(c) for c in columns] for r in rows)))


ProbeJob = tuple[str, str, float]  # (root, relpath, timeout_s)
ProbeResult = tuple[str, dict[str, Any] | None, str, str]  # (relpath, fields | None, reason, msg)


def _probe_one(job: ProbeJob) -> ProbeResult:
    """Probe ``root/relpath``: its manifest fields, or None with a quarantine reason and message.

    Runs in a worker process. Messages name the file by its path relative to the root, so that
    quarantine.csv does not depend on where the dataset lies.
    """
    from avssl.data.decode import probe_audio  # imports torch: only in the workers

    root, rel, timeout_s = job
    full = str(Path(root) / rel)
    try:
        info = probe_audio(full, timeout_s=timeout_s)
    except errors.MediaError as err:
        return rel, None, err.reason, str(err).replace(full, rel)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the run
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return rel, None, "error", f"{full}: {last}".replace(full, rel)
    peak = info.peak_dbfs
    return (
        rel,
        {
            "duration_s": round(info.duration_s, 6),
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "codec": info.codec,
            "audible": info.audible,
            "peak_dbfs": round(peak, 2) if math.isfinite(peak) else None,
        },
        "",
        "",
    )


def probe_audio_files(
    root: str | os.PathLike[str],
    relpaths: Sequence[str],
    *,
    workers: int | None = None,
    progress: bool = True,
    label: str = "probe audio",
    timeout_s: float = AUDIO_TIMEOUT_S,
) -> dict[str, list[Any]]:
    """Probe ``root/relpath`` for every relpath in worker processes: ``[fields, "", ""]`` or
    ``[None, reason, message]`` of each. ``workers=None``: one per CPU core (at most 8) and at
    most one per :data:`FILES_PER_WORKER` files (a worker costs 4-8 s to start)."""
    n = default_workers(workers)
    if workers is None:
        n = max(1, min(n, math.ceil(len(relpaths) / FILES_PER_WORKER)))
    jobs = [(str(root), rel, float(timeout_s)) for rel in relpaths]
    intro = f"{label}: {len(jobs)} files under {root} with {n} worker(s)"
    run = imap_progress(_probe_one, jobs, n, label, "files", progress=progress, intro=intro,
                        bad=lambda r: r[1] is None)  # fmt: skip
    return {rel: list(result) for rel, *result in run}


def prep_clip_set(
    command: str,
    params: dict[str, Any],
    root: Path,
    out: Path,
    relpaths: Sequence[str],
    describe: Callable[[dict[str, dict[str, Any]], list[dict[str, str]]], ClipSet],
    *,
    started: float,
    label: str,
    workers: int | None,
    progress: bool,
    timeout_s: float,
    shard: tuple[int, int] | None,
    probed: dict[str, Any] | None,
) -> AudioPrepResult:
    """Probe ``relpaths`` (:func:`probe_audio_files`) and write the clip set that
    ``describe(fields by path, quarantine rows)`` makes of them (:func:`write_clip_set`).

    For ``shard`` I/N probe only ``relpaths[I::N]`` and write the shard note instead
    (data_prep/shards.py); with ``probed`` (a merge: the shards' results by path), probe nothing
    and use those. ``started``: ``time.monotonic()`` at the start of the prep."""
    from . import shards

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)  # a killed run's half-written manifests
    if probed is not None:
        results = dict(zip(relpaths, shards.take_results(relpaths, probed), strict=True))
    else:
        t0 = time.monotonic()
        todo = shards.select(relpaths, shard)
        results = probe_audio_files(root, todo, workers=workers, progress=progress, label=label,
                                    timeout_s=timeout_s)  # fmt: skip
        if shard is not None:
            note = shards.write_note(out, command, shard, params, todo, [results[f] for f in todo])
            card = {"dataset": params.get("dataset", command), "shard": list(shard),
                    "note": str(note)}  # fmt: skip
            counts = {
                "probed": len(todo),
                "quarantined": sum(r[0] is None for r in results.values()),
            }
            return AudioPrepResult(out, counts, time.monotonic() - t0, card)
    ok = {f: r[0] for f, r in results.items() if r[0] is not None}
    bad = [{"path": f, "reason": r[1], "message": r[2]} for f, r in results.items() if r[0] is None]
    return write_clip_set(out, started, describe(ok, sorted(bad, key=lambda b: b["path"])))


@dataclass
class AudioPrepResult:
    """What a prep run did: its output folder, counts, wall time and the ``prep.json`` card."""

    out: Path
    counts: dict[str, int]  # ok / quarantined / missing / unlisted / unmatched / probed
    seconds: float
    card: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        c, n = self.card, self.counts
        if "shard" in c:  # a shard run: results in its note, no manifest yet
            i, k = c["shard"]
            return (
                f"{c['dataset']} shard {i}/{k}: probed {n.get('probed', 0)} files in "
                f"{self.seconds:.1f} s ({n.get('quarantined', 0)} bad) -> {c['note']}; when all "
                f"{k} shards are done run 'avssl-prep merge {self.out} SHARD_DIRS...'"
            )
        lines = [f"{c.get('dataset', 'audio')} clip manifest in {self.out / 'clips.jsonl'}"]
        parts = [f"{n.get('ok', 0)} ok", f"{n.get('quarantined', 0)} quarantined (quarantine.csv)"]
        if "missing" in n:
            parts.append(f"{n['missing']} listed but missing (missing.csv)")
        if "unlisted" in n:
            parts.append(f"{n['unlisted']} on disk but unlisted (unlisted.csv)")
        if "unmatched" in n:
            parts.append(f"{n['unmatched']} not matching the pattern (unmatched.csv)")
        if "skipped" in n:
            parts.append(f"{n['skipped']} other entries not taken (skipped.csv)")
        lines.append("  clips     " + ", ".join(parts))
        if c.get("dataset") == "esc50" and c.get("clips", {}).get("listed") != ESC50_ROWS:
            lines.append(
                f"  note      the csv lists {c.get('clips', {}).get('listed')} clips, "
                f"the official one {ESC50_ROWS}"
            )
        classes = c.get("classes", [])
        extra = f"; ESC-10 subset: {c['esc10_clips']} clips" if "esc10_clips" in c else ""
        lines.append(f"  classes   {len(classes)}{extra} (clips per class in prep.json)")
        folds = c.get("folds", {})
        rule = c.get("fold_rule")
        how = f" ({rule})" if rule else ""
        per = ", ".join(f"{k}: {v.get('clips', 0)}" for k, v in folds.items())
        lines.append(f"  folds     {len(folds)}{how}: {per}")
        lines.append(f"  probed    {n.get('probed', 0)} files in {self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass
class ClipSet:
    """A labelled audio set as found and probed: what :func:`write_clip_set` writes."""

    dataset: str
    root: Path
    about: dict[str, Any]  # prep.json fields after "root": where labels and folds come from
    classes: list[Any]  # class names by class id (None where ESC-50 lists no clip of an id)
    listed: dict[str, dict[str, Any]]  # every probed path -> its row without the probe fields
    ok: dict[str, dict[str, Any]]  # path -> probe fields, for those that probed well
    bad: list[dict[str, str]]  # quarantine.csv rows
    lists: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]]  # name -> (columns, rows)
    stray: list[Skipped]  # skipped.csv
    clips: dict[str, int]  # prep.json "clips"
    folds: dict[str, dict[str, Any]]  # prep.json "folds", less each fold's count of clips
    tail: dict[str, Any] = field(default_factory=dict)  # prep.json fields at the end


def write_clip_set(out: Path, started: float, s: ClipSet) -> AudioPrepResult:
    """Write ``s`` into ``out``: clips.jsonl (the rows of the clips that probed well, in path
    order), quarantine.csv, each of ``s.lists`` (missing.csv, unmatched.csv, ...), skipped.csv
    and the prep.json card; return the result (``started``: ``time.monotonic()`` at the start)."""
    rows = [{**fields, **s.ok[rel]} for rel, fields in s.listed.items() if rel in s.ok]
    write_manifest(out / "clips.jsonl", rows)
    _write_csv(out / "quarantine.csv", ("path", "reason", "message"), s.bad)
    counts = {"ok": len(rows), "quarantined": len(s.bad)}
    for name, (columns, items) in s.lists.items():
        _write_csv(out / name, columns, items)
        counts[name.removesuffix(".csv")] = len(items)
    counts["skipped"] = sum(write_skipped(out / "skipped.csv", s.stray).values())
    counts["probed"] = len(s.listed)
    per_fold = Counter(row["fold"] for row in rows)
    per_class = Counter(row["label"] for row in rows)
    card = {
        "format": "avssl-prep",
        "version": FORMAT_VERSION,
        "dataset": s.dataset,
        "root": str(s.root),
        **s.about,
        "classes": s.classes,
        "clips": s.clips,
        "quarantine_reasons": dict(sorted(Counter(b["reason"] for b in s.bad).items())),
        "folds": {k: {**f, "clips": per_fold[int(k)]} for k, f in s.folds.items()},
        "clips_per_class": {c: per_class[c] for c in s.classes if c is not None},
        **s.tail,
    }
    atomic_write_text(out / "prep.json", json.dumps(card, indent=1) + "\n")
    return AudioPrepResult(out, counts, time.monotonic() - started, card)
