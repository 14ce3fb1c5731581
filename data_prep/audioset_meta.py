"""AudioSet metadata, by name only (no media access): segment lists in the official and the
re-saved forms (:func:`read_segments`), ``class_labels_indices.csv``, ``ontology.json`` and the
expansion of names such as "Musical instrument" into label classes (:func:`expand_classes`).
Every error names ``file:line`` and the bad value. Files to segments: :mod:`.audioset_files`.
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from avssl.data.suffixes import AUDIO_SUFFIXES, VIDEO_SUFFIXES

MEDIA_SUFFIXES = tuple(dict.fromkeys(VIDEO_SUFFIXES + AUDIO_SUFFIXES))  # videos and sound


YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_MID = re.compile(r"/[a-z]/[0-9A-Za-z_]+")
_LABELS = re.compile(r"/[a-z]/[0-9A-Za-z_]+(?:,/[a-z]/[0-9A-Za-z_]+)*")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
_COLUMNS = ("ytid", "start_seconds", "end_seconds", "positive_labels")

SegmentKey = tuple[str, float]  # (ytid, start_s): a segment's identity within the lists


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
    if not YTID.fullmatch(ytid):
        raise ValueError(f"{p}:{n}: YTID {ytid!r} is not 11 characters of [A-Za-z0-9_-]")
    if not (NUMBER.fullmatch(start) and NUMBER.fullmatch(end)):
        bad = end if NUMBER.fullmatch(start) else start
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
