"""``avssl-report RUN_DIR``: a markdown page with PNG plots for one run.

avssl-report RUN_DIR [--out RUN_DIR/report] [--tsne] [--max-examples N] [--top-k K]

Reads what a run directory holds and writes ``OUT/README.md`` (relative links) and PNGs next to it:

- **Training curves** from ``metrics.jsonl`` (:class:`avssl.train.Logger`): training records have
  ``step`` and ``loss`` / ``acc`` / ``lr`` / ``samples_per_s`` / ``data_wait``; evaluation records
  have ``epoch`` and ``val_loss`` / ``val_acc`` / ``val_balanced_acc`` / ``val_samples``. Loss and
  accuracy are drawn against the step with the held-out points overlaid; learning rate; throughput
  and the fraction of time spent waiting for data.
- **Last evaluation** (a table of the last record with ``val_*`` keys, plus the best ``val_acc``)
  and the run's ``config.yaml`` in a collapsed block.
- **Evaluation results**: every ``eval/*.json`` in the ``avssl-eval`` result format, one table row
  per file and the commands that reproduce them; a confusion-matrix PNG where ``confusion`` is
  present (colour = row-normalised, i.e. the fraction of each true class; numbers = counts);
  per-fold bars where ``per_fold`` is present.
- **Embedding maps**: every cached feature file (``eval/features/*.npz`` and any ``.npz`` a result
  JSON names): a 2-D PCA (numpy SVD of the centred features) scatter coloured by label, marker by
  split; with ``--tsne`` also a t-SNE map (scikit-learn, ``random_state=0``) when N <= 5000.
- **Retrieval examples**: where a result's ``extra`` holds ``retrieval_examples`` (``query``,
  ``neighbours``, ``relevant``), ``root`` and ``id_kind`` (``"image"`` or ``"video_frame"``), a grid
  of thumbnails: the query (blue border) and its top-k neighbours (green = relevant, red = not).
  Ids are paths relative to ``root`` or ``VIDEO_PATH#FRAME``; a missing or unreadable file becomes a
  grey tile with a note.
- **Heatmaps**: every PNG under ``RUN_DIR/heatmaps/`` in a gallery.

Sections without data are left out with a one-line note. Plots are deterministic (fixed seeds,
fixed subsampling, no timestamps in the PNGs) and small (100 dpi). Rendering uses matplotlib's Agg
canvas through :class:`matplotlib.figure.Figure`: no display and no pyplot global state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avssl.data.decode import VIDEO_SUFFIXES
from avssl.data.manifest import atomic_output, atomic_write_text
from avssl.data.suffixes import AUDIO_SUFFIXES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "build_parser",
    "load_thumbnail",
    "main",
    "pca_2d",
    "read_metrics",
    "write_report",
]

DPI = 100  # every PNG; the spec allows at most 150
THUMB = 96  # thumbnail side in the retrieval grids (pixels)
TSNE_MAX = 5000  # t-SNE only up to this many points (it is O(N^2) in memory)
MAP_MAX_POINTS = 20000  # PCA fit and scatter on at most this many points (fixed subsample)
MAX_HEATMAPS = 200  # gallery entries
TRAIN_KEYS = ("loss", "acc", "lr", "samples_per_s", "data_wait")
VAL_KEYS = ("val_loss", "val_acc", "val_balanced_acc", "val_samples")
_GREY = (160, 160, 160)
_BORDER = {"query": (40, 90, 220), True: (30, 170, 60), False: (220, 40, 40), None: (120, 120, 120)}


# --------------------------------------------------------------------------- inputs


def read_metrics(
    path: str | os.PathLike[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Split ``metrics.jsonl`` into (training records, evaluation records, unreadable lines).

    A training record has ``step`` and at least one of :data:`TRAIN_KEYS`; an evaluation record has
    at least one ``val_*`` key. An evaluation record without ``step`` gets the step of the last
    training record before it (evaluations are logged after their epoch's steps), stored as ``x``;
    every record gets ``x`` (its step). Blank, truncated (a run still writing) or non-object lines
    are counted, not fatal; other records (e.g. ``stopped_at_step``) are skipped.
    """
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    bad = 0
    last_step: float = 0.0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(rec, dict):
                bad += 1
                continue
            raw = rec.get("step")
            step = (
                float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
            )
            if any(k.startswith("val_") for k in rec):
                evals.append({**rec, "x": last_step if step is None else step})
            elif step is not None and any(k in rec for k in TRAIN_KEYS):
                last_step = step
                train.append({**rec, "x": last_step})
    return train, evals, bad


