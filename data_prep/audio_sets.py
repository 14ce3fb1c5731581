"""Labelled audio sets -> clip manifests: ESC-50 with its official folds, or any labelled folder.

Behind ``avssl-prep esc50`` and ``avssl-prep audio-folder``. Both find their files by name only,
then probe every file with :func:`avssl.data.decode.probe_audio` in worker processes (one code
path, :func:`probe_audio_files`): the duration, rate and channels come from decoding, and bad
files (not audio, truncated, undecodable) are *quarantined* with the error's reason code instead
of stopping the run. Silent clips are kept; their ``audible`` is false.

* :func:`prep_esc50` reads ``ROOT/meta/esc50.csv`` (validated; errors name ``file:line``) and
  keeps its folds exactly as given; listed files that are not on disk and files on disk that
  the csv does not list are reported, not fatal.
* :func:`prep_audio_folder` takes the label (and optionally a fold key) from each file's path
  through a template such as ``"{label}_{speaker}_{take}"`` (:class:`PathPattern`).

Outputs in ``OUT`` (documented in docs/manifests.md): ``clips.jsonl`` (one ``"v": 1`` row per
usable clip, sorted by path), ``quarantine.csv``, ``missing.csv`` + ``unlisted.csv`` (ESC-50) or
``unmatched.csv`` (folder), and the ``prep.json`` card. Every write is atomic and the bytes
depend only on the inputs (sorted rows, no timestamps): re-running gives identical files. There
is no resumption: probing is fast (FSDD's 2,000 clips: ~3 s on one core).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from avssl import errors
from avssl.data.manifest import atomic_write_text, remove_stale_temps, write_manifest
from avssl.data.suffixes import AUDIO_SUFFIXES
from data_prep.parallel import Progress, default_workers, imap_jobs
from data_prep.scan import not_taken, write_skipped

__all__ = [
    "AUDIO_SUFFIXES",
    "ESC50_COLUMNS",
    "FORMAT_VERSION",
    "AudioPrepResult",
    "assign_folds",
    "Esc50Entry",
    "PathPattern",
    "find_esc50_root",
    "natural_key",
    "prep_audio_folder",
    "prep_esc50",
    "probe_audio_files",
    "read_esc50_csv",
]

#: Version of the manifest rows (the ``"v"`` field of every row); see docs/manifests.md.
FORMAT_VERSION = 1
#: The columns of ESC-50's ``meta/esc50.csv`` (extra columns are allowed and ignored).
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = 5
ESC50_CLASSES = 50
ESC50_ROWS = 2000  # the official csv; a subset is accepted (and said so in the summary)
#: Per-file decode time limit (s); a file that takes longer is quarantined (decode-timeout).
AUDIO_TIMEOUT_S = 120.0
#: With ``workers=None`` a run starts at most one worker per this many files: a spawned worker
#: needs 4-8 s to start (avssl.data.decode imports torch and scipy), and one worker probes ~190
#: ESC-50 clips (5 s, 44.1 kHz) or ~700 FSDD clips per second; fewer files run in this process.
FILES_PER_WORKER = 500
#: Row columns that pattern fields may not be named after.
_PROBE_COLUMNS = ("duration_s", "sample_rate", "channels", "codec", "audible", "peak_dbfs")
_RESERVED = frozenset({"v", "path", "label", "class_id", "fold", *_PROBE_COLUMNS})


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
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


def _hash_fold(relpath: str, num_folds: int) -> int:
    """Fold 1..K of a path: BLAKE2b-64 of its UTF-8 bytes modulo K (same on every machine)."""
    digest = hashlib.blake2b(relpath.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_folds + 1


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV with its header even when there are no rows (read back by read_manifest)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else str(r.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _write_card(path: Path, card: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(card, indent=1) + "\n")


def _audio_files(root: Path, suffixes: Sequence[str]) -> list[str]:
    """POSIX paths (relative to ``root``) of the entries under it with one of ``suffixes``,
    case-insensitive; hidden files and folders (``.name``, e.g. macOS ``._x.wav``) skipped."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        # Any entry, not only regular files: a dangling link, a FIFO or a folder named like
        # audio is quarantined with its reason by the probe, not skipped without a trace.
        if p.name.lower().endswith(tuple(suffixes)):
            out.append(rel)
    return sorted(out)


