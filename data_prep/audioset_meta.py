"""AudioSet metadata: segment lists, the 527 label classes, the ontology, and local file matching.

Groundwork for ``avssl-prep audioset``: pure parsing, no media access (names only).

- :func:`read_segments` reads ``balanced_train_segments.csv`` / ``eval_segments.csv`` /
  ``unbalanced_train_segments.csv`` in the official form (three ``#`` lines, ``", "`` separators,
  the label list quoted) and in the re-saved forms found around the web (a plain header line
  ``YTID,start_seconds,end_seconds,positive_labels``, or no header at all).
- :func:`read_class_labels` reads ``class_labels_indices.csv`` (``index,mid,display_name``).
- :func:`read_ontology` reads ``ontology.json``; :func:`expand_classes` turns names or MIDs such
  as ``"Musical instrument"`` into the label classes of their ontology subtrees.
- :func:`match_files` pairs the segments with the media files of a user's download, whatever
  naming the downloader used (see its docstring for the names understood).

Every error names ``file:line`` and the bad value.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avssl.data.suffixes import AUDIO_SUFFIXES, VIDEO_SUFFIXES

__all__ = [
    "AUDIO_SUFFIXES",
    "MEDIA_SUFFIXES",
    "START_TOLERANCE_S",
    "VIDEO_SUFFIXES",
    "Ambiguity",
    "AudioSetClass",
    "FileMatch",
    "MatchResult",
    "OntologyNode",
    "Segment",
    "SegmentKey",
    "descendants",
    "expand_classes",
    "match_files",
    "read_class_labels",
    "read_ontology",
    "read_segments",
    "split_of_csv",
]


MEDIA_SUFFIXES = tuple(dict.fromkeys(VIDEO_SUFFIXES + AUDIO_SUFFIXES))  # videos and sound

#: A start time read from a file name matches a segment start within this many seconds.
START_TOLERANCE_S = 0.5

_YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_MID = re.compile(r"/[a-z]/[0-9A-Za-z_]+")
_LABELS = re.compile(r"/[a-z]/[0-9A-Za-z_]+(?:,/[a-z]/[0-9A-Za-z_]+)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_COLUMNS = ("ytid", "start_seconds", "end_seconds", "positive_labels")

SegmentKey = tuple[str, float]  # (ytid, start_s): a segment's identity within the lists


# --------------------------------------------------------------------------------------------
# Segment lists
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    ytid: str  # YouTube video id, 11 chars of [A-Za-z0-9_-]
    start_s: float  # the labelled 10-s (or shorter) segment within the video
    end_s: float
    labels: tuple[str, ...]  # positive label MIDs ("/m/09x0r", "/t/dd00088"), in file order

    @property
    def key(self) -> SegmentKey:
        return (self.ytid, self.start_s)


def _csv_fields(line: str) -> list[str]:
    """One CSV line, official (``", "`` separators) or plain; quoted fields may hold commas."""
    return [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]


def _check_columns(p: Path, n: int, fields: list[str]) -> None:
    if tuple(f.lower() for f in fields) != _COLUMNS:
        raise ValueError(
            f"{p}:{n}: header {fields!r}, expected YTID, start_seconds, end_seconds, "
            "positive_labels"
        )


def read_segments(
    path: str | Path, classes: Sequence[AudioSetClass] | None = None
) -> list[Segment]:
    """An AudioSet segment list -> segments, in file order.

    Accepted: the official ``#`` header lines (``# YTID, start_seconds, ...``; a declared
    ``num_segs=N`` / ``num_ytids=N`` is checked against the rows), a plain header line
    ``YTID,start_seconds,end_seconds,positive_labels`` (with or without spaces), or no header;
    ``", "`` or ``","`` separators; the label list quoted (``"/m/a,/m/b"``) or, unambiguously,
    unquoted as the trailing fields; CRLF; blank lines. Refused (ValueError naming ``file:line``
    and the value): a YTID that is not 11 chars of ``[A-Za-z0-9_-]``, a time that is not a plain
    non-negative number, ``start >= end``, no label, a label that is not a MID (or, with
    ``classes`` given, not one of them), a label twice in a row, and a second row with the
    same ``(ytid, start)``.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    known = {c.mid for c in classes} if classes is not None else None
    declared: dict[str, tuple[int, int]] = {}  # "num_segs" -> (value, line)
    out: list[Segment] = []
    seen: dict[SegmentKey, int] = {}
    header_allowed = True
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            for key, value in re.findall(r"(\w+)\s*=\s*(\d+)", body):
                declared[key] = (int(value), n)
            if body.split(",")[0].strip().lower() == "ytid":
                _check_columns(p, n, _csv_fields(body))
            continue
        fields = _segment_fields(line)
        if header_allowed and fields[0].lower() == "ytid":
            _check_columns(p, n, _csv_fields(line))
            header_allowed = False
            continue
        header_allowed = False
        out.append(_segment(p, n, fields, known))
        key = out[-1].key
        if key in seen:
            raise ValueError(
                f"{p}:{n}: segment {key[0]} at {key[1]:g} s already on line {seen[key]}"
            )
        seen[key] = n
    for name, count in (("num_segs", len(out)), ("num_ytids", len({s.ytid for s in out}))):
        if name in declared and declared[name][0] != count:
            value, n = declared[name]
            raise ValueError(f"{p}:{n}: header declares {name}={value} but the file holds {count}")
    return out