def _load_result(path: Path) -> dict[str, Any]:
    """One ``avssl-eval`` result JSON; ValueError when it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") not in (None, "avssl-eval"):
        raise ValueError(f"format is {doc.get('format')!r}, not 'avssl-eval'")
    if "kind" not in doc or not isinstance(doc.get("metrics", {}), dict):
        raise ValueError("no 'kind' or 'metrics' is not an object")
    return doc


def _npz_refs(obj: Any) -> Iterator[str]:
    """Every string ending in ``.npz`` anywhere in a JSON value."""
    if isinstance(obj, str):
        if obj.endswith(".npz"):
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _npz_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _npz_refs(v)


def _resolve(ref: str, *bases: Path) -> Path | None:
    """``ref`` as given (absolute or relative to the working directory), else under each base."""
    p = Path(ref)
    if p.exists():
        return p
    if not p.is_absolute():
        for b in bases:
            if (b / p).exists():
                return b / p
    return None


# --------------------------------------------------------------------------- plotting helpers


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG atomically (no software/date metadata: identical bytes on a rerun)."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with shrinking windows at the ends (same length as ``y``)."""
    if window <= 1 or y.size < window:
        return y
    k = np.ones(window)
    num = np.convolve(y, k, mode="same")
    den = np.convolve(np.ones_like(y), k, mode="same")
    return num / den


def _series(recs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        (r["x"], float(r[key]))
        for r in recs
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]


