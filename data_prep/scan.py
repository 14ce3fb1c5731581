"""Finding the videos of a dataset by name (no decoding): UCF-101 in its published layout, or any
folder of videos. Design notes: docs/design/prep_tracking_cli.md, "data_prep/scan.py".
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avssl.data.decode import VIDEO_SUFFIXES
from avssl.data.suffixes import AUDIO_SUFFIXES

#: Folders of annotations, not of video frames (DAVIS ``Annotations/``, ``masks/``, ``gt/``):
#: a scan skips them with everything below, and names them in skipped.csv.
ANNOTATION_DIRS = frozenset({
    "annotations", "annotation", "masks", "mask", "gt", "groundtruth", "ground_truth", "labels",
    "segmentations", "segmentation", "annots", "trimaps",
})  # fmt: skip


# The official UCF-101 split lists (``ucfTrainTestlist/``), read as published: CRLF line ends,
# ``classInd.txt`` numbered from 1 (avssl labels are that number - 1), ``trainlistNN.txt`` lines
# ``Class/v_Class_gGG_cCC.avi N``, ``testlistNN.txt`` lines without label; the folder
# ``HandstandPushups/`` holds ``v_HandStandPushups_*`` (the class is the folder); split N tests
# on groups 7(N-1)+1 .. 7N and trains on the other 18.
_NAME = re.compile(r"^v_(?P<cls>[A-Za-z]+)_g(?P<group>\d{2})_c(?P<clip>\d{2})\.avi$")


@dataclass(frozen=True)
class UCFClip:
    relpath: str  # "Class/v_Class_gGG_cCC.avi", relative to the UCF-101 root
    class_name: str  # the folder, as in classInd.txt
    label: int  # 0-based
    group: int  # 1..25: clips of one group come from one long video (never split across sets)
    clip: int


def parse_clip_path(relpath: str) -> tuple[str, int, int]:
    """``"Class/v_Class_g08_c01.avi"`` -> ``("Class", 8, 1)``; ValueError names the bad path."""
    parts = relpath.strip().replace("\\", "/").split("/")
    if len(parts) != 2:
        raise ValueError(f"UCF-101 clip path {relpath!r}: expected 'Class/v_Class_gGG_cCC.avi'")
    folder, name = parts
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"UCF-101 clip path {relpath!r}: file name is not v_Class_gGG_cCC.avi")
    if m["cls"].lower() != folder.lower():  # HandstandPushups/v_HandStandPushups_*: case only
        raise ValueError(f"UCF-101 clip path {relpath!r}: folder {folder!r} vs file {m['cls']!r}")
    return folder, int(m["group"]), int(m["clip"])


def _lines(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_class_index(path: str | Path) -> list[str]:
    """``classInd.txt`` -> class names, position = 0-based label. Checks the numbering 1..N."""
    p = Path(path)
    names: list[str] = []
    for n, line in _lines(p):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{p}:{n}: expected 'N ClassName', got {line!r}")
        if int(fields[0]) != len(names) + 1:
            raise ValueError(f"{p}:{n}: class number {fields[0]}, expected {len(names) + 1}")
        names.append(fields[1])
    if not names:
        raise ValueError(f"{p}: no classes")
    return names


def read_split_list(path: str | Path, classes: list[str]) -> list[UCFClip]:
    """A train or test list -> clips. A train line's label must match its folder's class."""
    p = Path(path)
    index = {c: i for i, c in enumerate(classes)}
    out: list[UCFClip] = []
    seen: set[str] = set()
    for n, line in _lines(p):
        fields = line.split()
        if len(fields) not in (1, 2):
            raise ValueError(f"{p}:{n}: expected 'Class/v_...avi [label]', got {line!r}")
        try:
            folder, group, clip = parse_clip_path(fields[0])
        except ValueError as e:
            raise ValueError(f"{p}:{n}: {e}") from None
        if folder not in index:
            raise ValueError(f"{p}:{n}: class {folder!r} is not in classInd")
        label = index[folder]
        if len(fields) == 2 and int(fields[1]) - 1 != label:
            raise ValueError(
                f"{p}:{n}: label {fields[1]} but {folder!r} is class {label + 1} in classInd"
            )
        if fields[0] in seen:
            raise ValueError(f"{p}:{n}: {fields[0]} is listed twice")
        seen.add(fields[0])
        out.append(UCFClip(fields[0], folder, label, group, clip))
    return out


def read_splits(list_dir: str | Path) -> tuple[list[str], dict[int, dict[str, list[UCFClip]]]]:
    """Read ``classInd.txt`` and every ``trainlist0N.txt`` / ``testlist0N.txt`` present.

    Returns ``(classes, {split: {"train": [...], "test": [...]}})``. A split whose train and test
    lists share a clip, or share a group (which would leak one long video into both), is refused.
    """
    d = Path(list_dir)
    classes = read_class_index(d / "classInd.txt")
    splits: dict[int, dict[str, list[UCFClip]]] = {}
    for k in (1, 2, 3):
        train_p, test_p = d / f"trainlist0{k}.txt", d / f"testlist0{k}.txt"
        if not train_p.exists() and not test_p.exists():
            continue
        if not (train_p.exists() and test_p.exists()):
            missing = test_p if train_p.exists() else train_p
            raise FileNotFoundError(f"{missing}: split {k} needs both its train and test list")
        train, test = read_split_list(train_p, classes), read_split_list(test_p, classes)
        shared = {c.group for c in train} & {c.group for c in test}
        if shared:
            raise ValueError(f"{d}: split {k} has groups {sorted(shared)} in both train and test")
        splits[k] = {"train": train, "test": test}
    if not splits:
        raise FileNotFoundError(f"{d}: no trainlist0N.txt / testlist0N.txt found")
    return classes, splits


@dataclass(frozen=True)
class Skipped:
    """A file (or a whole folder) a scan did not take, and why; written to ``skipped.csv``."""

    path: str  # relative to the root; a folder's ends with "/"
    kind: str  # hidden, annotation, image, audio, not-video, frame-folder-extra, ...
    why: str


@dataclass(frozen=True)
class Entry:
    """One video to process. ``splits`` maps a split name ("1", "2", "3" for UCF-101, "all"
    for a folder) to the video's role in it ("train" or "test")."""

    relpath: str  # POSIX path relative to the dataset root
    class_name: str  # "" when the video has no class (a file directly in a folder's root)
    class_id: int  # 0-based; -1 without a class
    group: int  # UCF-101 group (clips of one group come from one long video); -1 elsewhere
    splits: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # dataset-specific, copied into the row


