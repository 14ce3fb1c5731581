"""``avssl-prep audio-folder``: any labelled folder of audio files -> a clip manifest.

The label (and optionally a fold key) of each file comes from its path through a template such
as ``"{label}_{speaker}_{take}"`` (:class:`PathPattern`); probing and the outputs are those of
every audio set (:mod:`data_prep.audio_sets`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from avssl.data.suffixes import AUDIO_SUFFIXES

from .audio_sets import (
    AUDIO_TIMEOUT_S,
    FORMAT_VERSION,
    AudioPrepResult,
    ClipSet,
    natural_key,
    prep_clip_set,
)
from .scan import not_taken

#: Row columns that pattern fields may not be named after.
_PROBE_COLUMNS = ("duration_s", "sample_rate", "channels", "codec", "audible", "peak_dbfs")
_RESERVED = frozenset({"v", "path", "label", "class_id", "fold", *_PROBE_COLUMNS})


def _hash_fold(relpath: str, num_folds: int) -> int:
    """Fold 1..K of a path: BLAKE2b-64 of its UTF-8 bytes modulo K (same on every machine)."""
    digest = hashlib.blake2b(relpath.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_folds + 1


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


_FIELD = re.compile(r"\{([^{}]*)\}")
_KINDS = {"": r"[^/_]+", "seg": r"[^/]+", "path": r".+"}


class PathPattern:
    """A template over a file's path relative to the dataset root, with named fields, matched
    against the whole relative path (POSIX ``/``, case-sensitive); the syntax: docs/manifests.md,
    "audio-folder patterns and folds".

    The suffix: when the pattern ends with one of ``suffixes`` it is matched against the full path;
    otherwise against the path without its audio suffix. When several splits are possible with
    ``:seg``/``:path``, earlier fields take the longest text that lets the rest match.
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
    """Folds 1..K of ``matched`` (relpath -> pattern fields): the distinct values of ``fold_field``
    in natural order cut into ``num_folds`` contiguous groups, or one fold per value; without it a
    hash of the path (BLAKE2b mod K), or fold 1 for all. Returns (fold of each path, the field
    values of each fold -- empty lists without ``fold_field`` --, rule: none / path-hash /
    field-values / field-groups)."""
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
    ``shard`` and ``probed``: as :func:`data_prep.esc50.prep_esc50`.

    Every file under ``root`` (recursive, hidden names skipped) whose name ends with one of
    ``suffixes`` (case-insensitive) is matched against ``pattern`` (:class:`PathPattern`); the
    others are listed in unmatched.csv. The label is the field ``label_field``; class ids number
    the labels in :func:`natural_key` order. Folds: :func:`assign_folds` (the rules:
    docs/manifests.md), fixed with the classes before probing, so a quarantined file changes no
    other file's fold or class id. ``dataset`` names the set in prep.json.
    """
    t0 = time.monotonic()
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    r = r.resolve()
    pat = PathPattern(pattern, suffixes)
    _check_fields(pat, label_field, fold_field, num_folds)
    files, matched, unmatched = _match_files(r, pat)
    labels = sorted({f[label_field] for f in matched.values()}, key=natural_key)
    class_id = {lab: i for i, lab in enumerate(labels)}
    fold_of, fold_values, rule = assign_folds(matched, fold_field, num_folds)

    listed = {
        rel: {"v": FORMAT_VERSION, "path": rel, "label": fields[label_field],
              "class_id": class_id[fields[label_field]], "fold": fold_of[rel], **fields}
        for rel, fields in matched.items()
    }  # fmt: skip
    folds: dict[str, dict[str, Any]] = {}
    for k, values in fold_values.items():
        folds[k] = {"values": values} if fold_field is not None else {}
        folds[k]["matched"] = sum(1 for f in fold_of.values() if f == int(k))
    about = {"pattern": pattern, "fields": pat.fields, "suffixes": list(pat.suffixes),
             "label_field": label_field, "fold_field": fold_field, "num_folds": num_folds,
             "fold_rule": rule}  # fmt: skip

    def describe(ok: dict[str, Any], bad: list[dict[str, str]]) -> ClipSet:
        clips = {"files": len(files), "matched": len(matched), "ok": len(ok),
                 "quarantined": len(bad), "unmatched": len(unmatched)}  # fmt: skip
        stray = not_taken(r, set(files), takes=f"audio files ({', '.join(pat.suffixes)})")
        return ClipSet(dataset, r, about, labels, listed, ok, bad,
                       {"unmatched.csv": (("path",), [{"path": rel} for rel in unmatched])},
                       stray, clips, folds)  # fmt: skip

    params = {"root": str(r), "pattern": pattern, "label_field": label_field,
              "fold_field": fold_field, "num_folds": num_folds, "suffixes": list(pat.suffixes),
              "dataset": dataset}  # fmt: skip
    return prep_clip_set(
        "audio-folder", params, r, Path(out).resolve(), list(matched), describe, started=t0,
        label=f"prep {dataset}", workers=workers, progress=progress, timeout_s=timeout_s,
        shard=shard, probed=probed,
    )  # fmt: skip


def _check_fields(
    pat: PathPattern, label_field: str, fold_field: str | None, num_folds: int | None
) -> None:
    """Refuse a label or fold field the pattern lacks, a field named like a manifest column, a
    fold field that is the label, and fewer than one fold."""
    pattern = pat.pattern
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


def _match_files(
    r: Path, pat: PathPattern
) -> tuple[list[str], dict[str, dict[str, str]], list[str]]:
    """The audio files under ``r``, the fields of those ``pat`` matches, the others; raises
    ValueError when none matches."""
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
            f"pattern {pat.pattern!r}{example}"
        )
    return files, matched, unmatched
