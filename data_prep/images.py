"""``avssl-prep digits``: the OpenCV handwritten-digits sheet -> PNG files + an image manifest.

The sheet (``../shared/data/digits/opencv-doc__digits.png``, from the opencv-doc package; see
``../shared/data/SOURCES.md``) is a 2000x1000 grey image: a grid of 100 columns x 50 rows of
20x20 cells, one handwritten digit (MNIST-derived) per cell; rows ``5k .. 5k+4`` hold digit ``k``.

Output (``OUT``, default ``$AVSSL_DATA/digits``, else ``./avssl-data/digits``)::

    OUT/images/{digit}/{row:02d}_{col:03d}.png   one 20x20 8-bit grey PNG per cell
    OUT/images.jsonl                             the image manifest, one row per image
    OUT/prep.json                                the card: source, rules, classes, counts

Image manifest rows (``"v": 1``): ``path`` (POSIX, relative to the manifest's folder),
``class_id`` (the digit, 0-9), ``label`` (its name, ``"0"``-``"9"``), ``split``, ``fold``.
Rows are sorted by path, i.e. by (digit, row, column).

* **split** -- the OpenCV kNN tutorial's convention: columns ``0-49`` are ``train``, ``50-99``
  ``test`` (2,500 each, 250 per digit). In general: the left half of the columns is train.
* **fold** -- for cross-validation within either half: ``fold = 1 + (col // w) % 5`` with
  ``w = max(1, columns // 10)`` (``w = 10`` on the sheet): fold 1 holds columns 0-9 and 50-59,
  fold 2 columns 10-19 and 60-69, ..., fold 5 columns 40-49 and 90-99. Every fold has 1,000
  images, 500 train and 500 test, 50 per digit in each half; folds are blocks of neighbouring
  columns, so digits written next to each other stay in one fold.

Re-running gives byte-identical files: PNGs are encoded by OpenCV at a fixed compression level and
a file whose bytes already match is not rewritten (nor is the manifest), so a re-run leaves
modification times -- and the feature caches keyed on them -- untouched. Every write is atomic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import atomic_output, remove_stale_temps

__all__ = ["DigitsResult", "default_out", "prep_digits", "register_digits", "slice_grid"]

CELL = 20  # pixels per digit cell (square)
ROWS_PER_CLASS = 5  # grid rows per digit on the OpenCV sheet
NUM_FOLDS = 5
PNG_LEVEL = 9  # zlib level of cv2.IMWRITE_PNG_COMPRESSION: fixed, so bytes are repeatable


def default_out() -> Path:
    """``$AVSSL_DATA/digits``, or ``./avssl-data/digits`` when AVSSL_DATA is not set."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "digits"


@dataclass(frozen=True)
class DigitsResult:
    """What :func:`prep_digits` wrote."""

    out: Path
    manifest: Path
    counts: dict[str, Any]
    written: int  # PNG files (re)written; 0 on an identical re-run

    def summary(self) -> str:
        c = self.counts
        return (
            f"digits: {c['images']} images of {len(c['per_class'])} classes in {self.out} "
            f"(train {c['per_split'].get('train', 0)}, test {c['per_split'].get('test', 0)}; "
            f"{self.written} PNG files written); manifest {self.manifest}"
        )