def _norm_suffixes(suffixes: Iterable[str]) -> tuple[str, ...]:
    out = []
    for s in suffixes:
        s = s.strip().lower()
        if not s:
            continue
        out.append(s if s.startswith(".") else "." + s)
    if not out:
        raise ValueError("suffixes: at least one file suffix is needed, e.g. .wav")
    # Longest first, so that ".opus" is not cut as ".us" and ".tar.gz"-like suffixes win.
    return tuple(sorted(set(out), key=lambda s: (-len(s), s)))


# --------------------------------------------------------------------------------------------
# probing: one code path for every audio set
# --------------------------------------------------------------------------------------------
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
        return rel, None, err.reason, _relative_message(str(err), full, rel)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the run
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return rel, None, "error", _relative_message(f"{full}: {last}", full, rel)
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


def _relative_message(message: str, full: str, rel: str) -> str:
    return message.replace(full, rel)


def probe_audio_files(
    root: str | os.PathLike[str],
    relpaths: Sequence[str],
    *,
    workers: int | None = None,
    progress: bool = True,
    label: str = "probe audio",
    timeout_s: float = AUDIO_TIMEOUT_S,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Probe ``root/relpath`` for every relpath in worker processes.

    Returns ``(fields by relpath, quarantine rows)``; quarantine rows are
    ``{"path", "reason", "message"}`` sorted by path. ``workers=None``: one per CPU core (at most
    8) and at most one per :data:`FILES_PER_WORKER` files (a worker costs 4-8 s to start).
    """
    n = default_workers(workers)
    if workers is None:
        n = max(1, min(n, math.ceil(len(relpaths) / FILES_PER_WORKER)))
    jobs = [(str(root), rel, float(timeout_s)) for rel in relpaths]
    bar = Progress(label, len(jobs), "files") if progress and jobs else None
    if bar is not None:
        print(f"{label}: {len(jobs)} files under {root} with {n} worker(s)", file=bar.stream)
    ok: dict[str, dict[str, Any]] = {}
    bad: list[dict[str, str]] = []
    for rel, fields, reason, message in imap_jobs(_probe_one, jobs, n):
        if fields is None:
            bad.append({"path": rel, "reason": reason, "message": message})
        else:
            ok[rel] = fields
        if bar is not None:
            bar.step(note=f", {len(bad)} quarantined" if bad else "")
    bad.sort(key=lambda r: r["path"])
    return ok, bad


def _probe_or_shard(
    command: str,
    params: dict[str, Any],
    root: Path,
    out: Path,
    relpaths: Sequence[str],
    *,
    workers: int | None,
    progress: bool,
    label: str,
    timeout_s: float,
    shard: tuple[int, int] | None,
    probed: dict[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]] | AudioPrepResult:
    """:func:`probe_audio_files` for an unsharded run; for ``shard`` I/N, probe ``relpaths[I::N]``
    and write the shard note (data_prep/shards.py), returned as the run's result; with
    ``probed`` (a merge: the shards' results by path), probe nothing and use those."""
    from data_prep import shards

    if probed is not None:
        res = shards.take_results(relpaths, probed)
        ok = {f: r[0] for f, r in zip(relpaths, res, strict=True) if r[0] is not None}
        bad = [{"path": f, "reason": r[1], "message": r[2]}
               for f, r in zip(relpaths, res, strict=True) if r[0] is None]  # fmt: skip
        return ok, sorted(bad, key=lambda b: b["path"])
    t0 = time.monotonic()
    todo = shards.select(relpaths, shard)
    ok, bad = probe_audio_files(root, todo, workers=workers, progress=progress, label=label,
                                timeout_s=timeout_s)  # fmt: skip
    if shard is None:
        return ok, bad
    why = {b["path"]: b for b in bad}
    results = [[ok.get(f), why[f]["reason"] if f in why else "",
                why[f]["message"] if f in why else ""] for f in todo]  # fmt: skip
    note = shards.write_note(out, command, shard, params, todo, results)
    card = {"dataset": params.get("dataset", command), "shard": list(shard), "note": str(note)}
    counts = {"probed": len(todo), "quarantined": len(bad)}
    return AudioPrepResult(out, counts, time.monotonic() - t0, card)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
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


def _reasons(bad: Sequence[Mapping[str, str]]) -> dict[str, int]:
    return dict(sorted(Counter(r["reason"] for r in bad).items()))


# --------------------------------------------------------------------------------------------
# ESC-50
# --------------------------------------------------------------------------------------------
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
    Writes clips.jsonl, quarantine.csv, missing.csv, unlisted.csv and prep.json (module doc).
    """
    t0 = time.monotonic()
    r = find_esc50_root(root)
    meta = r / "meta" / "esc50.csv"
    entries = read_esc50_csv(meta)
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
    o = Path(out).resolve()
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o, recursive=False)  # a killed run's half-written manifests
    got = _probe_or_shard(
        "esc50", {"root": str(r)}, r, o, [f"audio/{e.filename}" for e in present],
        workers=workers, progress=progress, label="prep esc50", timeout_s=timeout_s,
        shard=shard, probed=probed,
    )  # fmt: skip
    if isinstance(got, AudioPrepResult):
        return got
    ok, bad = got

    names = {e.target: e.category for e in entries}
    classes: list[str | None] = [names.get(t) for t in range(max(names) + 1)]
    rows = []
    for e in present:
        rel = f"audio/{e.filename}"
        if rel in ok:
            rows.append({
                "v": FORMAT_VERSION, "path": rel, "label": e.category, "class_id": e.target,
                "fold": e.fold, "esc10": e.esc10, "src_file": e.src_file, "take": e.take,
                **ok[rel],
            })  # fmt: skip
    write_manifest(o / "clips.jsonl", rows)
    _write_csv(o / "quarantine.csv", ("path", "reason", "message"), bad)
    _write_csv(
        o / "missing.csv",
        ("path", "label", "class_id", "fold"),
        [{"path": f"audio/{e.filename}", "label": e.category, "class_id": e.target,
          "fold": e.fold} for e in missing],
    )  # fmt: skip
    _write_csv(o / "unlisted.csv", ("path",), [{"path": f"audio/{n}"} for n in unlisted])
    stray = [
        replace(k, path=f"audio/{k.path}") for k in not_taken(audio, set(on_disk), takes="wav")
    ]
    skipped = write_skipped(o / "skipped.csv", stray)

    listed_per_fold = Counter(e.fold for e in entries)
    ok_per_fold = Counter(row["fold"] for row in rows)
    ok_per_class = Counter(row["class_id"] for row in rows)
    counts = {
        "ok": len(rows),
        "quarantined": len(bad),
        "missing": len(missing),
        "skipped": sum(skipped.values()),
        "unlisted": len(unlisted),
        "probed": len(present),
    }
    card = {
        "format": "avssl-prep",
        "version": FORMAT_VERSION,
        "dataset": "esc50",
        "root": str(r),
        "meta": "meta/esc50.csv",
        "classes": classes,
        "clips": {"listed": len(entries), **{k: counts[k] for k in counts if k != "probed"}},
        "quarantine_reasons": _reasons(bad),
        "folds": {
            str(k): {"listed": listed_per_fold[k], "clips": ok_per_fold[k]}
            for k in sorted(listed_per_fold)
        },
        "clips_per_class": {
            name: ok_per_class[t] for t, name in enumerate(classes) if name is not None
        },
        "esc10_clips": sum(1 for row in rows if row["esc10"]),
    }
    _write_card(o / "prep.json", card)
    return AudioPrepResult(o, counts, time.monotonic() - t0, card)


# --------------------------------------------------------------------------------------------
# any labelled folder
# --------------------------------------------------------------------------------------------
_FIELD = re.compile(r"\{([^{}]*)\}")
_KINDS = {"": r"[^/_]+", "seg": r"[^/]+", "path": r".+"}


class PathPattern:
    """A template over a file's path relative to the dataset root, with named fields.

    Syntax (matched against the *whole* relative path, POSIX ``/``, case-sensitive):

    * ``{name}`` -- one or more characters other than ``/`` and ``_``;
    * ``{name:seg}`` -- one or more characters other than ``/`` (underscores allowed);
    * ``{name:path}`` -- one or more of any characters, ``/`` included;
    * any other text is literal (no wildcards; ``{`` and ``}`` only delimit fields);
    * a name used twice must match the same text both times (``{label}/{label}_{n}``);
      names starting with ``_`` (``{_}``, ``{_x:seg}``) match but are not kept, and may repeat.

    The suffix: when the pattern ends with one of ``suffixes`` (e.g. ``"{label}/{n}.wav"``) it is
    matched against the full path; otherwise against the path *without* its audio suffix (so
    ``"{label}_{speaker}_{take}"`` matches ``7_jackson_32.wav``). When several splits are possible
    with ``:seg``/``:path``, earlier fields take the longest text that lets the rest match.
    """

    def __init__(self, pattern: str, suffixes: Sequence[str] = AUDIO_SUFFIXES) -> None:
        if not pattern or pattern.startswith("/"):
            raise ValueError(f"pattern {pattern!r}: must be a non-empty path relative to ROOT")
        self.pattern = pattern
        self.suffixes = _norm_suffixes(suffixes)
        self.with_suffix = pattern.lower().endswith(self.suffixes)
        self.fields: list[str] = []  # kept names, in pattern order
        self._groups: list[tuple[str, str]] = []  # (regex group, kept name)
        first: dict[str, str] = {}  # kept name -> its regex group
        parts: list[str] = []
        n_groups = 0
        pos = 0
        for m in _FIELD.finditer(pattern):
            parts.append(self._literal(pattern[pos : m.start()], pos))
            pos = m.end()
            name, _, kind = m.group(1).partition(":")
            if not name.isidentifier():
                raise ValueError(
                    f"pattern {pattern!r}: field {{{m.group(1)}}} needs a name made of letters, "
                    "digits and _ (e.g. {label})"
                )
            if kind not in _KINDS:
                raise ValueError(
                    f"pattern {pattern!r}: field {{{m.group(1)}}} has kind {kind!r}; "
                    "expected {name}, {name:seg} or {name:path}"
                )
            if name in first and not name.startswith("_"):
                parts.append(f"(?P={first[name]})")
                continue
            group = f"g{n_groups}"
            n_groups += 1
            parts.append(f"(?P<{group}>{_KINDS[kind]})")
            if not name.startswith("_"):
                first[name] = group
                self.fields.append(name)
                self._groups.append((group, name))
        parts.append(self._literal(pattern[pos:], pos))
        self.regex = re.compile("".join(parts))

    def _literal(self, text: str, offset: int) -> str:
        for i, ch in enumerate(text):
            if ch in "{}":
                raise ValueError(
                    f"pattern {self.pattern!r}: unmatched {ch!r} at character {offset + i}"
                )
        return re.escape(text)

    def target(self, relpath: str) -> str:
        """The text the pattern is matched against (``relpath`` less its suffix, or all of it)."""
        if not self.with_suffix:
            low = relpath.lower()
            for s in self.suffixes:
                if low.endswith(s):
                    return relpath[: -len(s)]
        return relpath

    def match(self, relpath: str) -> dict[str, str] | None:
        """The kept fields of ``relpath`` (values are strings), or None when it does not match."""
        m = self.regex.fullmatch(self.target(relpath))
        if m is None:
            return None
        return {name: m.group(group) for group, name in self._groups}


def assign_folds(
    matched: Mapping[str, Mapping[str, str]], fold_field: str | None, num_folds: int | None
) -> tuple[dict[str, int], dict[str, list[str]], str]:
    """Folds 1..K of ``matched`` (relpath -> pattern fields), by the rules of
    :func:`prep_audio_folder`. Returns (fold of each path, the field values of each fold --
    empty lists without ``fold_field`` --, rule: none / path-hash / field-values / field-groups).
    """
    if fold_field is None:
        if num_folds is None or num_folds == 1:
            return dict.fromkeys(matched, 1), {"1": []}, "none"
        fold_of = {rel: _hash_fold(rel, num_folds) for rel in matched}
        return fold_of, {str(k): [] for k in range(1, num_folds + 1)}, "path-hash"
    values = sorted({f[fold_field] for f in matched.values()}, key=natural_key)
    if num_folds is None:
        groups = [[v] for v in values]
        rule = "field-values"
    else:
        if num_folds > len(values):
            raise ValueError(
                f"num_folds={num_folds} but field {{{fold_field}}} has only {len(values)} "
                f"distinct value(s): {', '.join(values[:10])}"
            )
        n = len(values)
        groups = [values[i * n // num_folds : (i + 1) * n // num_folds] for i in range(num_folds)]
        rule = "field-groups"
    fold_of_value = {v: k for k, group in enumerate(groups, 1) for v in group}
    fold_of = {rel: fold_of_value[f[fold_field]] for rel, f in matched.items()}
    return fold_of, {str(k): group for k, group in enumerate(groups, 1)}, rule


def prep_audio_folder(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    pattern: str,
    label_field: str = "label",
    fold_field: str | None = None,
    num_folds: int | None = None,
    suffixes: Sequence[str] = AUDIO_SUFFIXES,
    dataset: str = "audio-folder",
    workers: int | None = None,
    progress: bool = True,
    timeout_s: float = AUDIO_TIMEOUT_S,
    shard: tuple[int, int] | None = None,
    probed: dict[str, Any] | None = None,
) -> AudioPrepResult:
    """Any labelled audio set -> ``out/clips.jsonl``, labels and folds read from the paths.
    ``shard`` and ``probed``: as :func:`prep_esc50`.

    Every file under ``root`` (recursive, hidden names skipped) whose name ends with one of
    ``suffixes`` (case-insensitive) is matched against ``pattern`` (:class:`PathPattern`);
    files that do not match are listed in unmatched.csv and skipped. The label is the field
    ``label_field``; ``class_id`` numbers the distinct labels of the matched files in
    :func:`natural_key` order (``"2"`` before ``"10"``). Folds (1-based):

    * ``fold_field`` and ``num_folds=K``: the distinct values of that field, in natural order,
      cut into K contiguous groups of near-equal size (FSDD takes 0..49, K=5: 0-9 -> fold 1);
    * ``fold_field`` alone: one fold per distinct value (``"speaker"``: leave-one-speaker-out);
    * ``num_folds=K`` alone: by a hash of the relative path (BLAKE2b mod K; deterministic, but
      files from one source may land in different folds);
    * neither: every clip in fold 1 (no cross-validation split).

    Folds and classes are fixed from the matched files before probing, so a quarantined file
    changes no other file's fold or class id. ``dataset`` names the set in prep.json.
    """
    t0 = time.monotonic()
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    r = r.resolve()
    pat = PathPattern(pattern, suffixes)
    for what, name in (("label_field", label_field), ("fold_field", fold_field)):
        if name is not None and name not in pat.fields:
            raise ValueError(
                f"{what} {name!r} is not a field of pattern {pattern!r} "
                f"(fields: {', '.join(pat.fields) or 'none'})"
            )
    for name in pat.fields:
        if name in _RESERVED and not (name == "label" == label_field):
            raise ValueError(
                f"pattern {pattern!r}: field {{{name}}} has the name of a manifest column; "
                "rename it in the pattern"
            )
    if fold_field is not None and fold_field == label_field:
        raise ValueError(
            f"fold_field {fold_field!r} is the label field: every test fold would hold only "
            "classes never seen in training"
        )
    if num_folds is not None and num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")

    files = _audio_files(r, pat.suffixes)
    matched: dict[str, dict[str, str]] = {}
    unmatched: list[str] = []
    for rel in files:
        fields = pat.match(rel)
        if fields is None:
            unmatched.append(rel)
        else:
            matched[rel] = fields
    if not matched:
        example = (
            f"; e.g. {unmatched[0]!r} (matched as {pat.target(unmatched[0])!r})" if files else ""
        )
        raise ValueError(
            f"{r}: none of the {len(files)} audio file(s) ({', '.join(pat.suffixes)}) matches "
            f"pattern {pattern!r}{example}"
        )
    labels = sorted({f[label_field] for f in matched.values()}, key=natural_key)
    class_id = {lab: i for i, lab in enumerate(labels)}
    fold_of, fold_values, rule = assign_folds(matched, fold_field, num_folds)

    o = Path(out).resolve()
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o, recursive=False)  # a killed run's half-written manifests
    params = {"root": str(r), "pattern": pattern, "label_field": label_field,
              "fold_field": fold_field, "num_folds": num_folds, "suffixes": list(pat.suffixes),
              "dataset": dataset}  # fmt: skip
    got = _probe_or_shard(
        "audio-folder", params, r, o, list(matched), workers=workers, progress=progress,
        label=f"prep {dataset}", timeout_s=timeout_s, shard=shard, probed=probed,
    )  # fmt: skip
    if isinstance(got, AudioPrepResult):
        return got
    ok, bad = got
    rows = []
    for rel, fields in matched.items():  # sorted by path
        if rel in ok:
            lab = fields[label_field]
            rows.append({
                "v": FORMAT_VERSION, "path": rel, "label": lab, "class_id": class_id[lab],
                "fold": fold_of[rel], **fields, **ok[rel],
            })  # fmt: skip
    write_manifest(o / "clips.jsonl", rows)
    _write_csv(o / "quarantine.csv", ("path", "reason", "message"), bad)
    _write_csv(o / "unmatched.csv", ("path",), [{"path": rel} for rel in unmatched])
    skipped = write_skipped(
        o / "skipped.csv",
        not_taken(r, set(files), takes=f"audio files ({', '.join(pat.suffixes)})"),
    )

    matched_per_fold = Counter(fold_of.values())
    ok_per_fold = Counter(row["fold"] for row in rows)
    ok_per_class = Counter(row["label"] for row in rows)
    counts = {
        "ok": len(rows),
        "quarantined": len(bad),
        "unmatched": len(unmatched),
        "skipped": sum(skipped.values()),
        "probed": len(matched),
    }
    folds: dict[str, Any] = {}
    for k, values in fold_values.items():
        folds[k] = {"values": values} if fold_field is not None else {}
        folds[k].update(matched=matched_per_fold[int(k)], clips=ok_per_fold[int(k)])
    card = {
        "format": "avssl-prep",
        "version": FORMAT_VERSION,
        "dataset": dataset,
        "root": str(r),
        "pattern": pattern,
        "fields": pat.fields,
        "suffixes": list(pat.suffixes),
        "label_field": label_field,
        "fold_field": fold_field,
        "num_folds": num_folds,
        "fold_rule": rule,
        "classes": labels,
        "clips": {
            "files": len(files),
            "matched": len(matched),
            "ok": len(rows),
            "quarantined": len(bad),
            "unmatched": len(unmatched),
        },
        "quarantine_reasons": _reasons(bad),
        "folds": folds,
        "clips_per_class": {lab: ok_per_class[lab] for lab in labels},
    }
    _write_card(o / "prep.json", card)
    return AudioPrepResult(o, counts, time.monotonic() - t0, card)