@dataclass
class Scan:
    dataset: str  # "ucf101", "folder", "audioset" or "synth"
    root: str  # absolute
    classes: list[str]
    entries: list[Entry]  # sorted by relpath
    split_names: list[str]  # the splits whose pretext manifests are written
    missing: list[str] = field(default_factory=list)  # listed, not on disk
    unlisted: list[str] = field(default_factory=list)  # on disk, in no list (not processed)
    class_names: dict[str, str] = field(default_factory=dict)  # id -> display name (AudioSet)
    skipped: list[Skipped] = field(default_factory=list)  # not taken, with the reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scan:
        d = dict(d)
        d["entries"] = [Entry(**e) for e in d["entries"]]
        d["skipped"] = [Skipped(**k) for k in d.get("skipped", [])]
        return cls(**d)

    def skipped_counts(self) -> dict[str, int]:
        """How many skipped entries of each kind."""
        return dict(Counter(k.kind for k in self.skipped))


def _ucf_root(root: Path) -> Path:
    """``root`` itself, or its ``UCF-101`` sub-folder when a user points at the folder above."""
    return root / "UCF-101" if (root / "UCF-101").is_dir() else root


def scan_ucf101(root: str | Path, splits_dir: str | Path, split: str = "1") -> Scan:
    """Entries for every clip that the official lists name and that exists under ``root``: the
    ``.avi`` file, or a frame folder of that name without the suffix (mmaction2 rawframes,
    ``<Class>/v_<Class>_gXX_cYY/img_00001.jpg``).

    ``split`` is "1", "2", "3" or "all": which splits get pretext manifests. Every listed clip is
    processed whatever ``split`` says (the video manifest records its role in all three splits),
    so a later run with another ``split`` reuses the work.
    """
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: UCF-101 root is not a directory")
    r = _ucf_root(r).resolve()
    classes, splits = read_splits(splits_dir)
    wanted = [str(k) for k in sorted(splits)] if split == "all" else [split]
    for s in wanted:
        if s not in {str(k) for k in splits}:
            raise ValueError(f"{splits_dir}: split {s} has no train/test lists")
    roles: dict[str, dict[str, str]] = {}
    info: dict[str, tuple[str, int, int]] = {}
    for k, sets in splits.items():
        for role, clips in sets.items():
            for c in clips:
                roles.setdefault(c.relpath, {})[str(k)] = role
                info[c.relpath] = (c.class_name, c.label, c.group)
    # Compare case-insensitively: the lists and the folders disagree in case in places
    # (HandstandPushups/v_HandStandPushups_*), and some file systems fold case.
    # Every entry, not only regular files: a listed clip that is a dangling link, a FIFO or a
    # folder is quarantined with that reason by the prep, not reported as missing.
    on_disk = {p.relative_to(r).as_posix(): p for p in r.glob("*/*")}
    by_lower = {k.lower(): k for k in on_disk}
    entries: list[Entry] = []
    missing: list[str] = []
    found: set[str] = set()
    for rel in sorted(roles):
        disk = by_lower.get(rel.lower())
        if disk is None:  # mmaction2 rawframes: Class/v_X_g01_c01/img_00001.jpg for the .avi
            stem = by_lower.get(rel.lower().rsplit(".", 1)[0])
            disk = stem if stem is not None and on_disk[stem].is_dir() else None
        if disk is None:
            missing.append(rel)
            continue
        found.add(disk)
        cls, label, group = info[rel]
        entries.append(Entry(disk, cls, label, group, dict(sorted(roles[rel].items()))))
    unlisted = []
    skipped = []
    for rel in sorted(on_disk):
        if rel in found:
            continue
        if on_disk[rel].name.startswith("."):
            skipped.append(Skipped(rel, "hidden", "hidden file"))
            continue
        try:
            parse_clip_path(rel)
        except ValueError:
            if Path(rel).suffix.lower() not in VIDEO_SUFFIXES:
                skipped.append(Skipped(rel, "not-video", "not a UCF-101 clip name nor a video "
                                       "suffix"))  # fmt: skip
                continue
        unlisted.append(rel)
    return Scan("ucf101", str(r), classes, entries, wanted, missing, unlisted, skipped=skipped)


