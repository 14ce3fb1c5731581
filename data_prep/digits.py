"""``avssl-prep digits``: the OpenCV handwritten-digits sheet -> PNG files + an image manifest.

Design notes: docs/design/prep_tracking_cli.md, "data_prep/digits.py".
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import remove_stale_temps

from .outputs import (
    PrepResult,
    default_data_dir,
    json_bytes,
    jsonl_bytes,
    write_if_changed,
)

CELL = 20  # pixels per digit cell (square)
ROWS_PER_CLASS = 5  # grid rows per digit on the OpenCV sheet
NUM_FOLDS = 5
PNG_LEVEL = 9  # zlib level of cv2.IMWRITE_PNG_COMPRESSION: fixed, so bytes are repeatable


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
    """The split (the left half of the columns is train) and fold of grid column ``col`` of
    ``cols``: folds are blocks of neighbouring columns, so digits written side by side share one."""
    width = max(1, cols // 10)
    return ("train" if col < cols // 2 else "test"), 1 + (col // width) % NUM_FOLDS


def read_sheet(png: Path) -> tuple[np.ndarray, bytes]:
    """The digits sheet as a grey image, and the file's bytes."""
    import cv2

    if not png.is_file():
        raise FileNotFoundError(f"{png}: no such file (the OpenCV digits sheet, digits.png)")
    raw = png.read_bytes()
    sheet = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if sheet is None:
        raise ValueError(f"{png}: not an image OpenCV can read")
    return sheet, raw


def prep_digits(
    png: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    cell: int = CELL,
    rows_per_class: int = ROWS_PER_CLASS,
) -> PrepResult:
    """Slice the digits sheet ``png`` into ``out`` (docs/manifests.md); returns what it wrote."""
    import cv2

    src = Path(png)
    sheet, raw = read_sheet(src)
    cells = slice_grid(sheet, cell=cell, rows_per_class=rows_per_class)
    cols = sheet.shape[1] // cell
    root = Path(out) if out is not None else default_data_dir("digits")
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
        written += write_if_changed(root / rel, buf.tobytes())
        split, fold = _split_fold(c, cols)
        rows.append({"v": 1, "path": rel, "class_id": digit, "label": str(digit),
                     "split": split, "fold": fold})  # fmt: skip
    rows.sort(key=lambda row: row["path"])
    manifest = root / "images.jsonl"
    write_if_changed(manifest, jsonl_bytes(rows))

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
        "grid": {"cell": cell, "columns": cols, "rows": sheet.shape[0] // cell,
                 "rows_per_class": rows_per_class},
        "split_rule": "columns [0, columns/2) train, the rest test (the OpenCV kNN tutorial)",
        "fold_rule": f"1 + (col // {max(1, cols // 10)}) % {NUM_FOLDS}",
        "classes": [str(k) for k in range(num_classes)],
        "counts": counts,
    }  # fmt: skip
    write_if_changed(root / "prep.json", json_bytes(card))
    text = (
        f"digits: {len(rows)} images of {len(per_class)} classes in {root} "
        f"(train {per_split.get('train', 0)}, test {per_split.get('test', 0)}; "
        f"{written} PNG files written); manifest {manifest}"
    )
    return PrepResult(root, manifest, counts, text, written)