def _curve(ax: Axes, x: np.ndarray, y: np.ndarray, label: str, color: str) -> None:
    """A training curve: the raw values thin, a moving average on top when there are many."""
    if x.size >= 20:
        ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8)
        w = max(3, x.size // 20)
        ax.plot(x, _smooth(y, w), color=color, linewidth=1.5, label=f"{label} (mean of {w})")
    else:
        ax.plot(x, y, color=color, linewidth=1.5, label=label, marker=".")


def plot_training(
    train: list[dict[str, Any]], evals: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    """Loss, accuracy, learning-rate and throughput PNGs; keys of the result name what was drawn."""
    made: dict[str, Path] = {}
    panels = [
        ("loss", "loss", [("loss", "train loss", "C0")], [("val_loss", "held-out loss", "C3")]),
        (
            "accuracy",
            "accuracy",
            [("acc", "train accuracy", "C0")],
            [
                ("val_acc", "held-out accuracy", "C3"),
                ("val_balanced_acc", "held-out balanced", "C2"),
            ],
        ),
    ]
    for name, ylabel, tr_keys, ev_keys in panels:
        drawn = False
        fig = _figure(6.0, 3.4)
        ax = fig.add_subplot()
        for key, label, color in tr_keys:
            x, y = _series(train, key)
            if x.size:
                _curve(ax, x, y, label, color)
                drawn = True
        for key, label, color in ev_keys:
            x, y = _series(evals, key)
            if x.size:
                ax.plot(x, y, color=color, marker="o", linestyle="--", linewidth=1, label=label)
                drawn = True
        if not drawn:
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if name == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{ylabel} vs step")
        made[name] = _save(fig, out / f"{name}.png")
    x, y = _series(train, "lr")
    if x.size:
        fig = _figure(6.0, 2.6)
        ax = fig.add_subplot()
        ax.plot(x, y, color="C4", linewidth=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        ax.set_title("learning rate")
        made["lr"] = _save(fig, out / "lr.png")
    xs, ys = _series(train, "samples_per_s")
    xw, yw = _series(train, "data_wait")
    if xs.size or xw.size:
        fig = _figure(6.0, 4.2 if xs.size and xw.size else 2.6)
        axes = fig.subplots(int(bool(xs.size)) + int(bool(xw.size)), 1, sharex=True, squeeze=False)
        i = 0
        if xs.size:
            ax = axes[i, 0]
            ax.plot(xs, ys, color="C1", marker=".", linewidth=1)
            ax.set_ylabel("samples / s")
            ax.set_title(f"throughput (median {np.median(ys):.1f} samples/s)")
            ax.grid(alpha=0.3)
            i += 1
        if xw.size:
            ax = axes[i, 0]
            ax.plot(xw, yw, color="C5", marker=".", linewidth=1)
            ax.set_ylabel("data wait (fraction)")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title("fraction of time blocked on the data loader")
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        made["throughput"] = _save(fig, out / "throughput.png")
    return made


def plot_confusion(
    confusion: Sequence[Sequence[float]], classes: Sequence[str] | None, title: str, path: Path
) -> Path:
    """Confusion matrix: rows = true class; colour = row-normalised fraction; numbers = counts.

    Counts are written in the cells up to 20 classes; class names label every axis tick up to 60
    classes, every n-th above that.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty square matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = (
        [str(c) for c in classes] if classes and len(classes) == k else [str(i) for i in range(k)]
    )
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = float(min(max(4.0, 0.32 * k + 2.5), 20.0))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="fraction of true class")
    step = 1 if k <= 60 else math.ceil(k / 60)
    ticks = list(range(0, k, step))
    fs = 8 if k <= 20 else 6 if k <= 60 else 5
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=fs)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{cm[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7 if k <= 12 else 5,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    total = cm.sum()
    acc = float(np.trace(cm) / total) if total else float("nan")
    ax.set_title(f"{title}\n{total:.0f} samples, diagonal {acc:.3f}", fontsize=9)
    return _save(fig, path)


def _fold_table(per_fold: Sequence[Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Fold labels and the score series to draw from a ``per_fold`` list.

    Numbers are one series (``score``). Objects: the label comes from ``fold`` / ``test_fold`` /
    ``split`` / ``name`` (else the position); the series are the numeric fields whose values all
    lie in [0, 1] (scores), else the first numeric field. Raises ValueError when nothing is
    drawable.
    """
    if not per_fold:
        raise ValueError("per_fold is empty")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in per_fold):
        return [str(i + 1) for i in range(len(per_fold))], {"score": [float(v) for v in per_fold]}
    if not all(isinstance(v, dict) for v in per_fold):
        raise ValueError("per_fold must be a list of numbers or a list of objects")
    label_key = next(
        (k for k in ("fold", "test_fold", "split", "name") if all(k in d for d in per_fold)), None
    )
    labels = [str(d[label_key]) if label_key else str(i + 1) for i, d in enumerate(per_fold)]
    numeric: dict[str, list[float]] = {}
    for key in per_fold[0]:
        if key == label_key:
            continue
        vals = [d.get(key) for d in per_fold]
        nums = [float(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(nums) == len(vals):
            numeric[key] = nums
    scores = {
        k: v
        for k, v in numeric.items()
        if all(0.0 <= x <= 1.0 for x in v) and k.lower() not in ("c", "gamma")
    }
    if scores:
        return labels, scores
    if numeric:
        first = next(iter(numeric))
        return labels, {first: numeric[first]}
    raise ValueError("per_fold objects have no numeric field")


def plot_folds(per_fold: Sequence[Any], title: str, path: Path) -> Path:
    """Grouped bars, one group per fold, one bar per score; dashed lines at each score's mean."""
    labels, series = _fold_table(per_fold)
    n, m = len(labels), len(series)
    fig = _figure(min(max(4.0, 0.55 * n * m + 2.0), 14.0), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / m
    x = np.arange(n, dtype=np.float64)
    for j, (key, vals) in enumerate(series.items()):
        color = f"C{j % 10}"
        v = np.asarray(vals)
        bars = ax.bar(x + (j - (m - 1) / 2) * width, v, width, color=color, label=key)
        if n * m <= 30:
            ax.bar_label(bars, fmt="%.3f", fontsize=6)
        mean, std = float(v.mean()), float(v.std())
        ax.axhline(mean, color=color, linestyle="--", linewidth=1)
        ax.text(
            n - 0.5, mean, f" {key} {mean:.3f} ± {std:.3f}", color=color, fontsize=7, va="bottom"
        )
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("fold")
    ax.set_ylabel("score")
    all_vals = np.concatenate([np.asarray(v) for v in series.values()])
    if all_vals.min() >= 0.0 and all_vals.max() <= 1.0:
        ax.set_ylim(0.0, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def pca_2d(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto the first two principal components (SVD of the centred matrix).

    Returns ``(coords (N, 2), explained variance ratio (2,))``. Signs are fixed so that each
    component's largest-magnitude loading is positive (the SVD leaves them arbitrary). Fewer than
    two components (N < 2 or D < 2, or a constant matrix) give zeros in the missing columns.
    """
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"feats must be 2-D (N, D), got shape {x.shape}")
    x = x - x.mean(axis=0, keepdims=True) if x.shape[0] else x
    coords = np.zeros((x.shape[0], 2))
    ratio = np.zeros(2)
    if x.shape[0] < 2 or x.shape[1] < 1:
        return coords, ratio
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    total = float((s**2).sum())
    r = min(2, vt.shape[0])
    for i in range(r):
        v = vt[i]
        if v[np.argmax(np.abs(v))] < 0:
            v = -v
        coords[:, i] = x @ v
        ratio[i] = float(s[i] ** 2 / total) if total > 0 else 0.0
    return coords, ratio


def _subsample(n: int, limit: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` rows, the same every time (seed 0)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def plot_embedding(
    coords: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray | None,
    names: Sequence[str] | None,
    title: str,
    axis_labels: tuple[str, str],
    path: Path,
) -> Path:
    """Scatter of 2-D points coloured by label (grey for labels < 0), marker by split."""
    fig = _figure(6.4, 5.0)
    ax = fig.add_subplot()
    labels = np.asarray(labels).astype(np.int64)
    uniq = [int(v) for v in np.unique(labels)]
    known = [u for u in uniq if u >= 0]
    cmap_name = "tab10" if len(known) <= 10 else "tab20" if len(known) <= 20 else "turbo"
    from matplotlib import colormaps

    cmap = colormaps[cmap_name]
    colour_of = {
        u: cmap(i / max(len(known) - 1, 1) if cmap_name == "turbo" else i)
        for i, u in enumerate(known)
    }
    splits = [""] if split is None else sorted({str(s) for s in split.tolist()})
    markers = ["o", "^", "s", "D", "v", "P", "X", "*"]
    size = 14.0 if coords.shape[0] <= 2000 else 5.0 if coords.shape[0] <= 10000 else 2.0
    for si, sp in enumerate(splits):
        in_split = np.ones(coords.shape[0], bool) if split is None else np.asarray(split) == sp
        for u in uniq:
            sel = in_split & (labels == u)
            if not sel.any():
                continue
            ax.scatter(
                coords[sel, 0],
                coords[sel, 1],
                s=size,
                marker=markers[si % len(markers)],
                color=colour_of.get(u, (0.6, 0.6, 0.6, 1.0)),
                alpha=0.75,
                linewidths=0,
            )
    from matplotlib.lines import Line2D

    handles = []
    if len(uniq) <= 20:
        for u in uniq:
            name = names[u] if names is not None and 0 <= u < len(names) else str(u)
            handles.append(
                Line2D([], [], marker="o", linestyle="", color=colour_of.get(u, "grey"), label=name)
            )
    if len(splits) > 1:
        for si, sp in enumerate(splits):
            handles.append(
                Line2D([], [], marker=markers[si % len(markers)], linestyle="", color="k", label=sp)
            )
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.2)
    return _save(fig, path)


# --------------------------------------------------------------------------- thumbnails


def _grey_tile(size: int = THUMB) -> np.ndarray:
    return np.full((size, size, 3), _GREY, np.uint8)


def load_thumbnail(
    item: str, root: Path | None, id_kind: str | None, size: int = THUMB
) -> tuple[np.ndarray, str]:
    """An RGB uint8 ``(size, size, 3)`` thumbnail of one id and a note ("" when it loaded).

    ``id_kind="video_frame"`` (or an id ``PATH#N`` whose path is a video): frame ``N`` of the video
    via :func:`avssl.data.decode.read_frames`. Images are centre-cropped to a square. Audio ids and
    anything missing or unreadable give a grey tile; the note says why. Never raises on bad input.
    """
    path_part, frame = item, None
    m = re.fullmatch(r"(.*)#(\d+)", item)
    if m and (id_kind == "video_frame" or Path(m.group(1)).suffix.lower() in VIDEO_SUFFIXES):
        path_part, frame = m.group(1), int(m.group(2))
    p = Path(path_part)
    if root is not None and not p.is_absolute():
        p = root / p
    if not p.is_file():
        return _grey_tile(size), "missing"
    suffix = p.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return _grey_tile(size), "audio"
    try:
        if frame is not None or suffix in VIDEO_SUFFIXES:
            from avssl.data.decode import read_frames

            clip = read_frames(p, [frame or 0], size=(size, size))
            return clip.data[0].permute(1, 2, 0).contiguous().numpy().astype(np.uint8), ""
        from PIL import Image, ImageOps

        with Image.open(p) as im:
            fitted = ImageOps.fit(im.convert("RGB"), (size, size))
            return np.asarray(fitted, dtype=np.uint8).copy(), ""
    except Exception as e:  # any decoder/PIL failure: drawn as a grey tile, never a crash
        return _grey_tile(size), f"unreadable ({e.__class__.__name__})"


def _bordered(img: np.ndarray, color: tuple[int, int, int], width: int = 5) -> np.ndarray:
    out = np.empty((img.shape[0] + 2 * width, img.shape[1] + 2 * width, 3), np.uint8)
    out[:] = color
    out[width:-width, width:-width] = img
    return out


def _short(item: str, limit: int = 18) -> str:
    name = item.replace("\\", "/").rsplit("/", 1)[-1]
    return name if len(name) <= limit else name[: limit - 7] + "…" + name[-6:]


def _examples(raw: Any) -> list[dict[str, Any]]:
    """Validate ``retrieval_examples``; ValueError describing the first problem."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("retrieval_examples must be a non-empty list")
    out = []
    for i, ex in enumerate(raw):
        if not isinstance(ex, dict) or not isinstance(ex.get("query"), str):
            raise ValueError(f"retrieval_examples[{i}] has no string 'query'")
        nb = ex.get("neighbours", [])
        rel = ex.get("relevant", [])
        if not isinstance(nb, list) or not all(isinstance(n, str) for n in nb):
            raise ValueError(f"retrieval_examples[{i}].neighbours must be a list of ids")
        if not isinstance(rel, list):
            raise ValueError(f"retrieval_examples[{i}].relevant must be a list of booleans")
        out.append({"query": ex["query"], "neighbours": nb, "relevant": rel})
    return out


def plot_retrieval(
    examples: list[dict[str, Any]],
    root: Path | None,
    id_kind: str | None,
    title: str,
    path: Path,
    *,
    max_examples: int = 8,
    top_k: int = 8,
) -> tuple[Path, int, int]:
    """Grid: one row per query (blue border), then its top-k neighbours (green relevant, red not,
    grey unknown). Returns ``(path, tiles drawn, tiles that could not be loaded)``."""
    rows = examples[:max_examples]
    cols = 1 + min(top_k, max((len(r["neighbours"]) for r in rows), default=0))
    fig = _figure(1.15 * cols + 0.2, 1.35 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    tiles = failed = 0
    for i, ex in enumerate(rows):
        items: list[tuple[str, str | bool | None]] = [(ex["query"], "query")]
        for j, nb in enumerate(ex["neighbours"][: cols - 1]):
            rel = ex["relevant"][j] if j < len(ex["relevant"]) else None
            items.append((nb, bool(rel) if isinstance(rel, bool | int) else None))
        for j in range(cols):
            ax = axes[i, j]
            ax.set_axis_off()
            if j >= len(items):
                continue
            item, kind = items[j]
            img, note = load_thumbnail(item, root, id_kind)
            tiles += 1
            failed += bool(note)
            ax.imshow(_bordered(img, _BORDER[kind]), interpolation="nearest")
            head = "query" if kind == "query" else f"#{j}"
            ax.set_title(f"{head} {_short(item)}", fontsize=5.5)
            if note:
                ax.text(
                    0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=6
                )
    fig.suptitle(title, fontsize=9)
    return _save(fig, path), tiles, failed


# --------------------------------------------------------------------------- markdown


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.2f}" if a >= 10 else f"{v:.4f}"
    return str(v)


def _cell(v: Any) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _seconds(v: Any) -> str:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return f"{v:.1f}" if ok else ""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


class _Page:
    """Markdown lines plus the relative-link helper for one output directory."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lines: list[str] = []
        self.images: list[Path] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def link(self, target: Path) -> str:
        rel = os.path.relpath(target.resolve(), self.out.resolve()).replace(os.sep, "/")
        return urllib.parse.quote(rel)

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path)
        self.add(f"![{alt}]({self.link(path)})", "")

    def note(self, text: str) -> None:
        self.add(f"_{text}_", "")


def _model_tag(model: Any) -> str:
    if not isinstance(model, dict):
        return str(model)
    spec = model.get("spec") or model.get("source") or "?"
    bb = model.get("backbone")
    tag = str(spec)
    if bb and str(bb) not in tag:
        tag += f" ({bb})"
    return tag


def _metrics_cell(metrics: dict[str, Any]) -> str:
    return " · ".join(f"{k} {_cell(v)}" for k, v in metrics.items()) or "—"


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    tsne: bool = False,
    max_examples: int = 8,
    top_k: int = 8,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``OUT/README.md`` and its PNGs for ``run_dir``; returns the README path.

    Raises FileNotFoundError when ``run_dir`` is not a directory or holds nothing to report
    (no ``metrics.jsonl``, ``config.yaml``, ``eval/*.json``, ``eval/features/*.npz`` nor
    ``heatmaps/*.png``).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    out_dir = Path(out) if out is not None else run / "report"
    metrics_path, config_path = run / "metrics.jsonl", run / "config.yaml"
    result_paths = sorted((run / "eval").glob("*.json"))
    heatmaps = sorted(p for p in (run / "heatmaps").rglob("*.png") if p.is_file())
    feature_paths = sorted((run / "eval" / "features").glob("*.npz"))
    if not (
        metrics_path.is_file() or config_path.is_file() or result_paths or heatmaps or feature_paths
    ):
        raise FileNotFoundError(
            f"nothing to report in {run}: no metrics.jsonl, config.yaml, eval/*.json, "
            "eval/features/*.npz or heatmaps/*.png"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    page = _Page(out_dir)

    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            import yaml

            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except Exception:  # shown as text below whatever it holds
            config = {}
    page.add(f"# Run report: {run.resolve().name}", "")
    facts = [f"run directory `{run}`"]
    for key in ("task", "backbone", "seed"):
        if key in config:
            facts.append(f"{key} `{config[key]}`")
    page.add(" · ".join(facts) + ".", "")
    cmd = "avssl-report " + " ".join(argv) if argv is not None else f"avssl-report {run}"
    page.add(f"Generated by `{cmd}`.", "")

    # ---- training
    page.add("## Training curves", "")
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    if metrics_path.is_file():
        train, evals, bad = read_metrics(metrics_path)
        if bad:
            page.note(f"{bad} unreadable line(s) in metrics.jsonl skipped.")
        made = plot_training(train, evals, out_dir)
        if made:
            steps = int(max(r["x"] for r in train)) + 1 if train else 0
            page.add(
                f"{len(train)} training records (up to step {steps}), "
                f"{len(evals)} held-out evaluations, from `metrics.jsonl`.",
                "",
            )
            for name, path in made.items():
                page.image(path, name)
        else:
            page.note("metrics.jsonl has no training or evaluation records.")
    else:
        page.note("No training curves: no metrics.jsonl in the run directory.")

    if evals:
        last = evals[-1]
        page.add("### Last evaluation", "")
        keys: list[str] = [k for k in ("step", "epoch") if k in last]
        keys += [k for k in last if k.startswith("val_")]
        page.add("| " + " | ".join(keys) + " |", "|" + "---|" * len(keys))
        page.add("| " + " | ".join(_cell(last[k]) for k in keys) + " |", "")
        accs = [(r["val_acc"], r) for r in evals if isinstance(r.get("val_acc"), int | float)]
        if accs:
            best, rec = max(accs, key=lambda t: t[0])
            where = f"epoch {rec['epoch']}" if "epoch" in rec else f"step {rec['x']:.0f}"
            page.add(f"Best held-out accuracy {_fmt(float(best))} at {where}.", "")
    else:
        page.note("Last evaluation: no evaluation records (val_*) in metrics.jsonl.")

    if config_path.is_file():
        text = config_path.read_text(encoding="utf-8", errors="replace").rstrip("\n")
        page.add(
            "### Configuration",
            "",
            "<details><summary>config.yaml</summary>",
            "",
            "```yaml",
            text,
            "```",
            "",
            "</details>",
            "",
        )
    else:
        page.note("Configuration: no config.yaml in the run directory.")

    # ---- evaluation results
    results: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[str] = []
    for p in result_paths:
        try:
            results.append((p, _load_result(p)))
        except ValueError as e:
            skipped.append(f"`{p.name}`: {e}")
    page.add("## Evaluation results", "")
    if results:
        page.add(
            "| result | kind | dataset | model | layer | train / test | metrics | seconds |",
            "|---|---|---|---|---|---|---|---|",
        )
        for p, doc in results:
            ds = doc.get("dataset") if isinstance(doc.get("dataset"), dict) else {}
            assert isinstance(ds, dict)
            sizes = f"{_cell(ds.get('num_train', '?'))} / {_cell(ds.get('num_test', '?'))}"
            page.add(
                f"| [{p.stem}]({page.link(p)}) | {_cell(doc.get('kind'))} "
                f"| {_cell(ds.get('name', doc.get('dataset', '?')))} "
                f"| {_cell(_model_tag(doc.get('model')))} | {_cell(doc.get('layer', ''))} "
                f"| {sizes} | {_metrics_cell(doc.get('metrics', {}))} "
                f"| {_seconds(doc.get('seconds'))} |"
            )
        page.add("")
        cmds = [(p, doc["command"]) for p, doc in results if doc.get("command")]
        if cmds:
            page.add("<details><summary>Commands that reproduce these results</summary>", "")
            page.add("```sh")
            for p, c in cmds:
                page.add(f"# {p.name}", str(c))
            page.add("```", "", "</details>", "")
    else:
        page.note("No evaluation results: no avssl-eval JSON under eval/.")
    for s in skipped:
        page.note(f"Skipped {s}")

    confusions = [(p, d) for p, d in results if d.get("confusion")]
    if confusions:
        page.add("### Confusion matrices", "")
        for p, doc in confusions:
            classes = doc.get("classes") if isinstance(doc.get("classes"), list) else None
            try:
                png = plot_confusion(
                    doc["confusion"], classes, p.stem, out_dir / f"confusion-{_slug(p.stem)}.png"
                )
                page.image(png, f"confusion {p.stem}")
            except (ValueError, TypeError) as e:
                page.note(f"{p.name}: confusion not drawn ({e}).")
    else:
        page.note("Confusion matrices: no result has a confusion matrix.")

    folds = [(p, d) for p, d in results if d.get("per_fold")]
    if folds:
        page.add("### Per-fold results", "")
        for p, doc in folds:
            try:
                png = plot_folds(doc["per_fold"], p.stem, out_dir / f"folds-{_slug(p.stem)}.png")
                page.image(png, f"per-fold {p.stem}")
            except (ValueError, TypeError) as e:
                page.note(f"{p.name}: per-fold results not drawn ({e}).")
    else:
        page.note("Per-fold results: no result has per_fold.")

    # ---- embedding maps
    refs: dict[Path, list[str] | None] = {p.resolve(): None for p in feature_paths}
    for p, doc in results:
        classes = doc.get("classes") if isinstance(doc.get("classes"), list) else None
        for ref in _npz_refs(doc):
            found = _resolve(ref, run, p.parent, run / "eval" / "features")
            if found is not None:
                npz = found.resolve()
                if refs.get(npz) is None:
                    refs[npz] = [str(c) for c in classes] if classes else None
    if refs:
        page.add("## Embedding maps", "")
        for npz, names in sorted(refs.items()):
            _embedding_section(page, npz, names, tsne)
    else:
        page.note("Embedding maps: no cached features (eval/features/*.npz).")

    # ---- retrieval grids
    grids = [(p, d) for p, d in results if isinstance(d.get("extra"), dict)]
    grids = [(p, d) for p, d in grids if "retrieval_examples" in d["extra"]]
    if grids:
        page.add("## Retrieval examples", "")
        page.add(
            "Each row: the query (blue border) and its nearest neighbours in rank order; green = "
            "relevant, red = not relevant, grey tile = file missing or not an image.",
            "",
        )
        for p, doc in grids:
            extra = doc["extra"]
            try:
                examples = _examples(extra["retrieval_examples"])
            except ValueError as e:
                page.note(f"{p.name}: retrieval examples not drawn ({e}).")
                continue
            root_ref = extra.get("root")
            root = None
            if isinstance(root_ref, str) and root_ref:
                root = _resolve(root_ref, run, p.parent) or Path(root_ref)
            id_kind = extra.get("id_kind") if isinstance(extra.get("id_kind"), str) else None
            png, tiles, failed = plot_retrieval(
                examples,
                root,
                id_kind,
                f"{p.stem} ({id_kind or 'ids'})",
                out_dir / f"retrieval-{_slug(p.stem)}.png",
                max_examples=max_examples,
                top_k=top_k,
            )
            shown = min(len(examples), max_examples)
            page.add(f"**{p.stem}**: {shown} of {len(examples)} queries, root `{root_ref}`.", "")
            page.image(png, f"retrieval {p.stem}")
            if failed:
                page.note(f"{failed} of {tiles} tiles could not be loaded (grey).")
    else:
        page.note("Retrieval examples: no result has extra.retrieval_examples.")

    # ---- heatmaps
    if heatmaps:
        page.add("## Heatmaps", "")
        shown_h = heatmaps[:MAX_HEATMAPS]
        page.add(f"{len(heatmaps)} PNG(s) under `heatmaps/`.", "")
        page.add(
            " ".join(
                f'<a href="{page.link(h)}"><img src="{page.link(h)}" width="160" '
                f'title="{h.relative_to(run / "heatmaps")}"></a>'
                for h in shown_h
            ),
            "",
        )
        if len(heatmaps) > MAX_HEATMAPS:
            page.note(f"Showing the first {MAX_HEATMAPS} of {len(heatmaps)}.")
    else:
        page.note("Heatmaps: none (no PNG under heatmaps/).")

    readme = out_dir / "README.md"
    atomic_write_text(readme, "\n".join(page.lines).rstrip("\n") + "\n")
    return readme


def _embedding_section(page: _Page, npz: Path, names: list[str] | None, tsne: bool) -> None:
    """One feature cache: PCA map (and t-SNE with ``tsne``), or a note saying why not."""
    try:
        with np.load(npz, allow_pickle=False) as z:
            feats = np.asarray(z["feats"])
            labels = np.asarray(z["labels"]) if "labels" in z else np.zeros(len(feats), np.int64)
            split = np.asarray(z["split"]).astype(str) if "split" in z else None
            if names is None and "classes" in z:
                names = [str(c) for c in z["classes"].tolist()]
    except (OSError, KeyError, ValueError) as e:
        page.note(f"{npz.name}: not drawn ({e.__class__.__name__}: {e}).")
        return
    if feats.ndim != 2 or feats.shape[0] < 2 or len(labels) != feats.shape[0]:
        page.note(f"{npz.name}: not drawn (feats shape {feats.shape}, {len(labels)} labels).")
        return
    if split is not None and (split.ndim != 1 or len(split) != feats.shape[0]):
        split = None
    n, d = feats.shape
    idx = _subsample(n, MAP_MAX_POINTS)
    x, lab = feats[idx].astype(np.float64), labels[idx]
    sp = split[idx] if split is not None else None
    if not np.isfinite(x).all():
        page.note(f"{npz.name}: not drawn (non-finite features).")
        return
    coords, ratio = pca_2d(x)
    sub = f", {len(idx)} plotted" if len(idx) < n else ""
    page.add(f"### {npz.stem}", "")
    page.add(f"`{npz.name}`: {n} × {d} features{sub}, {len(np.unique(labels))} labels.", "")
    png = plot_embedding(
        coords,
        lab,
        sp,
        names,
        f"PCA of {npz.stem}",
        (f"PC1 ({100 * ratio[0]:.1f}% var.)", f"PC2 ({100 * ratio[1]:.1f}% var.)"),
        page.out / f"embedding-{_slug(npz.stem)}.png",
    )
    page.image(png, f"PCA {npz.stem}")
    if tsne:
        if n > TSNE_MAX:
            page.note(f"t-SNE skipped: {n} points > {TSNE_MAX}.")
        elif n < 5:
            page.note(f"t-SNE skipped: only {n} points.")
        else:
            from sklearn.manifold import TSNE

            perplexity = float(min(30.0, (n - 1) / 3))
            emb = TSNE(
                n_components=2, init="pca", random_state=0, perplexity=perplexity
            ).fit_transform(feats.astype(np.float64))
            png = plot_embedding(
                emb,
                labels,
                split,
                names,
                f"t-SNE of {npz.stem} (perplexity {perplexity:.0f})",
                ("t-SNE 1", "t-SNE 2"),
                page.out / f"tsne-{_slug(npz.stem)}.png",
            )
            page.image(png, f"t-SNE {npz.stem}")


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-report",
        description=(
            "Write a markdown report with PNG plots for a run directory: training curves "
            "(metrics.jsonl), the configuration, the last evaluation, every avssl-eval result "
            "under eval/ (results table, confusion matrices, per-fold bars, retrieval grids), "
            "embedding maps of the cached features (eval/features/*.npz) and heatmaps/*.png."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default RUN_DIR/report)"
    )
    p.add_argument(
        "--tsne",
        action="store_true",
        help=f"also draw t-SNE maps (scikit-learn) for feature files with <= {TSNE_MAX} rows",
    )
    p.add_argument(
        "--max-examples",
        type=int,
        default=8,
        metavar="N",
        help="retrieval grids: at most N query rows (default 8)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=8,
        metavar="K",
        help="retrieval grids: at most K neighbours per query (default 8)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_examples < 1 or args.top_k < 1:
        print("avssl-report: --max-examples and --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("avssl-report: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 2
    try:
        readme = write_report(
            args.run_dir,
            args.out,
            tsne=args.tsne,
            max_examples=args.max_examples,
            top_k=args.top_k,
            argv=list(argv) if argv is not None else sys.argv[1:],
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"avssl-report: {e}", file=sys.stderr)
        return 2
    print(f"wrote {readme}")
    return 0


def entry() -> None:
    """Console-script entry point (``avssl-report``)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