def slice_grid(
    sheet: np.ndarray, *, cell: int = CELL, rows_per_class: int = ROWS_PER_CLASS
) -> list[tuple[int, int, int, np.ndarray]]:
    """Cut a grey grid sheet ``(H, W)`` into ``(digit, row, col, cell x cell image)`` tuples.

    Row-major order (row, then column). ``digit = row // rows_per_class``. Raises ValueError when
    the sheet is not 2-D or its sides are not multiples of ``cell``, or the number of rows is
    not a multiple of ``rows_per_class``.
    """
    if sheet.ndim != 2:
        raise ValueError(f"the digits sheet must be a grey image, got shape {sheet.shape}")
    h, w = sheet.shape
    if cell < 1 or rows_per_class < 1:
        raise ValueError(f"cell and rows_per_class must be >= 1, got {cell}, {rows_per_class}")
    if h % cell or w % cell or h == 0 or w == 0:
        raise ValueError(f"sheet of {w}x{h} px is not a grid of {cell}x{cell} cells")
    rows, cols = h // cell, w // cell
    if rows % rows_per_class:
        raise ValueError(f"{rows} grid rows are not a multiple of rows_per_class={rows_per_class}")
    return [
        (r // rows_per_class, r, c, sheet[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell])
        for r in range(rows)
        for c in range(cols)
    ]


def _split_fold(col: int, cols: int) -> tuple[str, int]:
    """The split and fold of grid column ``col`` of ``cols`` (module docstring)."""
    width = max(1, cols // 10)
    return ("train" if col < cols // 2 else "test"), 1 + (col // width) % NUM_FOLDS


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return True


def prep_digits(
    png: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    cell: int = CELL,
    rows_per_class: int = ROWS_PER_CLASS,
) -> DigitsResult:
    """Slice the digits sheet ``png`` into ``out`` (module docstring); returns what it wrote."""
    import cv2

    src = Path(png)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file (the OpenCV digits sheet, digits.png)")
    raw = src.read_bytes()
    sheet = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if sheet is None:
        raise ValueError(f"{src}: not an image OpenCV can read")
    cells = slice_grid(sheet, cell=cell, rows_per_class=rows_per_class)
    cols = sheet.shape[1] // cell
    root = Path(out) if out is not None else default_out()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)  # a killed run's half-written files

    rows: list[dict[str, Any]] = []
    written = 0
    for digit, r, c, img in cells:
        rel = f"images/{digit}/{r:02d}_{c:03d}.png"
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), params)
        if not ok:
            raise ValueError(f"could not encode {rel} as PNG")
        written += _write_if_changed(root / rel, buf.tobytes())
        split, fold = _split_fold(c, cols)
        rows.append({"v": 1, "path": rel, "class_id": digit, "label": str(digit),
                     "split": split, "fold": fold})  # fmt: skip
    rows.sort(key=lambda row: row["path"])
    manifest = root / "images.jsonl"
    _write_if_changed(manifest, "".join(json.dumps(row) + "\n" for row in rows).encode())

    num_classes = max(d for d, *_ in cells) + 1
    per_split = Counter(row["split"] for row in rows)
    per_fold = Counter(row["fold"] for row in rows)
    per_class = Counter(row["class_id"] for row in rows)
    counts: dict[str, Any] = {
        "images": len(rows),
        "per_split": dict(sorted(per_split.items())),
        "per_fold": {str(k): v for k, v in sorted(per_fold.items())},
        "per_class": {str(k): v for k, v in sorted(per_class.items())},
    }
    card = {
        "format": "avssl-prep",
        "version": 1,
        "dataset": "digits",
        "kind": "images",
        "source": str(src.resolve()),
        "source_blake2b": hashlib.blake2b(raw, digest_size=16).hexdigest(),
        "grid": {
            "cell": cell,
            "columns": cols,
            "rows": sheet.shape[0] // cell,
            "rows_per_class": rows_per_class,
        },  # fmt: skip
        "split_rule": "columns [0, columns/2) train, the rest test (the OpenCV kNN tutorial)",
        "fold_rule": f"1 + (col // {max(1, cols // 10)}) % {NUM_FOLDS}",
        "classes": [str(k) for k in range(num_classes)],
        "counts": counts,
    }
    _write_if_changed(root / "prep.json", (json.dumps(card, indent=2) + "\n").encode())
    return DigitsResult(root, manifest, counts, written)


def register_digits(sub: argparse._SubParsersAction) -> None:
    """Add ``avssl-prep digits`` to ``sub`` (an entry of ``data_prep.cli.SUBCOMMANDS``)."""
    p = sub.add_parser(
        "digits",
        help="the OpenCV handwritten-digits sheet -> 5,000 PNG images + an image manifest",
        description=(
            "Slice the OpenCV digits sheet (digits.png: 100 columns x 50 rows of 20x20 "
            "handwritten digits, rows 5k..5k+4 holding digit k) into OUT/images/{digit}/"
            "{row}_{col}.png and write OUT/images.jsonl (path, class_id, label, split, fold) and "
            "OUT/prep.json. Split: columns 0-49 train, 50-99 test (the OpenCV tutorial); fold "
            "1 + (col // 10) % 5, 500 train and 500 test images each. Re-running gives "
            "identical files. The image set for 'avssl-eval linear | knn | retrieval'. No "
            "--shard: one sheet sliced in about a second, nothing to spread over machines."
        ),
    )
    p.add_argument("png", type=Path, metavar="PNG", help="the digits sheet (digits.png)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default: $AVSSL_DATA/digits, else ./avssl-data/digits)",
    )
    p.add_argument(
        "--cell",
        type=int,
        default=CELL,
        metavar="PX",
        help=f"side of one digit cell in pixels (default {CELL})",
    )
    p.add_argument(
        "--rows-per-class",
        type=int,
        default=ROWS_PER_CLASS,
        metavar="N",
        help=f"grid rows per digit, digit k in rows N*k..N*k+N-1 (default {ROWS_PER_CLASS})",
    )
    p.set_defaults(func=_run_digits)


def _run_digits(args: argparse.Namespace) -> int:
    try:
        result = prep_digits(args.png, args.out, cell=args.cell, rows_per_class=args.rows_per_class)
    except (OSError, ValueError) as e:
        print(f"avssl-prep digits: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
