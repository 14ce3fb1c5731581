"""The PNGs of avssl-report: training curves, confusion matrices, per-fold bars, embedding maps
and retrieval grids (matplotlib's Agg canvas through :class:`matplotlib.figure.Figure`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avssl.data.decode import VIDEO_SUFFIXES
from avssl.data.manifest import atomic_output
from avssl.data.suffixes import AUDIO_SUFFIXES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100  # every PNG; the spec allows at most 150
THUMB = 96  # thumbnail side in the retrieval grids (pixels)
MAP_MAX_POINTS = 20000  # PCA fit and scatter on at most this many points (fixed subsample)
_GREY = (160, 160, 160)
_BORDER = {"query": (40, 90, 220), True: (30, 170, 60), False: (220, 40, 40), None: (120, 120, 120)}


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
    return np.convolve(y, k, mode="same") / np.convolve(np.ones_like(y), k, mode="same")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _series(recs: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["x"], float(r[key])) for r in recs if _is_number(r.get(key))]
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


def _style(ax: Axes, ylabel: str, title: str, *, unit: bool = False, xlabel: bool = True) -> None:
    """Labels, title and grid of a training panel; ``unit``: y from 0 to 1."""
    if xlabel:
        ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if unit:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)


# figure -> curves (key, label, colour); val_* keys are the held-out points of the evaluations
_CURVES = {
    "loss": [("loss", "train loss", "C0"), ("val_loss", "held-out loss", "C3")],
    "accuracy": [
        ("acc", "train accuracy", "C0"),
        ("val_acc", "held-out accuracy", "C3"),
        ("val_balanced_acc", "held-out balanced", "C2"),
    ],
}


def plot_training(
    train: list[dict[str, Any]], evals: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    """Loss, accuracy, learning-rate and throughput PNGs; keys of the result name what was drawn."""
    made: dict[str, Path] = {}
    for name, curves in _CURVES.items():
        fig = _figure(6.0, 3.4)
        ax = fig.add_subplot()
        drawn = False
        for key, label, color in curves:
            held_out = key.startswith("val_")
            x, y = _series(evals if held_out else train, key)
            if x.size and held_out:
                ax.plot(x, y, color=color, marker="o", linestyle="--", linewidth=1, label=label)
            elif x.size:
                _curve(ax, x, y, label, color)
            drawn = drawn or bool(x.size)
        if drawn:
            _style(ax, name, f"{name} vs step", unit=name == "accuracy")
            ax.legend(fontsize=8)
            made[name] = _save(fig, out / f"{name}.png")
    x, y = _series(train, "lr")
    if x.size:
        fig = _figure(6.0, 2.6)
        ax = fig.add_subplot()
        ax.plot(x, y, color="C4", linewidth=1.5)
        _style(ax, "learning rate", "learning rate")
        made["lr"] = _save(fig, out / "lr.png")
    xs, ys = _series(train, "samples_per_s")
    xw, yw = _series(train, "data_wait")
    if xs.size or xw.size:
        fig = _figure(6.0, 4.2 if xs.size and xw.size else 2.6)
        rows = int(bool(xs.size)) + int(bool(xw.size))
        axes = iter(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
        if xs.size:
            ax = next(axes)
            ax.plot(xs, ys, color="C1", marker=".", linewidth=1)
            title = f"throughput (median {np.median(ys):.1f} samples/s)"
            _style(ax, "samples / s", title, xlabel=False)
        if xw.size:
            ax = next(axes)
            ax.plot(xw, yw, color="C5", marker=".", linewidth=1)
            title = "fraction of time blocked on the data loader"
            _style(ax, "data wait (fraction)", title, unit=True, xlabel=False)
        ax.set_xlabel("step")
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
    names = [str(c) for c in (classes if classes and len(classes) == k else range(k))]
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
    for i, j in zip(*np.nonzero(cm), strict=True) if k <= 20 else ():
        colour = "white" if norm[i, j] > 0.5 else "black"
        fontsize = 7 if k <= 12 else 5
        ax.text(j, i, f"{cm[i, j]:.0f}", ha="center", va="center", fontsize=fontsize, color=colour)
    total = cm.sum()
    acc = float(np.trace(cm) / total) if total else float("nan")
    ax.set_title(f"{title}\n{total:.0f} samples, diagonal {acc:.3f}", fontsize=9)
    return _save(fig, path)


def _fold_table(per_fold: Sequence[Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Fold labels and the score series to draw from a ``per_fold`` list; ValueError if none.

    Numbers are one series (``score``). Objects: the label comes from ``fold`` / ``test_fold`` /
    ``split`` / ``name`` (else the position); the series are the numeric fields whose values all
    lie in [0, 1] (scores), else the first numeric field.
    """
    if not per_fold:
        raise ValueError("per_fold is empty")
    if all(_is_number(v) for v in per_fold):
        return [str(i + 1) for i in range(len(per_fold))], {"score": [float(v) for v in per_fold]}
    if not all(isinstance(v, dict) for v in per_fold):
        raise ValueError("per_fold must be a list of numbers or a list of objects")
    label_key = next(
        (k for k in ("fold", "test_fold", "split", "name") if all(k in d for d in per_fold)), None
    )
    labels = [str(d[label_key]) if label_key else str(i + 1) for i, d in enumerate(per_fold)]
    numeric = {
        key: [float(d[key]) for d in per_fold]
        for key in per_fold[0]
        if key != label_key and all(_is_number(d.get(key)) for d in per_fold)
    }
    if not numeric:
        raise ValueError("per_fold objects have no numeric field")
    scores = {
        k: v
        for k, v in numeric.items()
        if all(0.0 <= x <= 1.0 for x in v) and k.lower() not in ("c", "gamma")
    }
    return labels, scores or dict(list(numeric.items())[:1])


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
    marker_of = {sp: markers[i % len(markers)] for i, sp in enumerate(splits)}
    size = 14.0 if coords.shape[0] <= 2000 else 5.0 if coords.shape[0] <= 10000 else 2.0
    for sp in splits:
        in_split = np.ones(coords.shape[0], bool) if split is None else np.asarray(split) == sp
        for u in uniq:
            sel = in_split & (labels == u)
            if sel.any():
                ax.scatter(
                    coords[sel, 0],
                    coords[sel, 1],
                    s=size,
                    marker=marker_of[sp],
                    color=colour_of.get(u, (0.6, 0.6, 0.6, 1.0)),
                    alpha=0.75,
                    linewidths=0,
                )
    from matplotlib.lines import Line2D

    def name(u: int) -> str:
        return names[u] if names is not None and 0 <= u < len(names) else str(u)

    legend = [] if len(uniq) > 20 else [("o", colour_of.get(u, "grey"), name(u)) for u in uniq]
    if len(splits) > 1:
        legend += [(marker_of[sp], "k", sp) for sp in splits]
    if legend:
        handles = [
            Line2D([], [], marker=m, linestyle="", color=c, label=lab) for m, c, lab in legend
        ]
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.2)
    return _save(fig, path)


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
    p = root / path_part if root is not None else Path(path_part)  # an absolute path stays
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
    out = np.full((img.shape[0] + 2 * width, img.shape[1] + 2 * width, 3), color, np.uint8)
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
    for ax in axes.flat:
        ax.set_axis_off()
    for i, ex in enumerate(rows):
        items: list[tuple[str, str | bool | None]] = [(ex["query"], "query")]
        for j, nb in enumerate(ex["neighbours"][: cols - 1]):
            rel = ex["relevant"][j] if j < len(ex["relevant"]) else None
            items.append((nb, bool(rel) if isinstance(rel, bool | int) else None))
        for j, (item, kind) in enumerate(items):
            ax = axes[i, j]
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
