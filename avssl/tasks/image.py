"""Image pretext tasks: the single-frame cases of the training core, alone or several at once
(one backbone, one head per task, :mod:`avssl.tasks.image_heads`; docs/image_tasks.md).
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/image.py".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from avssl.data.dataset import FrameReader
from avssl.data.transforms import AugmentConfig, augment
from avssl.tasks.common import FrameEncoder, Prepared, Task, row_num_frames
from avssl.tasks.image_heads import HEADS, Colorization
from avssl.tasks.image_ops import ab_bins, ab_weights, relative_position_layout, sample_patch_pair


def frame_index(row: dict[str, Any], reader: FrameReader, rng: np.random.Generator) -> int:
    """The frame of a video row to read (module docstring): its ``frame``, else a uniform draw
    from its ``window`` (half-open), its ``frames`` / ``subsequences``, or its ``num_frames``
    (from the row or the prep's probe)."""
    if "frame" in row:
        return int(row["frame"])
    if "window" in row:
        lo, hi = row["window"]
        return int(rng.integers(lo, hi))
    if "frames" in row or "subsequences" in row:
        frames = row.get("frames") or [f for s in row["subsequences"] for f in s]
        return int(frames[int(rng.integers(len(frames)))])
    n = row_num_frames(row, reader, "'frame', 'window', 'frames'", "draw a frame from")
    return int(rng.integers(n))


def read_frame(row: dict[str, Any], reader: FrameReader, rng: np.random.Generator) -> torch.Tensor:
    """One frame of a manifest row (an image, or a video's :func:`frame_index`) as uint8
    ``(1, 3, H, W)`` at the reader's size."""
    if "path" in row:
        return reader.image(str(row["path"]))
    if "video" not in row:
        raise ValueError(f"manifest row {row}: neither 'path' (an image) nor 'video'")
    return reader(row["video"], [frame_index(row, reader, rng)])


def make_example(
    row: dict[str, Any],
    reader: FrameReader,
    rng: np.random.Generator,
    epoch: int = 0,
    *,
    views: int = 1,
    layout: tuple[int, int, int, int] | None = None,
    drop_colour: bool = False,
    mask_tokens: int = 0,
) -> dict[str, torch.Tensor]:
    """``frames`` ``(views, 3, H, W)`` (the same frame: the trainer augments each view), and what
    the heads need: ``position`` and ``patch_yx`` (``layout`` = (size, patch, gap, jitter)) with
    ``patch_keep`` (the channel each patch keeps, ``drop_colour``), ``mask_noise`` (MAE's
    ``mask_tokens`` uniform draws), ``exemplar`` (the row's class). ``target``: the position,
    else the exemplar, else 0 (the heads make their own targets)."""
    frame = read_frame(row, reader, rng)
    ex: dict[str, torch.Tensor] = {
        "frames": frame.repeat(views, 1, 1, 1),
        "target": torch.tensor(0),
    }
    if "exemplar" in row:
        ex["exemplar"] = ex["target"] = torch.tensor(int(row["exemplar"]))
    if layout is not None:
        size, patch, gap, jitter = layout
        yx, label = sample_patch_pair((size, size), patch, gap, jitter, rng)
        ex["patch_yx"] = torch.from_numpy(yx)
        ex["position"] = ex["target"] = torch.tensor(label)
        if drop_colour:
            ex["patch_keep"] = torch.from_numpy(rng.integers(0, 3, size=2))
    if mask_tokens:
        ex["mask_noise"] = torch.from_numpy(rng.random(mask_tokens, dtype=np.float32))
    return ex


class ImageModel(nn.Module):
    """One backbone (``encoder.net``), one head per task of ``tasks`` (name -> loss weight).

    ``forward(batch) -> (loss, logs)``: the weighted sum of the heads' losses; ``logs`` holds the
    first classifying head's ``logits`` and ``target`` (the trainer's accuracy) and, with several
    heads, ``scalars`` (``<task>_loss``, ``<task>_acc``). ``head_options`` maps a task to its head's
    keyword arguments (:mod:`avssl.tasks.image_heads`; absent: the head's defaults).
    """

    def __init__(
        self,
        backbone: str,
        *,
        tasks: Mapping[str, float],
        head_options: Mapping[str, Mapping[str, Any]] | None = None,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(tasks) - set(HEADS))
        if not tasks or unknown:
            raise ValueError(f"image tasks {unknown or '{}'}: choose from {sorted(HEADS)}")
        self.encoder = FrameEncoder(backbone, **backbone_kwargs)
        self.weights = {name: float(w) for name, w in tasks.items()}
        options = {name: dict((head_options or {}).get(name, {})) for name in tasks}
        if "mae" in options:  # MAE's decoder works on the ViT's patch tokens
            options["mae"]["net"] = self.encoder.net
        dim = self.encoder.dim
        self.heads = nn.ModuleDict({name: HEADS[name](dim, **options[name]) for name in tasks})

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        net = self.encoder.net
        if len(self.heads) == 1:
            return next(iter(self.heads.values()))(net, batch)
        total: torch.Tensor | None = None
        logs: dict[str, Any] = {}
        scalars: dict[str, torch.Tensor] = {}
        for name, head in self.heads.items():
            loss, part = head(net, batch)
            total = (
                self.weights[name] * loss if total is None else total + self.weights[name] * loss
            )
            scalars[f"{name}_loss"] = loss.detach()
            if "logits" in part:
                hit = part["logits"].argmax(1) == part["target"]
                scalars[f"{name}_acc"] = hit.float().mean()
                if "logits" not in logs:
                    logs.update(logits=part["logits"], target=part["target"])
        assert total is not None
        return total, {**logs, "scalars": scalars}


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k <= 0 or k >= n:
        return list(range(n))
    return np.linspace(0, n - 1, k).round().astype(int).tolist()


def video_segments(rows: list[dict[str, Any]], per_video: int, reader: FrameReader) -> list:
    """Whole-video rows (a ``videos.jsonl``: ``num_frames`` only) -> ``per_video`` rows each,
    the k-th with ``window`` = the k-th of ``per_video`` equal segments of the video (a frame is
    drawn in it per example). Without this an epoch over 14 videos would show 14 frames, each
    repeated; rows that name frames or windows (pretext manifests) and images stay as they are."""
    if per_video <= 0:
        return rows
    out: list[dict[str, Any]] = []
    for row in rows:
        if "video" not in row or any(
            k in row for k in ("frame", "window", "frames", "subsequences")
        ):
            out.append(row)
            continue
        info = reader.infos.get(row["video"])
        n = int(row.get("num_frames") or (info.num_frames if info is not None else 0))
        if n <= 0:
            raise ValueError(f"manifest row of {row['video']}: no num_frames to cut into segments")
        k = min(per_video, n)
        out += [{**row, "window": [i * n // k, (i + 1) * n // k]} for i in range(k)]
    return out


def exemplar_rows(rows: list[dict[str, Any]], classes: int, seed: int, reader: FrameReader) -> list:
    """The surrogate classes: the rows (images; ``classes`` > 0: that many, spread) or, for
    video rows, ``classes or 1000`` frames drawn round-robin over the videos (seeded), each row
    tagged ``exemplar`` = its class and pinned to its ``frame``."""
    if all("path" in r for r in rows):
        return [{**rows[i], "exemplar": k} for k, i in enumerate(_spread(len(rows), classes))]
    out = []
    for k in range(classes or 1000):
        row = rows[k % len(rows)]
        rng = np.random.default_rng([seed, 4242, k])
        frame = frame_index(row, reader, rng)
        out.append({**row, "frame": frame, "exemplar": k})
    return out


def colour_prior(
    rows: list[dict[str, Any]],
    reader: FrameReader,
    aug: AugmentConfig,
    head: Colorization,
    *,
    count: int,
    seed: int,
) -> torch.Tensor:
    """Bin counts ``(Q,)`` of the colour targets of ``count`` training frames (spread over the
    rows, one frame each, the evaluation crop): the empirical distribution to rebalance."""
    counts = torch.zeros(head.q, dtype=torch.float64)
    picks = _spread(len(rows), count)
    for start in range(0, len(picks), 64):
        part = picks[start : start + 64]
        raw = torch.stack(
            [read_frame(rows[i], reader, np.random.default_rng([seed, 99, i])) for i in part]
        )
        frames = augment(raw, aug, train=False)[:, 0]
        _, target = head.targets(frames)
        counts += torch.bincount(target.flatten(), minlength=head.q).double()
    return counts


def _weights(o: Any, tasks: Mapping[str, float] | None) -> dict[str, float]:
    """The heads and their loss weights: ``tasks`` (one task), else ``options.tasks``."""
    weights = dict(tasks) if tasks is not None else dict(o.tasks)
    if not weights:
        raise ValueError(
            "multi_task: options.tasks is empty; e.g. "
            "--set 'options.tasks={relative_position: 1, colorization: 1}'"
        )
    unknown = sorted(set(weights) - set(HEADS))
    if unknown:
        raise ValueError(f"options.tasks: unknown {unknown}; choose from {sorted(HEADS)}")
    if o.balanced_loss:
        raise ValueError("options.balanced_loss: the image tasks' targets are balanced by design")
    return weights


def _mae_tokens(cfg: Any) -> int:
    """MAE's patches per frame (its mask draws per example); checks backbone and size."""
    size, p = cfg.aug.size, cfg.model.kwargs(cfg.backbone).get("patch_size", 16)
    if cfg.backbone != "vit_tiny" or size % p:
        raise ValueError(
            f"mae needs backbone vit_tiny and aug.size ({size}) a multiple of "
            f"its patch ({p}); got backbone {cfg.backbone}"
        )
    return int((size // p) ** 2)


def _colour_weight(cfg: Any, rows: list[dict[str, Any]], reader: FrameReader) -> torch.Tensor:
    """Colourisation's class rebalancing from the colour prior of the training frames."""
    o = cfg.options
    head = Colorization(
        1, hidden=0, grid=o.colour_grid, bin_size=o.colour_bin, mean=tuple(cfg.aug.mean),
        std=tuple(cfg.aug.std),
    )  # fmt: skip
    counts = colour_prior(rows, reader, cfg.aug, head, count=o.colour_prior_rows, seed=cfg.seed)
    weight, _ = ab_weights(counts, head.bins, lam=o.rebalance_lambda, sigma=o.rebalance_sigma)
    return weight


def prepare(
    cfg: Any,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    reader: FrameReader,
    *,
    tasks: Mapping[str, float] | None = None,
) -> Prepared:
    """What the image tasks take from the run (``cfg`` a :class:`avssl.train.TrainConfig`):
    model keyword arguments, the example makers, the exemplar rows, the colour prior."""
    o = cfg.options
    weights = _weights(o, tasks)
    size = cfg.aug.size
    train_rows = video_segments(train_rows, o.frames_per_video, reader)
    val_rows = video_segments(val_rows, o.frames_per_video, reader)
    stats = {"mean": tuple(cfg.aug.mean), "std": tuple(cfg.aug.std)}
    hidden = {"hidden": o.head_hidden} if o.head_hidden >= 0 else {}
    heads: dict[str, dict[str, Any]] = {
        "rotation": hidden,
        "relative_position": {**hidden, "chroma": o.chroma, **stats},
        "colorization": {**hidden, "grid": o.colour_grid, "bin_size": o.colour_bin, **stats},
        "simclr": {"proj_dim": o.proj_dim, "temperature": o.temperature},
        "mae": {
            "mask_ratio": o.mask_ratio,
            "decoder_dim": o.decoder_dim,
            "decoder_depth": o.decoder_depth,
            "decoder_heads": o.decoder_heads,
            "norm_pix": o.norm_pix,
        },
    }
    example: dict[str, Any] = {"views": 1}
    if "simclr" in weights:
        example["views"] = 2
    if "exemplar" in weights:
        if o.exemplar_views < 1:
            raise ValueError(f"options.exemplar_views={o.exemplar_views}: need >= 1")
        example["views"] = max(example["views"], o.exemplar_views)
        train_rows = exemplar_rows(train_rows, o.exemplar_classes, cfg.seed, reader)
        val_rows = [train_rows[i] for i in _spread(len(train_rows), cfg.data.max_val_rows or 500)]
        heads["exemplar"] = {"num_exemplars": len(train_rows)}
    if "relative_position" in weights:
        patch, gap, jitter = relative_position_layout(size, o.patch, o.gap, o.jitter)
        heads["relative_position"]["patch"] = patch
        example["layout"] = (size, patch, gap, jitter)
        example["drop_colour"] = o.chroma == "drop"
    if "mae" in weights:
        example["mask_tokens"] = _mae_tokens(cfg)
    if "colorization" in weights and o.colour_prior_rows > 0:
        heads["colorization"]["ab_weight"] = _colour_weight(cfg, train_rows, reader)
    make = functools.partial(make_example, **example)
    classes = {
        "rotation": 4,
        "relative_position": 8,
        "simclr": 0,
        "colorization": len(ab_bins(o.colour_bin)),
        "exemplar": heads.get("exemplar", {}).get("num_exemplars", 0),
    }
    first = next((t for t in weights if t != "mae"), None)
    return Prepared(
        train_rows=train_rows,
        val_rows=val_rows,
        model_kwargs={"tasks": weights, "head_options": heads},
        make_train=make,
        make_val=make,
        num_classes=classes[first] if first else 0,
    )


_DESCRIPTIONS = {
    "rotation": "RotNet: which of 0/90/180/270 degrees was the frame turned by",
    "relative_position": "Doersch et al.: where is the second patch (8 neighbours of a 3x3 grid)",
    "colorization": "Zhang et al.: quantised ab colours from lightness, class-rebalanced",
    "exemplar": "Exemplar CNN: augmented views of an image classified as that image",
    "simclr": "SimCLR: NT-Xent between two augmented views, across the batch",
    "mae": "masked autoencoder: a ViT sees 25% of the patches, the decoder paints the rest",
}
# the papers' augmentations where they differ from the trainer's defaults
_DEFAULTS: dict[str, dict[str, Any]] = {
    "simclr": {
        "aug": {
            "scale": [0.08, 1.0],
            "brightness": 0.8,
            "contrast": 0.8,
            "saturation": 0.8,
            "hue": 0.2,
            "grayscale_p": 0.2,
        }
    },
    "exemplar": {"aug": {"scale": [0.3, 1.0], "hue": 0.1}},
    "mae": {
        "backbone": "vit_tiny",
        "aug": {"scale": [0.2, 1.0], "brightness": 0.0, "contrast": 0.0, "saturation": 0.0},
    },
    "multi_task": {
        "options": {"tasks": {"relative_position": 1.0, "colorization": 1.0, "exemplar": 1.0}}
    },
}


def _task(name: str) -> Task:
    one = {name: 1.0} if name != "multi_task" else None
    return Task(
        name=name,
        manifest="images.jsonl",
        description=_DESCRIPTIONS.get(name, "several image heads on one backbone, weighted"),
        prepare=functools.partial(prepare, tasks=one),
        build_model=functools.partial(ImageModel, tasks=one or _DEFAULTS[name]["options"]["tasks"]),
        views=name in ("simclr", "exemplar", "multi_task"),
        defaults=_DEFAULTS.get(name),
    )


TASKS: dict[str, Task] = {name: _task(name) for name in (*HEADS, "multi_task")}
