"""Where the preps write by default, and writes that leave a file alone when its bytes would not
change (so a re-run keeps modification times, which key the evaluations' feature caches)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avssl.data.manifest import atomic_output


@dataclass(frozen=True)
class PrepResult:
    """What a prep wrote into ``out`` and the line ``avssl-prep`` prints for it (``summary()``)."""

    out: Path
    manifest: Path | None
    counts: dict[str, Any]
    text: str
    written: int | list[str] | None = None  # files (re)written: none on an identical re-run

    def summary(self) -> str:
        return self.text


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV with its header even when there are no rows (read back by read_manifest)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def default_data_dir(name: str) -> Path:
    """``$AVSSL_DATA/{name}``, or ``./avssl-data/{name}`` when AVSSL_DATA is not set."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / name


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return True


def jsonl_bytes(rows: Iterable[Any], separators: tuple[str, str] | None = None) -> bytes:
    """JSON lines; ``separators=(",", ":")`` gives :func:`write_manifest`'s bytes."""
    return "".join(json.dumps(r, separators=separators) + "\n" for r in rows).encode()


def json_bytes(card: Any) -> bytes:
    """A ``prep.json`` card: indented JSON and a final newline."""
    return (json.dumps(card, indent=2) + "\n").encode()
