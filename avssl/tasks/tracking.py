"""Colourisation as a pretext for tracking (Vondrick et al., ECCV 2018): ``colorization_tracking``;
``prepare`` fits the colour quantisation (details: docs/tracking.md).
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/tracking.py".
"""

from __future__ import annotations

import functools
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.colour import rgb_to_lab
from avssl.data.dataset import FrameReader
from avssl.data.manifest import read_manifest
from avssl.models.tracking import ColourTracker, TrackingOptions
from avssl.tasks.common import Prepared, Task, row_num_frames

#: the ``tracking`` options about the examples and the colour clusters; the rest are the model's
SAMPLING_OPTIONS = {"refs", "gap", "per_video", "colours", "colour_frames", "synth_split"}


def _window(row: dict[str, Any], reader: FrameReader) -> tuple[int, int]:
    """The half-open frame range a row's example is drawn from."""
    if "window" in row:
        lo, hi = row["window"]
        return int(lo), int(hi)
    if "frames" in row:
        return int(min(row["frames"])), int(max(row["frames"])) + 1
    return 0, row_num_frames(
        row, reader, "'window', 'frames'", "draw reference and target frames from"
    )


def make_example(
    row: dict[str, Any],
    reader: FrameReader,
    rng: np.random.Generator,
    epoch: int = 0,
    *,
    refs: int = 1,
    gap: tuple[int, int] = (1, 8),
) -> dict[str, torch.Tensor]:
    """``frames`` uint8 ``(refs + 1, 3, H, W)``: frames ``t - refs*g, ..., t - g, t`` (the target
    ``t`` last), ``g`` uniform in ``gap`` (shrunk to fit a short window); ``target`` 0 (the model
    makes its own targets: the target frame's colours)."""
    lo, hi = _window(row, reader)
    if hi - lo < refs + 1:
        raise ValueError(
            f"{row['video']}: window [{lo}, {hi}) holds {hi - lo} frames; need {refs + 1} "
            f"(tracking.refs={refs} references and a target)"
        )
    g = int(rng.integers(gap[0], gap[1] + 1))
    g = min(g, (hi - lo - 1) // refs)
    t = int(rng.integers(lo + refs * g, hi))
    idx = [t - g * k for k in range(refs, -1, -1)]
    return {"frames": reader(row["video"], idx), "target": torch.tensor(0)}


def kmeans(points: torch.Tensor, k: int, *, seed: int = 0, iters: int = 30) -> torch.Tensor:
    """``k`` centres ``(k, D)`` of ``points`` ``(N, D)`` by Lloyd's iterations from k-means++
    seeding (Arthur & Vassilvitskii 2007), with a seeded generator (the global RNG is not
    touched). An empty cluster is re-seeded at the point farthest from its centre."""
    x = points.double()
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means: {n} points for {k} clusters")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(n, (1,), generator=g)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        pick = x[torch.multinomial(probs, 1, generator=g)]
        centres = torch.cat([centres, pick])
        d2 = torch.minimum(d2, ((x - pick) ** 2).sum(1))
    for _ in range(iters):
        dist = torch.cdist(x, centres)
        assign = dist.argmin(1)
        new = torch.zeros_like(centres).index_add_(0, assign, x)
        count = torch.bincount(assign, minlength=k).double()
        empty = count == 0
        new = new / count.clamp_min(1)[:, None]
        if empty.any():
            far = dist.gather(1, assign[:, None])[:, 0].argsort(descending=True)
            new[empty] = x[far[: int(empty.sum())]]
        if torch.allclose(new, centres):
            break
        centres = new
    return centres.float()


def synth_split(
    rows: list[dict[str, Any]], root: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The built-in set's own split of video rows: ``(train, val)`` by the ``split`` of the
    synth's ``manifest.jsonl`` beside the video folder (``root``), test clips left out; None
    when ``root`` is not a synth's video folder or some row's video is not in it."""
    man = root.parent / "manifest.jsonl"
    if root.name != "videos" or not (root.parent / "dataset.json").is_file() or not man.is_file():
        return None
    split = {Path(r["file"]).name: r["split"] for r in read_manifest(man) if "file" in r}
    if not rows or not all(r.get("video") in split for r in rows):
        return None
    return (
        [r for r in rows if split[r["video"]] == "train"],
        [r for r in rows if split[r["video"]] == "val"],
    )


def _repeat(rows: list[dict[str, Any]], times: int) -> list[dict[str, Any]]:
    """Whole-video rows (no window or frames) repeated ``times`` times: one epoch then draws
    ``times`` examples from each video (each copy its own random stream); other rows as they are."""
    out: list[dict[str, Any]] = []
    for row in rows:
        whole = not any(k in row for k in ("window", "frames", "frame"))
        out += [row] * (times if whole else 1)
    return out


def colour_centres(
    rows: list[dict[str, Any]], reader: FrameReader, o: TrackingOptions, seed: int
) -> torch.Tensor:
    """k-means centres ``(K, 2)`` of the ab pixels of ``o.colour_frames`` frames, one random
    frame from each of that many rows spread over ``rows`` (at most 400k pixels, subsampled)."""
    n = min(o.colour_frames, len(rows))
    picks = np.linspace(0, len(rows) - 1, n).round().astype(int)
    abs_: list[torch.Tensor] = []
    for k, i in enumerate(picks):
        row = rows[int(i)]
        rng = np.random.default_rng([seed, 4243, k])
        lo, hi = _window(row, reader)
        frame = reader(row["video"], [int(rng.integers(lo, hi))])  # (1, 3, H, W) uint8
        lab = rgb_to_lab(frame.float() / 255.0)[0]
        abs_.append(lab[1:].reshape(2, -1).T)
    ab = torch.cat(abs_)
    if ab.shape[0] > 400_000:
        g = torch.Generator().manual_seed(seed)
        ab = ab[torch.randperm(ab.shape[0], generator=g)[:400_000]]
    return kmeans(ab, o.colours, seed=seed)


def prepare(
    cfg: Any, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]], reader: FrameReader
) -> Prepared:
    """What the task takes from the run (``cfg`` an :class:`avssl.train.TrainConfig`): the split
    (module docstring), the repeated rows, the colour clusters and the model's options."""
    o: TrackingOptions = cfg.tracking
    o.check()
    if cfg.options.balanced_loss:
        raise ValueError("options.balanced_loss: colorization_tracking makes its own targets")
    if o.synth_split:
        own = synth_split(train_rows + val_rows, reader.root)
        if own is not None:
            train_rows, val_rows = own
            if cfg.data.max_rows:
                train_rows = train_rows[: cfg.data.max_rows]
    if not train_rows:
        raise ValueError("colorization_tracking: no training videos")
    centres = colour_centres(train_rows, reader, o, cfg.seed)
    make = functools.partial(make_example, refs=o.refs, gap=(int(o.gap[0]), int(o.gap[1])))
    kw = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in SAMPLING_OPTIONS}
    kw.update(centres=centres, mean=tuple(cfg.aug.mean), std=tuple(cfg.aug.std))
    return Prepared(
        train_rows=_repeat(train_rows, o.per_video),
        val_rows=_repeat(val_rows, max(1, o.per_video // 4)),
        model_kwargs=kw,
        make_train=make,
        make_val=make,
        num_classes=o.colours,
    )


TASK = Task(
    name="colorization_tracking",
    manifest="videos.jsonl",
    description="Vondrick et al.: colour a grey frame by pointing into coloured reference "
    "frames; the pointers track (avssl-track)",
    prepare=prepare,
    build_model=ColourTracker,
    # a stride-4 map from convnet_tiny's first two blocks (its default four give 1/16)
    defaults={"model": {"channels": [32, 64]}},
)
