"""Manifests: the tables that prep tools write and datasets read, plus atomic file writes.

``.jsonl`` keeps types; ``.csv`` reads every value back as ``str``. Writes are atomic.
Design notes: docs/design/data.md, "avssl.data.manifest".
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: set-and-restore is not safe beside other threads


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary name keeps ``path``'s suffix (encoders pick the container from it). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes it 0600: give the file the mode open() would have
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Delete the temporary files :func:`atomic_output` left below ``folder`` when its process was
    killed mid-write (``.NAME.XXXX.tmpSUFFIX``); returns them. Call it only on a folder this process
    owns (a prep's output at start-up): a live writer's temporary file looks the same.
    ``recursive=False``: ``folder``'s own files only (an output written into a user's tree)."""
    found = Path(folder).rglob(".*.tmp*") if recursive else Path(folder).glob(".*.tmp*")
    gone = [p for p in found if p.is_file() and ".tmp" in p.name]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def resolve_under(
    root: str | os.PathLike[str], rel: str | os.PathLike[str], *, where: str = ""
) -> Path:
    """``root / rel`` for a manifest row's path ``rel``, refusing one that leaves ``root``.

    The check is lexical (:func:`os.path.normpath`, no file system access): ``rel`` must be a
    non-empty relative path whose ``..`` parts never climb above ``root`` -- so a manifest cannot
    make avssl read (or write) ``/etc/passwd`` or ``../../x``. Symbolic links inside the root are
    followed as the operating system does (datasets are often trees of links; docs/manifests.md).

    Raises:
        ValueError: ``rel`` is empty, absolute (or a Windows drive path), holds a NUL byte or
            climbs out of ``root``; the message starts with ``where`` (e.g. the manifest and row).
    """
    head = f"{where}: " if where else ""
    text = os.fspath(rel) if isinstance(rel, (str, os.PathLike)) else rel
    if not isinstance(text, str) or not text or "\0" in text:
        raise ValueError(f"{head}bad path {text!r} in a manifest row (empty or not text)")
    posix = text.replace("\\", "/")  # checked as Windows would read it too: ..\\..\\x
    norm = os.path.normpath(posix)
    if (
        os.path.isabs(posix)
        or (posix[:1].isalpha() and posix[1:2] == ":" and posix[2:3] in ("", "/"))  # C:/
        or norm in (".", "..")
        or norm.startswith("../")
    ):
        raise ValueError(
            f"{head}path {text!r} of a manifest row is not inside the dataset root {root} "
            "(row paths must be relative to the root, without '..' that climbs out of it)"
        )
    return Path(root) / os.path.normpath(text)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"{path}: manifest suffix must be .jsonl or .csv, got {suffix!r}")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def write_manifest(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` (``.jsonl`` or ``.csv``) atomically and return the path.

    The output depends only on ``rows`` (no timestamps), so the same rows give identical bytes.
    """
    out = Path(path)
    fmt = _format(out)
    if fmt == "jsonl":
        text = "".join(json.dumps(dict(r), separators=(",", ":")) + "\n" for r in rows)
    else:
        columns: dict[str, None] = {}
        for r in rows:
            columns.update(dict.fromkeys(r))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_cell(r.get(c)) for c in columns])
        text = buf.getvalue()
    atomic_write_text(out, text)
    return out


#: The prep command that fills a folder of this name (the defaults of the trainers and of the
#: shipped configs) and the manifests it writes there (None: any), for "manifest not found" hints.
_PREP_COMMANDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "synth": ("avssl-prep synth", None),
    "digits": ("avssl-prep digits ../shared/data/digits/opencv-doc__digits.png", ("images.jsonl",)),
    "av-digits": ("avssl-prep av-digits", None),
}


def prep_hint(path: str | os.PathLike[str]) -> str:
    """``"; run '<avssl-prep command>' first (it writes <path>)"`` when ``path`` is a manifest that
    an ``avssl-prep`` command writes into a folder of its own name (``synth``, ``digits``,
    ``av-digits``; ``--out`` is named unless it is the default ``$AVSSL_DATA/<name>``), else
    ``""``."""
    p = Path(path)
    for folder in (p.parent, p.parent.parent):  # digits/images.jsonl, synth/temporal/x.jsonl
        cmd, names = _PREP_COMMANDS.get(folder.name, ("", None))
        if not cmd or (names is not None and p.name not in names):
            continue
        default = Path(os.environ.get("AVSSL_DATA", "avssl-data")) / folder.name
        if os.path.normpath(folder) != os.path.normpath(default):
            cmd += f" --out {folder}"
        return f"; run '{cmd}' first (it writes {p})"
    return ""


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a manifest written by :func:`write_manifest` (CSV values come back as ``str``)."""
    src = Path(path)
    fmt = _format(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: manifest not found{prep_hint(src)}")
    with open(src, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            return [dict(r) for r in csv.DictReader(f)]
        rows = []
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{src}:{lineno}: not a JSON object: {e}") from e
        return rows