def scan_folder(root: str | Path) -> Scan:
    """Every video under ``root`` (recursively), and every file it does not take, with why
    (docs/manifests.md, "What is a video" and ``skipped.csv``).

    Videos are files with a video suffix (:data:`VIDEO_SUFFIXES`, animated GIFs included) and frame
    folders (a folder directly holding 2+ numbered images, :mod:`avssl.data.frame_folder`). Every
    entry named like a video counts, not only regular files: a dangling link, a FIFO or a folder
    named ``x.mp4`` is quarantined by the prep with its reason instead of vanishing. The class of a
    video is its first-level sub-folder (none directly in ``root``); every video is "train" of the
    split "all".
    """
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"{r}: not a directory")
    r = r.resolve()
    rels, skipped = _find_videos(r)
    classes = sorted({rel.split("/")[0] for rel in rels if "/" in rel})
    index = {c: i for i, c in enumerate(classes)}
    entries = []
    for rel in rels:
        cls = rel.split("/")[0] if "/" in rel else ""
        entries.append(Entry(rel, cls, index.get(cls, -1), -1, {"all": "train"}))
    return Scan("folder", str(r), classes, entries, ["all"], skipped=skipped)


def _find_videos(r: Path) -> tuple[list[str], list[Skipped]]:
    """The videos under ``r`` (files and frame folders, sorted) and what is not taken, with why
    (the rules of :func:`scan_folder`)."""
    from avssl.data.frame_folder import IMAGE_SUFFIXES, looks_like_frame_folder

    rels: list[str] = []
    frame_dirs: set[str] = set()
    skipped: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(r, onerror=_raise):
        d = Path(dirpath)
        rel_d = d.relative_to(r).as_posix()
        prefix = "" if rel_d == "." else rel_d + "/"
        keep = []
        for name in sorted(dirnames):
            sub = d / name
            if name.lower().endswith(VIDEO_SUFFIXES):
                rels.append(prefix + name)  # quarantined as "not a file", with its reason
                keep.append(name)  # and still searched
            elif name.startswith("."):
                skipped.append(
                    Skipped(prefix + name + "/", "hidden", "hidden folder, not searched")
                )
            elif name.lower() in ANNOTATION_DIRS:
                n = sum(len(f) for _, _, f in os.walk(sub))
                skipped.append(Skipped(prefix + name + "/", "annotation", f"annotation folder "
                                       f"({n} file{'s' * (n != 1)}), not frames"))  # fmt: skip
            elif looks_like_frame_folder(sub):
                rels.append(prefix + name)
                frame_dirs.add(prefix + name)
                keep.append(name)
            else:
                keep.append(name)
        dirnames[:] = keep
        is_frames = rel_d in frame_dirs
        for name in sorted(filenames):
            rel = prefix + name
            suffix = os.path.splitext(name)[1].lower()
            if is_frames:
                if suffix not in IMAGE_SUFFIXES and name not in ("fps.txt", "seqinfo.ini"):
                    what = f"in a frame folder, not a frame ({suffix or 'no suffix'})"
                    skipped.append(Skipped(rel, "frame-folder-extra", what))
                continue
            if name.startswith("."):
                skipped.append(Skipped(rel, "hidden", "hidden file"))
            elif suffix in VIDEO_SUFFIXES:
                rels.append(rel)
            elif suffix in IMAGE_SUFFIXES:
                skipped.append(Skipped(rel, "image", "a single image, not a video (a folder "
                                       "of 2+ numbered images is one)"))  # fmt: skip
            elif suffix in AUDIO_SUFFIXES:
                skipped.append(Skipped(rel, "audio", "sound only, no pictures"))
            else:
                skipped.append(Skipped(rel, "not-video", f"not a video by suffix "
                                       f"({suffix or 'none'})"))  # fmt: skip
    rels.sort()
    skipped.sort(key=lambda k: k.path)
    return rels, skipped


