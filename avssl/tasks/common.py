"""What every pretext task shares: the :class:`Task` record and the frame encoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from avssl.data.dataset import FrameReader

#: ``make(row, reader, rng, epoch) -> dict of tensors``: one example, in a data-loader worker
#: (``rng`` seeded by (seed, epoch, index); ``epoch`` for makers with a schedule: av_sync's
#: curriculum)
MakeExample = Callable[[dict[str, Any], FrameReader, np.random.Generator, int], dict[str, Any]]


@dataclass(frozen=True)
class Prepared:
    """What :attr:`Task.prepare` gives the trainer: the rows (a task may replace them: Exemplar's
    surrogate classes), keyword arguments for ``build_model`` (the backbone's own come from the
    run's ``model`` section), the example makers (picklable: they go to the loader processes)
    and the number of classes of the held-out per-class accuracy (0: none, e.g. SimCLR's "which
    column is my other view", MAE's reconstruction)."""

    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    model_kwargs: dict[str, Any]
    make_train: MakeExample
    make_val: MakeExample
    num_classes: int


@dataclass(frozen=True)
class Task:
    """A pretext task. The one protocol: ``prepare(cfg, train_rows, val_rows, reader) ->
    Prepared`` fits the task to the run (``cfg`` a :class:`avssl.train_config.TrainConfig`), then
    ``build_model(backbone, **prepared.model_kwargs, **backbone_kwargs)`` makes the model whose
    ``forward(batch)`` returns ``(loss, logs)``."""

    name: str
    manifest: str  # the prep manifest it reads, e.g. "shuffle_learn.jsonl"
    description: str
    prepare: Callable[..., Prepared]
    build_model: Callable[..., nn.Module]
    # the row played backwards with the same target, where time reversal preserves the label
    # (training-time augmentation, ``data.time_reverse``); None where it does not (arrow of time)
    reverse_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # the target is the row's (``data.shuffle_labels`` may permute it); False: made per sample
    fixed_targets: bool = False
    # pair tasks (audio-visual): examples carry ``audio`` as well as ``frames``
    pair: bool = False
    # the task's own defaults over TrainConfig's (nested mapping; a --config file and --set
    # apply on top): the pair tasks default to their CPU-scale run on the built-in set
    defaults: dict[str, Any] | None = None
    # the T frames of an example are views: the trainer augments each independently (SimCLR,
    # Exemplar) instead of with one crop/flip/jitter for the whole clip
    views: bool = False


def balanced_weight(rows: list[dict[str, Any]], num_classes: int) -> torch.Tensor:
    """Inverse class frequency of the rows' targets, mean 1 (``options.balanced_loss``)."""
    targets = [int(r["target"]) for r in rows]
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / len(counts)
    return torch.tensor(w, dtype=torch.float32)


def row_task(
    name: str,
    description: str,
    make_example: MakeExample,
    build_model: Callable[..., nn.Module],
    options: Callable[[Any, dict[str, Any]], dict[str, Any]],
    num_classes: Callable[[dict[str, Any]], int],
    reverse_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Task:
    """A task whose manifest rows hold the frames and the target (the temporal-order tasks):
    one ``make_example`` for training and held-out rows; model options from ``options(
    cfg.options, first training row)``, ``options.head_hidden`` and ``options.balanced_loss``."""

    def prepare(cfg: Any, train_rows: list, val_rows: list, reader: FrameReader) -> Prepared:
        row0 = train_rows[0]
        k = num_classes(row0)
        kw: dict[str, Any] = options(cfg.options, row0)
        if cfg.options.head_hidden >= 0:
            kw["head_hidden"] = cfg.options.head_hidden
        if cfg.options.balanced_loss:
            kw["class_weight"] = balanced_weight(train_rows, k)
        return Prepared(train_rows, val_rows, kw, make_example, make_example, k)

    return Task(
        name=name,
        manifest=f"{name}.jsonl",
        description=description,
        prepare=prepare,
        build_model=build_model,
        reverse_row=reverse_row,
        fixed_targets=True,
    )


def read_target(row: dict[str, Any], read: FrameReader, indices: Any) -> dict[str, Any]:
    """The example of a row that names its frames and target: ``frames`` uint8 ``(T, 3, H, W)``
    of the video in the order shown, ``target`` int64."""
    return {"frames": read(row["video"], indices), "target": torch.tensor(int(row["target"]))}


class FrameEncoder(nn.Module):
    """A 2-D backbone applied to every frame: ``(B, T, C, H, W) -> (B, T, D)`` (shared weights:
    the siamese towers of Shuffle & Learn and O3N are one network run on each input)."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__()
        from avssl.models.backbones import BACKBONES, build_backbone

        spec = BACKBONES[backbone]
        if spec.video:
            raise ValueError(f"backbone {backbone!r} takes clips; this task encodes frames")
        self.net = build_backbone(backbone, **kwargs)
        self.backbone_kwargs = dict(kwargs)  # as built (in_channels included): for the checkpoint
        self.dim = int(getattr(self.net, "feature_dim", spec.feature_dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        feats: torch.Tensor = self.net(frames.flatten(0, 1))
        return feats.view(b, t, -1)


def row_num_frames(row: dict[str, Any], reader: FrameReader, fields: str, purpose: str) -> int:
    """The frame count of a video row: its ``num_frames``, else the prep's probe of its video.

    Raises:
        ValueError: neither is known; the message lists ``fields`` (the row fields the caller
            would also have taken) and what the frames were for.
    """
    n = row.get("num_frames")
    info = reader.infos.get(row["video"])
    n = n if n is not None else (info.num_frames if info is not None else None)
    if not n:
        where = f"manifest row of {row['video']}"
        raise ValueError(f"{where}: no {fields} or 'num_frames' to {purpose}")
    return int(n)


def stack_of_differences(clips: torch.Tensor) -> torch.Tensor:
    """``(..., L, C, H, W)`` -> ``(..., (L-1)*C, H, W)``: the L - 1 consecutive frame differences
    as one image (O3N's "stack of differences", a cheap stand-in for stacked optical flow: motion
    and its direction show in the first layer, where a per-frame network sees only appearance)."""
    diffs = clips[..., 1:, :, :, :] - clips[..., :-1, :, :, :]
    return diffs.flatten(-4, -3)


def _hann2d(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    wy = torch.hann_window(h, periodic=False, device=device, dtype=dtype)
    wx = torch.hann_window(w, periodic=False, device=device, dtype=dtype)
    return wy[:, None] * wx[None, :]


def estimate_translation(
    frames: torch.Tensor, reference: torch.Tensor, *, max_shift: int | None = None
) -> torch.Tensor:
    """Global translation of each frame relative to ``reference`` by phase correlation.

    ``frames`` ``(N, H, W)`` and ``reference`` ``(N, H, W)`` (or broadcastable) grey images;
    returns ``(N, 2)`` float shifts ``(dy, dx)`` in pixels such that ``frames[n]`` shifted by
    ``(dy, dx)`` (content moved down/right for positive values) matches ``reference[n]``, i.e.
    ``torch.roll(frames[n], (round(dy), round(dx)), (0, 1)) ~ reference[n]``.

    Method: the inverse FFT of the normalised cross-power spectrum of the mean-removed,
    Hann-windowed images peaks at the shift; the peak is refined to sub-pixel by a parabola on
    each axis (clamped to +-0.5). ``max_shift`` (pixels) restricts the search to ``|dy|, |dx| <=
    max_shift``. Limits: one translation per frame (no rotation, zoom, parallax; the dominant
    layer wins), a shift near half the frame is ambiguous, textureless frames give an unreliable
    peak. No gradient flows through the estimate.
    """
    with torch.no_grad():
        n, h, w = frames.shape
        x = frames.float()
        r = reference.float().expand_as(x)
        win = _hann2d(h, w, x.device, x.dtype)
        x = (x - x.mean(dim=(-2, -1), keepdim=True)) * win
        r = (r - r.mean(dim=(-2, -1), keepdim=True)) * win
        cross = torch.fft.rfft2(r) * torch.fft.rfft2(x).conj()
        cross = cross / cross.abs().clamp_min(1e-8)
        corr = torch.fft.irfft2(cross, s=(h, w))  # (N, H, W), peak at the shift (mod H, W)
        if max_shift is not None:
            sy = torch.arange(h, device=x.device)
            sx = torch.arange(w, device=x.device)
            sy = torch.minimum(sy, h - sy)  # |signed shift| of each index
            sx = torch.minimum(sx, w - sx)
            allowed = (sy[:, None] <= max_shift) & (sx[None, :] <= max_shift)
            corr = corr.masked_fill(~allowed, float("-inf"))
        flat = corr.flatten(1).argmax(dim=1)
        iy, ix = flat // w, flat % w
        rows = torch.arange(n, device=x.device)

        def refine(c0: torch.Tensor, cm: torch.Tensor, cp: torch.Tensor) -> torch.Tensor:
            cm = torch.nan_to_num(cm, neginf=0.0)  # a masked neighbour (max_shift edge)
            cp = torch.nan_to_num(cp, neginf=0.0)
            den = cm - 2 * c0 + cp
            off = torch.where(den < 0, 0.5 * (cm - cp) / den.clamp_max(-1e-12), 0.0)
            return off.clamp(-0.5, 0.5)

        c0 = corr[rows, iy, ix]
        oy = refine(c0, corr[rows, (iy - 1) % h, ix], corr[rows, (iy + 1) % h, ix])
        ox = refine(c0, corr[rows, iy, (ix - 1) % w], corr[rows, iy, (ix + 1) % w])
        dy = torch.where(iy > h // 2, iy - h, iy).to(x.dtype) + oy
        dx = torch.where(ix > w // 2, ix - w, ix).to(x.dtype) + ox
        return torch.stack([dy, dx], dim=1)


def translate(images: torch.Tensor, shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift ``(N, C, H, W)`` images by ``(N, 2)`` pixel shifts ``(dy, dx)`` (content moves
    down/right for positive values; bilinear, exact for integer shifts). Returns the shifted
    images (zeros where nothing was known) and the ``(N, 1, H, W)`` mask of valid pixels."""
    n, _, h, w = images.shape
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * shifts[:, 1].to(images.dtype) / w  # sample at x - dx
    theta[:, 1, 2] = -2.0 * shifts[:, 0].to(images.dtype) / h
    grid = nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    out = nn.functional.grid_sample(images, grid, "bilinear", "zeros", align_corners=False)
    ones = images.new_ones(n, 1, h, w)
    mask = nn.functional.grid_sample(ones, grid, "bilinear", "zeros", align_corners=False)
    return out, (mask > 1 - 1e-4).to(images.dtype)


def stabilize_clips(
    clips: torch.Tensor,
    *,
    reference: int | None = None,
    max_shift: int | None = None,
    subpixel: bool = True,
) -> torch.Tensor:
    """Remove the global camera translation of ``(B, L, C, H, W)`` float clips (a pan, hand-held
    shake) so that frame differences show object motion, not camera motion; pixels not seen by
    every frame are 0 in all frames.
    Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/common.py".
    """
    b, length, c, h, w = clips.shape
    grey = clips.float().mean(dim=2)  # (B, L, H, W)
    refs = sorted({length // 2, (length - 1) // 2}) if reference is None else [reference]
    shifts = torch.zeros(b, length, 2, device=clips.device)
    for r in refs:  # the middle pair of an even-length clip: the same pair played backwards
        est = estimate_translation(
            grey.flatten(0, 1),
            grey[:, r : r + 1].expand(-1, length, -1, -1).flatten(0, 1),
            max_shift=max_shift,
        ).view(b, length, 2)
        shifts += (est - est.mean(dim=1, keepdim=True)) / len(refs)
    if not subpixel:
        shifts = shifts.round()
    out, mask = translate(clips.flatten(0, 1), shifts.flatten(0, 1).to(clips.dtype))
    common = mask.view(b, length, 1, h, w).amin(dim=1, keepdim=True)
    return out.view(b, length, c, h, w) * common


def classification(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Cross-entropy (class-``weight``ed when given) and the logs every task returns."""
    loss = nn.functional.cross_entropy(logits.float(), target, weight=weight)
    return loss, {"logits": logits.detach()}


def mlp_head(d_in: int, hidden: int, d_out: int) -> nn.Module:
    """A linear classifier, or with ``hidden`` > 0 one hidden ReLU layer first."""
    if hidden <= 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class RowClassifier(nn.Module):
    """The temporal-order models' base: the balanced loss's class weights (a non-persistent
    buffer, ``options.balanced_loss``) and their weighted cross-entropy on ``batch["target"]``."""

    class_weight: torch.Tensor | None

    def __init__(self, class_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight, persistent=False)

    def classify(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple:
        return classification(logits, batch["target"], self.class_weight)
