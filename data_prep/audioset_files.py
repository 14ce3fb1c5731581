"""Matching the media files of an AudioSet download to the listed segments, by name only
(groundwork for ``avssl-prep audioset``; the lists themselves: :mod:`data_prep.audioset_meta`).
:func:`match_files` reads the names of the common downloaders (see its docstring).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .audioset_meta import MEDIA_SUFFIXES, NUMBER, YTID, Segment, SegmentKey

#: A start time read from a file name matches a segment start within this many seconds.
START_TOLERANCE_S = 0.5


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
        if not YTID.fullmatch(ytid):
            continue
        if not rest:
            out.append(_Name(ytid, (), cut=bool(prefix)))  # Y{ytid}: audioset_tagging_cnn cuts
            continue
        if rest[0] != "_":
            continue
        fields = rest[1:].split("_")
        if len(fields) > 2 or not all(NUMBER.fullmatch(f) for f in fields):
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

    ``root`` is scanned recursively (symlinks followed, ``.`` names skipped) for files with a
    suffix in ``suffixes`` (case-insensitive). Without ``pattern`` the stem (folders ignored) is
    read with the built-in patterns::

        {ytid}_{start}_{end}   e.g. abc-_DEF123_30_40, abc-_DEF123_30.000_40.000,
                               abc-_DEF123_000030_000040, abc-_DEF123_30000_40000 (audiosetdl)
        {ytid}_{start}         e.g. abc-_DEF123_30, abc-_DEF123_000030 (VGGSound style)
        Y{ytid}, Y{ytid}_...   audioset_tagging_cnn's names: a 'Y' before the id, then as above
        {ytid}                 a whole video, or a pre-cut clip (see ``cut``)

    The YTID is the first 11 characters (ids hold ``_`` and ``-``). Times are plain numbers; an
    integer >= 1000 that fits no segment in seconds is read as milliseconds. An end must exceed
    the start but is not compared with the segment's end. Other stems are ``unmatched``.
    ``pattern`` instead matches the whole relative path without suffix, e.g.
    ``"clips/{ytid}/{start_ms}"``: fields ``{ytid}``, ``{start}`` / ``{end}`` (s),
    ``{start_ms}`` / ``{end_ms}``, ``{any}`` (within one path component); ``{{`` ``}}`` literal.

    A file fits its ytid's segment whose start is nearest the name's, within
    :data:`START_TOLERANCE_S`; a name without a start fits the ytid's only segment, else it is
    ``ambiguous`` (unless ``cut=False``: a whole video serves them all), as are several files
    fitting one segment (narrow ``suffixes``). ``cut`` is inferred from the name (a start or the
    'Y' prefix) unless given. ``missing``: segments not in ``found``, in list order.
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
        _place(rel, [nm for nm in names if nm.ytid in by_ytid], by_ytid, cut, result, candidates)
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


def _place(
    rel: str,
    names: list[_Name],
    by_ytid: dict[str, list[Segment]],
    cut: bool | None,
    result: MatchResult,
    candidates: dict[SegmentKey, list[FileMatch]],
) -> None:
    """File ``rel`` (read as ``names``, those of listed ytids): a candidate of the segment it
    fits, else unmatched or ambiguous in ``result`` (the rules of :func:`match_files`)."""
    if not names:
        result.unmatched.append(rel)
        return
    if len(names) > 1:
        keys = tuple(s.key for nm in names for s in by_ytid[nm.ytid])
        result.ambiguous.append(Ambiguity((rel,), keys, "the name reads as two YTIDs"))
        return
    name = names[0]
    is_cut = name.cut if cut is None else cut
    own = by_ytid[name.ytid]
    if not name.starts:
        if len(own) > 1 and (cut is None or is_cut):  # which segment is this clip?
            reason = f"no start in the name and {len(own)} segments of {name.ytid}"
            result.ambiguous.append(Ambiguity((rel,), tuple(s.key for s in own), reason))
            return
        for s in own:
            candidates.setdefault(s.key, []).append(FileMatch(rel, is_cut))
        return
    hits = _nearest(own, name.starts)
    if not hits:
        result.unmatched.append(rel)
    elif len(hits) > 1:
        reason = "the start in the name is as near to two segments"
        result.ambiguous.append(Ambiguity((rel,), tuple(s.key for s in hits), reason))
    else:
        candidates.setdefault(hits[0].key, []).append(FileMatch(rel, is_cut))