def not_taken(root: Path, taken: set[str], *, takes: str) -> list[Skipped]:
    """Every entry under ``root`` (recursively) that a prep of ``takes`` (e.g. "audio files")
    neither took nor reported elsewhere (``taken``: relative POSIX paths), with why: the
    ``skipped.csv`` of the audio and image preps. Hidden folders are one row, not searched."""
    from avssl.data.frame_folder import IMAGE_SUFFIXES

    r = Path(root)
    out: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(r, onerror=_raise):
        rel_d = Path(dirpath).relative_to(r).as_posix()
        prefix = "" if rel_d == "." else rel_d + "/"
        for name in sorted(dirnames):
            if name.startswith(".") and prefix + name not in taken:
                out.append(Skipped(prefix + name + "/", "hidden", "hidden folder, not searched"))
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and prefix + d not in taken]
        for name in sorted(filenames):
            rel = prefix + name
            if rel in taken:
                continue
            suffix = os.path.splitext(name)[1].lower()
            kind = (
                "hidden" if name.startswith(".")
                else "video" if suffix in VIDEO_SUFFIXES
                else "audio" if suffix in AUDIO_SUFFIXES
                else "image" if suffix in IMAGE_SUFFIXES
                else "not-media"
            )  # fmt: skip
            why = {
                "hidden": "hidden file",
                "not-media": f"not media by suffix ({suffix or 'none'})",
            }.get(kind, f"{kind} file; this prep takes {takes}")
            out.append(Skipped(rel, kind, why))
    out.sort(key=lambda k: k.path)
    return out


def write_skipped(path: Path, skipped: list[Skipped]) -> dict[str, int]:
    """Write ``skipped.csv`` (path, kind, why); return the counts per kind."""
    from avssl.data.manifest import write_manifest

    write_manifest(path, [{"path": k.path, "kind": k.kind, "why": k.why} for k in skipped])
    return dict(Counter(k.kind for k in skipped))


def _raise(e: OSError) -> None:
    raise e