def _segment_fields(line: str) -> list[str]:
    """``[ytid, start, end, "label,label"]``: a fast path for the usual lines (the unbalanced list
    has two million), the csv module for anything else."""
    parts = line.split(",", 3)
    if len(parts) == 4 and '"' not in line[: len(line) - len(parts[3])]:
        rest = parts[3].strip()
        if '"' not in rest:
            return [parts[0].strip(), parts[1].strip(), parts[2].strip(), rest]
        if len(rest) >= 2 and rest[0] == rest[-1] == '"' and rest.count('"') == 2:
            return [parts[0].strip(), parts[1].strip(), parts[2].strip(), rest[1:-1]]
    return _csv_fields(line)


def _segment(p: Path, n: int, fields: list[str], known: set[str] | None) -> Segment:
    if len(fields) < 4:
        raise ValueError(f"{p}:{n}: expected 'YTID, start, end, \"labels\"', got {fields!r}")
    ytid, start, end = fields[:3]
    if not _YTID.fullmatch(ytid):
        raise ValueError(f"{p}:{n}: YTID {ytid!r} is not 11 characters of [A-Za-z0-9_-]")
    if not (_NUMBER.fullmatch(start) and _NUMBER.fullmatch(end)):
        bad = end if _NUMBER.fullmatch(start) else start
        raise ValueError(f"{p}:{n}: time {bad!r} is not a number of seconds")
    start_s, end_s = float(start), float(end)
    if not start_s < end_s:
        raise ValueError(f"{p}:{n}: start {start} is not before end {end}")
    text = fields[3] if len(fields) == 4 else ",".join(fields[3:])
    if _LABELS.fullmatch(text):  # the usual case, checked in one go
        labels = tuple(text.split(","))
    else:
        labels = tuple(x.strip() for x in text.split(",") if x.strip())
        if not labels:
            raise ValueError(f"{p}:{n}: segment {ytid} has no label")
        for label in labels:
            if not _MID.fullmatch(label):
                raise ValueError(f"{p}:{n}: label {label!r} is not a MID like '/m/09x0r'")
    if len(labels) > 1 and len(set(labels)) != len(labels):
        raise ValueError(f"{p}:{n}: a label is listed twice in {','.join(labels)!r}")
    if known is not None:
        for label in labels:
            if label not in known:
                raise ValueError(f"{p}:{n}: label {label!r} is not one of the label classes")
    return Segment(ytid, start_s, end_s, labels)


def split_of_csv(path: str | Path) -> str:
    """``"test"`` for an eval list (its file name contains "eval"), ``"train"`` otherwise
    (``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``, ...)."""
    return "test" if "eval" in Path(path).name.lower() else "train"


# --------------------------------------------------------------------------------------------
# Label classes and the ontology
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioSetClass:
    index: int  # 0-based position in the model's 527 outputs
    mid: str
    name: str  # display name, e.g. "Male speech, man speaking"


def read_class_labels(path: str | Path) -> list[AudioSetClass]:
    """``class_labels_indices.csv`` -> classes, position = index. Checks the indices run 0..N-1
    in order and that no MID or (case-insensitive) display name is listed twice."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig")
    out: list[AudioSetClass] = []
    mids: dict[str, int] = {}
    names: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        fields = _csv_fields(raw.strip())
        if not out and [f.lower() for f in fields] == ["index", "mid", "display_name"]:
            continue
        if len(fields) != 3 or not fields[0].isdigit():
            raise ValueError(f"{p}:{n}: expected 'index,mid,display_name', got {raw.strip()!r}")
        index, mid, name = int(fields[0]), fields[1], fields[2]
        if index != len(out):
            raise ValueError(f"{p}:{n}: class index {index}, expected {len(out)}")
        if not _MID.fullmatch(mid):
            raise ValueError(f"{p}:{n}: {mid!r} is not a MID like '/m/09x0r'")
        if not name:
            raise ValueError(f"{p}:{n}: class {mid} has no display name")
        if mid in mids:
            raise ValueError(f"{p}:{n}: MID {mid} already on line {mids[mid]}")
        if name.lower() in names:
            raise ValueError(
                f"{p}:{n}: display name {name!r} already on line {names[name.lower()]}"
            )
        mids[mid], names[name.lower()] = n, n
        out.append(AudioSetClass(index, mid, name))
    if not out:
        raise ValueError(f"{p}: no classes")
    return out


@dataclass(frozen=True)
class OntologyNode:
    id: str  # MID
    name: str
    child_ids: tuple[str, ...]
    restrictions: tuple[str, ...] = ()  # "abstract" (never a label), "blacklist" (not rated)
    description: str = ""
    citation_uri: str = ""
    positive_examples: tuple[str, ...] = ()  # "youtu.be/ID?start=S&end=E"

    @property
    def abstract(self) -> bool:
        return "abstract" in self.restrictions

    @property
    def blacklisted(self) -> bool:
        return "blacklist" in self.restrictions


def read_ontology(path: str | Path) -> dict[str, OntologyNode]:
    """``ontology.json`` -> ``{mid: node}`` in file order. Checks every node has an id, a name and
    a list of child ids, that no id repeats and that every child id is a node."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: not JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of nodes, got {type(data).__name__}")
    nodes: dict[str, OntologyNode] = {}
    for i, item in enumerate(data):
        where = f"{p}: node {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {item!r:.60}")
        for key in ("id", "name"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ValueError(f"{where}: {key!r} is {item.get(key)!r}, expected a string")
        where = f"{p}: node {i} ({item['id']})"
        lists = {}
        for key in ("child_ids", "restrictions", "positive_examples"):
            value = item.get(key, [])
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError(f"{where}: {key!r} is {value!r:.60}, expected a list of strings")
            lists[key] = tuple(value)
        if item["id"] in nodes:
            raise ValueError(f"{where}: id {item['id']} appears twice")
        nodes[item["id"]] = OntologyNode(
            item["id"],
            item["name"],
            lists["child_ids"],
            lists["restrictions"],
            str(item.get("description", "")),
            str(item.get("citation_uri", "")),
            lists["positive_examples"],
        )
    for node in nodes.values():
        for c in node.child_ids:
            if c not in nodes:
                raise ValueError(f"{p}: node {node.id} ({node.name!r}) has unknown child {c!r}")
    return nodes


def descendants(mid: str, ontology: Mapping[str, OntologyNode]) -> set[str]:
    """``mid`` and every node below it (the ontology is a DAG: some nodes have two parents;
    a cycle would not loop)."""
    out: set[str] = set()
    stack = [mid]
    while stack:
        m = stack.pop()
        if m in out:
            continue
        out.add(m)
        node = ontology.get(m)
        if node is not None:
            stack.extend(node.child_ids)
    return out


def expand_classes(
    names_or_mids: Sequence[str],
    ontology: Mapping[str, OntologyNode],
    classes: Sequence[AudioSetClass],
) -> list[str]:
    """Names or MIDs -> the sorted MIDs of the label classes in their ontology subtrees.

    Each item is a MID (``"/m/04szw"``) or a name, matched exactly but case-insensitively against
    the ontology names and the class display names. Its subtree is the node itself and all
    nodes below it; the result is the union over the items, restricted to ``classes``. E.g.
    ``["Musical instrument"]`` gives the instrument classes used by L3-Net and AVE-Net.
    An unknown item raises ValueError with the closest names, as does an item whose subtree
    holds no label class (e.g. a blacklisted leaf).
    """
    if isinstance(names_or_mids, str):
        raise TypeError(f"expand_classes takes a list of names, not the string {names_or_mids!r}")
    class_mids = {c.mid for c in classes}
    by_name: dict[str, str] = {}
    for mid, node in ontology.items():
        by_name.setdefault(node.name.lower(), mid)
    for c in classes:
        by_name.setdefault(c.name.lower(), c.mid)
    display = {n.name.lower(): n.name for n in ontology.values()}
    display.update({c.name.lower(): c.name for c in classes})
    out: set[str] = set()
    for item in names_or_mids:
        query = item.strip()
        if query.startswith("/"):
            if query not in ontology and query not in class_mids:
                mids = list(dict.fromkeys([*ontology, *sorted(class_mids)]))
                close = difflib.get_close_matches(query, mids, n=5)
                raise ValueError(f"{item!r} is not an AudioSet MID; close matches: {close}")
            mid = query
        else:
            found = by_name.get(query.lower())
            if found is None:
                close = difflib.get_close_matches(query.lower(), list(display), n=5, cutoff=0.6)
                raise ValueError(
                    f"{item!r} is not an AudioSet class or ontology name; close matches: "
                    f"{[display[c] for c in close]}"
                )
            mid = found
        subtree = descendants(mid, ontology) & class_mids
        if not subtree:
            raise ValueError(f"{item!r} ({mid}) has no label class in its subtree")
        out |= subtree
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Matching local files to segments
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileMatch:
    relpath: str  # POSIX path relative to the root given to match_files
    cut: bool  # True: the file is the segment (segment t=0 is file t=0); False: the whole video


@dataclass(frozen=True)
class Ambiguity:
    """Files that could not be paired one-to-one: one file that fits several segments, or
    several files that fit one segment. None of them is in ``found``."""

    relpaths: tuple[str, ...]
    keys: tuple[SegmentKey, ...]
    reason: str


@dataclass
class MatchResult:
    found: dict[SegmentKey, FileMatch] = field(default_factory=dict)
    missing: list[Segment] = field(default_factory=list)  # no file in found, in list order
    unmatched: list[str] = field(default_factory=list)  # media files that fit no segment
    ambiguous: list[Ambiguity] = field(default_factory=list)


@dataclass(frozen=True)
class _Name:
    ytid: str
    starts: tuple[float, ...]  # readings of the start, preferred first; () = no start in the name
    cut: bool  # inferred from the name


def _parse_stem(stem: str) -> list[_Name]:
    """The readings of a file stem under the built-in patterns (one, rarely two, or none)."""
    out = []
    for prefix in ("", "Y"):
        if prefix and not stem.startswith(prefix):
            continue
        body = stem[len(prefix) :]
        ytid, rest = body[:11], body[11:]
        if not _YTID.fullmatch(ytid):
            continue
        if not rest:
            out.append(_Name(ytid, (), cut=bool(prefix)))  # Y{ytid}: audioset_tagging_cnn cuts
            continue
        if rest[0] != "_":
            continue
        fields = rest[1:].split("_")
        if len(fields) > 2 or not all(_NUMBER.fullmatch(f) for f in fields):
            continue
        values = [float(f) for f in fields]
        if len(values) == 2 and not values[0] < values[1]:
            continue
        starts: tuple[float, ...] = (values[0],)
        if "." not in fields[0] and values[0] >= 1000:
            starts += (values[0] / 1000,)  # audiosetdl: {ytid}_{start_ms}_{end_ms}
        out.append(_Name(ytid, starts, cut=True))
    return out


_FIELDS = {
    "ytid": r"(?P<ytid>[A-Za-z0-9_-]{11})",
    "start": r"(?P<start>\d+(?:\.\d+)?)",
    "start_ms": r"(?P<start_ms>\d+)",
    "end": r"(?P<end>\d+(?:\.\d+)?)",
    "end_ms": r"(?P<end_ms>\d+)",
    "any": r"[^/]*",
}


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    parts = []
    seen: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as e:
        raise ValueError(f"file name pattern {pattern!r}: {e}") from None
    for literal, name, spec, conv in parsed:
        parts.append(re.escape(literal))
        if name is None:
            continue
        if name not in _FIELDS or spec or conv:
            raise ValueError(
                f"file name pattern {pattern!r}: unknown field {{{name}}}; "
                f"use {', '.join('{' + f + '}' for f in _FIELDS)}"
            )
        if name != "any" and name in seen:
            raise ValueError(f"file name pattern {pattern!r}: {{{name}}} appears twice")
        seen.add(name)
        parts.append(_FIELDS[name])
    if "ytid" not in seen:
        raise ValueError(f"file name pattern {pattern!r} has no {{ytid}}")
    if {"start", "start_ms"} <= seen:
        raise ValueError(f"file name pattern {pattern!r}: give {{start}} or {{start_ms}}, not both")
    return re.compile("".join(parts))


def _parse_with_pattern(rx: re.Pattern[str], rel_stem: str) -> list[_Name]:
    m = rx.fullmatch(rel_stem)
    if m is None:
        return []
    groups = m.groupdict()
    if groups.get("start") is not None:
        starts: tuple[float, ...] = (float(groups["start"]),)
    elif groups.get("start_ms") is not None:
        starts = (int(groups["start_ms"]) / 1000,)
    else:
        starts = ()
    return [_Name(groups["ytid"], starts, cut=bool(starts))]


def _media_files(root: Path, suffixes: Iterable[str]) -> list[str]:
    """POSIX paths relative to ``root`` of the media files below it, hidden ones skipped."""
    wanted = {s.lower() for s in suffixes}
    out = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # first path wins
        rel_dir = Path(dirpath).relative_to(root)
        # Folders named like media count too (and are searched): the prep quarantines them
        # (not-a-file) rather than reporting their segment missing. FIFOs and broken links are
        # in filenames already.
        for name in [*filenames, *dirnames]:
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                out.append((rel_dir / name).as_posix())
    return sorted(out)


def match_files(
    root: str | Path,
    segments: Iterable[Segment],
    *,
    pattern: str | None = None,
    suffixes: Iterable[str] = MEDIA_SUFFIXES,
    cut: bool | None = None,
) -> MatchResult:
    """Pair segments with the media files under ``root`` by their names (no decoding).

    ``root`` is scanned recursively (symlinks followed; names starting with ``.`` skipped) for
    files whose suffix is in ``suffixes`` (case-insensitive). Without ``pattern``, the file stem
    (name without suffix, the folders ignored) is read with the built-in patterns::

        {ytid}_{start}_{end}   e.g. abc-_DEF123_30_40, abc-_DEF123_30.000_40.000,
                               abc-_DEF123_000030_000040, abc-_DEF123_30000_40000 (audiosetdl)
        {ytid}_{start}         e.g. abc-_DEF123_30, abc-_DEF123_000030 (VGGSound style)
        Y{ytid}, Y{ytid}_...   audioset_tagging_cnn's names: a 'Y' before the id, then as above
        {ytid}                 a whole video, or a pre-cut clip (see ``cut``)

    The YTID is the first 11 characters (after the 'Y' when the rest still reads): ids contain
    ``_`` and ``-`` themselves, so names are never split on ``_`` before them. Times are plain
    numbers (zero-padding ignored). Start readings: a number is seconds; an integer of 1000 or
    more that matches no segment in seconds is then read as milliseconds (``30000`` -> 30 s).
    An end time must exceed the start but is not compared with the segment's end (downloaders
    often write start + 10). A name whose stem fits none of these is ``unmatched``.

    ``pattern`` replaces the built-in patterns with a template matched against the whole path
    relative to ``root`` (POSIX ``/``), without suffix, e.g. ``"{ytid}_{start}"`` or
    ``"clips/{ytid}/{start_ms}"``. Fields: ``{ytid}`` (11 chars), ``{start}`` / ``{end}``
    (seconds, int or decimal), ``{start_ms}`` / ``{end_ms}`` (integer ms), ``{any}`` (any text
    within one path component); ``{{`` and ``}}`` are literal braces.

    A file fits the segment of its ytid whose start is nearest to the start in its name, within
    :data:`START_TOLERANCE_S` (0.5 s). A name without a start fits the ytid's only segment; if the
    lists hold several segments of that ytid the file is ``ambiguous`` (unless ``cut=False``: a
    whole video then serves all of them). Several files fitting one segment (``x.mp4`` and
    ``x.wav``) make it ambiguous too: narrow ``suffixes``. ``cut`` of each match is inferred from
    the name (True when it carries a start or the 'Y' prefix, False for a bare ``{ytid}``) unless
    given. ``missing`` is every segment without an entry in ``found``, in list order.
    """
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    rx = _compile_pattern(pattern) if pattern is not None else None
    segs = list(segments)
    by_ytid: dict[str, list[Segment]] = {}
    for s in segs:
        by_ytid.setdefault(s.ytid, []).append(s)
    result = MatchResult()
    candidates: dict[SegmentKey, list[FileMatch]] = {}
    for rel in _media_files(r, suffixes):
        stem = rel.rsplit(".", 1)[0]
        names = _parse_with_pattern(rx, stem) if rx else _parse_stem(stem.rsplit("/", 1)[-1])
        names = [nm for nm in names if nm.ytid in by_ytid]
        if not names:
            result.unmatched.append(rel)
            continue
        if len(names) > 1:
            keys = tuple(s.key for nm in names for s in by_ytid[nm.ytid])
            result.ambiguous.append(Ambiguity((rel,), keys, "the name reads as two YTIDs"))
            continue
        name = names[0]
        is_cut = name.cut if cut is None else cut
        own = by_ytid[name.ytid]
        if not name.starts:
            if len(own) > 1 and (cut is None or is_cut):  # which segment is this clip?
                reason = f"no start in the name and {len(own)} segments of {name.ytid}"
                result.ambiguous.append(Ambiguity((rel,), tuple(s.key for s in own), reason))
                continue
            for s in own:
                candidates.setdefault(s.key, []).append(FileMatch(rel, is_cut))
            continue
        hits = _nearest(own, name.starts)
        if not hits:
            result.unmatched.append(rel)
        elif len(hits) > 1:
            reason = "the start in the name is as near to two segments"
            result.ambiguous.append(Ambiguity((rel,), tuple(s.key for s in hits), reason))
        else:
            candidates.setdefault(hits[0].key, []).append(FileMatch(rel, is_cut))
    for key, matches in candidates.items():
        if len(matches) == 1:
            result.found[key] = matches[0]
        else:
            rels = tuple(m.relpath for m in matches)
            result.ambiguous.append(Ambiguity(rels, (key,), f"{len(rels)} files fit one segment"))
    result.missing = [s for s in segs if s.key not in result.found]
    result.ambiguous.sort(key=lambda a: a.relpaths)
    return result


def _nearest(own: list[Segment], starts: tuple[float, ...]) -> list[Segment]:
    """The segments nearest to the first start reading that has any within the tolerance."""
    for start in starts:
        near = [(abs(s.start_s - start), s) for s in own]
        near = [(d, s) for d, s in near if d <= START_TOLERANCE_S]
        if near:
            best = min(d for d, _ in near)
            return [s for d, s in near if d == best]
    return []