def scan_audioset(
    csvs: list[str | Path],
    videos_root: str | Path,
    *,
    classes: list[str] | None = None,
    labels_csv: str | Path | None = None,
    ontology_json: str | Path | None = None,
    pattern: str | None = None,
    cut: bool | None = None,
) -> Scan:
    """Entries for the AudioSet segments of ``csvs`` found under ``videos_root`` (by name:
    :func:`data_prep.audioset_files.match_files`); docs/manifests.md has the outputs.

    A segment's role is "test" when its list is an eval list, else "train". ``classes`` (names or
    MIDs, expanded down the ontology) keeps the segments with one of those labels, and a row's
    ``labels`` are then the selected ones (``all_labels`` keeps the rest). ``labels_csv`` and
    ``ontology_json`` default to the files beside the first list. ``missing``: the segments without
    a file; ``unlisted``: the media files matching no segment or several.
    """
    from .audioset_files import match_files

    if not csvs:
        raise ValueError("give at least one AudioSet segments CSV")
    root = Path(videos_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: videos folder is not a directory")
    names, selected = _audioset_classes(Path(csvs[0]).parent, classes, labels_csv, ontology_json)
    segments, role = _listed_segments(csvs, selected)
    result = match_files(root, segments, pattern=pattern, cut=cut)
    by_key = {s.key: s for s in segments}
    entries: dict[str, Entry] = {}
    extra: list[str] = []
    for key, fm in sorted(result.found.items(), key=lambda kv: (kv[1].relpath, kv[0])):
        s = by_key[key]
        if fm.relpath in entries:  # a whole video holding several listed segments: first one
            extra.append(f"{fm.relpath} (also segment {s.ytid} {s.start_s:g} s)")
            continue
        labels = [m for m in s.labels if selected is None or m in selected]
        entries[fm.relpath] = Entry(
            fm.relpath, names.get(labels[0], labels[0]) if labels else "", -1, -1,
            {"audioset": role[key]},
            {"ytid": s.ytid, "segment_start_s": s.start_s, "segment_end_s": s.end_s,
             "cut": fm.cut, "labels": labels, "all_labels": list(s.labels)},
        )  # fmt: skip
    missing = [f"{s.ytid}_{s.start_s:g}" for s in result.missing]
    unlisted = sorted(result.unmatched + [p for a in result.ambiguous for p in a.relpaths] + extra)
    seen = {*entries, *result.unmatched, *(p for a in result.ambiguous for p in a.relpaths)}
    skipped = not_taken(root.resolve(), seen, takes="video or audio files of the segments")
    used = sorted({m for e in entries.values() for m in e.meta["labels"]})
    return Scan(
        "audioset", str(root.resolve()), used, [entries[k] for k in sorted(entries)],
        ["audioset"], missing, unlisted, {m: names.get(m, m) for m in used}, skipped,
    )  # fmt: skip


def _audioset_classes(
    beside: Path,
    classes: list[str] | None,
    labels_csv: str | Path | None,
    ontology_json: str | Path | None,
) -> tuple[dict[str, str], set[str] | None]:
    """The display name of each MID (when class_labels_indices.csv is there) and the MIDs that
    ``classes`` select (None: all); the files default to those in ``beside``."""
    from .audioset_meta import expand_classes, read_class_labels, read_ontology

    labels_path = Path(labels_csv) if labels_csv else beside / "class_labels_indices.csv"
    names: dict[str, str] = {}
    if labels_path.is_file():
        label_list = read_class_labels(labels_path)
        names = {c.mid: c.name for c in label_list}
    elif classes:
        raise FileNotFoundError(f"{labels_path}: class_labels_indices.csv needed for --classes")
    if not classes:
        return names, None
    onto_path = Path(ontology_json) if ontology_json else beside / "ontology.json"
    if not onto_path.is_file():
        raise FileNotFoundError(f"{onto_path}: ontology.json needed to expand --classes")
    return names, set(expand_classes(classes, read_ontology(onto_path), label_list))


def _listed_segments(
    csvs: list[str | Path], selected: set[str] | None
) -> tuple[list[Any], dict[tuple[str, float], str]]:
    """The segments of ``csvs`` with a selected label, in list order, and the role of each
    (``test`` for an eval list); a segment in a train and a test list is refused."""
    from .audioset_meta import read_segments, split_of_csv

    segments: list[Any] = []
    role: dict[tuple[str, float], str] = {}
    for c in csvs:
        r = split_of_csv(c)
        for s in read_segments(c):
            if s.key in role:
                if role[s.key] != r:
                    raise ValueError(
                        f"{c}: segment {s.ytid} {s.start_s} is in a train and a test list"
                    )
                continue
            if selected is not None and not selected & set(s.labels):
                continue
            role[s.key] = r
            segments.append(s)
    return segments, role
