"""Image pretext tasks: the single-frame cases of the training core, alone or several at once.

Every example is one frame -- an image of an image manifest (``avssl-prep digits | images``:
rows with ``path``) or a frame drawn from a row of any video manifest (``frame``, else anywhere in
its ``window``, else one of its ``frames``; a whole-video row, e.g. of ``videos.jsonl``, is first
cut into ``frames_per_video`` segments, one row each, a frame drawn within it) -- at
``data.frame_size``, augmented by the trainer (``batch["frames"]``, ``(B, V, 3, S, S)`` with
``S = aug.size``; ``V > 1`` views of the same frame, each augmented independently, for SimCLR and
Exemplar). A model is one backbone (``encoder.net``: what ``avssl-eval`` loads) and one *head* per
task; each head owns its loss, and :class:`ImageModel` sums them with per-task weights
(Doersch & Zisserman 2017's multi-task network, without their lasso or harmonisation). A single
task is the one-head case.

Heads (``options.*`` in parentheses; defaults are the papers' where the paper gives one):

- ``rotation`` (Gidaris et al. 2018): the frame turned by 0, 90, 180, 270 degrees, all four in
  the batch, a 4-way classifier on the backbone feature.
- ``relative_position`` (Doersch et al. 2015): two patches of a 3x3 grid, the centre one and one
  of its 8 neighbours, cut from the augmented frame at positions drawn in ``make_example``
  (:func:`~avssl.tasks.image_ops.sample_patch_pair`: ``patch``, ``gap`` and per-patch
  ``jitter``); each patch through the backbone, the two features concatenated, an 8-way
  classifier (hidden layer ``head_hidden``, default 256: the paper's fc7 after the fusion).
  Chromatic aberration (``chroma``): ``drop`` keeps one random channel per patch and sets the
  others to the dataset mean (the paper's colour dropping, without its faint noise), ``project``
  removes the green-magenta axis (the paper's alternative), ``grey`` keeps luma only, ``none``.
  The patches are cut after the trainer's crop and flip, so a flip cannot swap the label.
- ``colorization`` (Zhang et al. 2016): the backbone sees the frame's lightness only (the sRGB
  grey of the same L, 3 channels: the probe later feeds RGB) and predicts, per cell of a
  ``colour_grid`` x ``colour_grid`` grid, a distribution over the in-gamut ab bins
  (:func:`~avssl.tasks.image_ops.ab_bins`, ``colour_bin`` = 10 ab units: 261 bins by our gamut
  test where the paper's table has 313); the cell's target is the bin of its mean ab. Loss:
  cross-entropy weighted by the paper's class rebalancing (lambda 0.5, sigma 5) of the bin
  distribution measured on ``colour_prior_rows`` training frames at build time. Deviations: a
  coarse grid of cells from the pooled feature (the paper predicts every 4th pixel with a fully
  convolutional VGG), hard targets (the paper soft-encodes the 5 nearest bins), and the argmax
  read-out instead of the annealed mean. Grey images carry no colour: train it on video frames.
- ``exemplar`` (Dosovitskiy et al. 2014): every training image (``exemplar_classes`` > 0: that
  many, spread; a video manifest: that many random frames, default 1,000) is its own class;
  ``exemplar_views`` independently augmented views of it are classified into those classes.
  The augmentations are the trainer's (crop, scale, flip, colour), without the paper's rotation.
  Its held-out accuracy is measured on fresh views of training exemplars (new images have no
  class).
- ``simclr`` (Chen et al. 2020): two views, a projection MLP (``proj_dim``), NT-Xent with
  ``temperature`` over the batch, gathered across processes under DDP.
- ``mae`` (He et al. 2022): needs the ``vit_tiny`` backbone; ``mask_ratio`` of the patches
  masked at random (the draws come from ``make_example``, so a run is reproducible and resumes
  exactly), the encoder on the visible ones, a light decoder (``decoder_dim``, ``decoder_depth``,
  ``decoder_heads``) with mask tokens, MSE on the masked patches of per-patch normalised pixels
  (``norm_pix``). No classification: its runs log the loss only.
- ``multi_task``: ``options.tasks`` maps head names to loss weights (default: the paper's
  relative position + colourisation + exemplar, weights 1); the example carries what every head
  needs (the views, the patch positions, ...). Its logged accuracy is the first classifying
  head's; every head's loss and accuracy are logged as ``<task>_loss`` / ``<task>_acc``. With
  ``exemplar`` among the heads, the held-out set is the exemplars' (training images).

Every head runs the backbone on its own input (four rotations, two patches, the grey frame,
the views): in a multi-task step BatchNorm statistics see each of those batches in turn.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avssl import dist
from avssl.data.dataset import FrameReader
from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, augment
from avssl.tasks.common import FrameEncoder, Prepared, Task, classification, row_num_frames
from avssl.tasks.image_ops import (
    ab_bins,
    ab_weights,
    cut_patches,
    grey_from_lightness,
    mae_loss,
    nt_xent,
    patchify,
    quantize_ab,
    random_masking,
    relative_position_layout,
    rgb_to_lab,
    sample_patch_pair,
)

__all__ = ["HEADS", "TASKS", "ImageModel", "frame_index", "make_example", "prepare", "read_frame"]

_LUMA = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------- examples
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


# ---------------------------------------------------------------------------------- heads
def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


def _logs(loss: torch.Tensor, logs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return loss, {**logs, "target": target}


class _Stats(nn.Module):
    """Heads that undo the trainer's normalisation (``aug.mean`` / ``aug.std``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.std + self.mean).clamp(0.0, 1.0)

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean) / self.std


class Rotation(nn.Module):
    """Gidaris et al.: which of the 4 rotations; all four of every frame in the batch."""

    def __init__(self, dim: int, *, hidden: int = 0) -> None:
        super().__init__()
        self.head = _mlp(dim, hidden, 4)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, 0]
        turned = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
        target = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
        return _logs(*classification(self.head(net(turned)), target), target)


class RelativePosition(_Stats):
    """Doersch et al.: the 8-way position of the second patch relative to the first."""

    def __init__(
        self,
        dim: int,
        *,
        patch: int,
        hidden: int = 256,
        chroma: str = "drop",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        if chroma not in ("drop", "project", "grey", "none"):
            raise ValueError(f"options.chroma must be drop, project, grey or none, not {chroma!r}")
        if patch < 1:
            raise ValueError(f"relative position: patch={patch} px")
        self.patch, self.chroma = patch, chroma
        self.head = _mlp(2 * dim, hidden, 8)

    def _colour(self, p: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Chromatic-aberration guard on normalised patches ``(B, 2, 3, P, P)``."""
        if self.chroma == "drop" and keep is not None:
            return p * F.one_hot(keep.long(), 3).to(p.dtype)[..., None, None]  # 0 = the mean
        if self.chroma in ("grey", "project"):
            rgb = self.to_rgb(p)
            if self.chroma == "grey":
                luma = torch.tensor(_LUMA, device=p.device).view(3, 1, 1)
                rgb = (rgb * luma).sum(dim=-3, keepdim=True).expand_as(rgb)
            else:  # remove the green-magenta component, the axis chromatic aberration shifts
                v = (torch.tensor([-1.0, 2.0, -1.0], device=p.device) / 6**0.5).view(3, 1, 1)
                rgb = rgb - (rgb * v).sum(dim=-3, keepdim=True) * v
            return self.normalize(rgb)
        return p

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, 0]
        patches = self._colour(
            cut_patches(x, batch["patch_yx"], self.patch), batch.get("patch_keep")
        )
        feats = net(patches.flatten(0, 1)).view(x.shape[0], -1)
        target = batch["position"]
        return _logs(*classification(self.head(feats), target), target)


class Colorization(_Stats):
    """Zhang et al.: the quantised ab colour of each grid cell from the lightness."""

    bins: torch.Tensor
    ab_weight: torch.Tensor

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        grid: int = 4,
        bin_size: float = 10.0,
        ab_weight: torch.Tensor | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        bins = ab_bins(bin_size)
        self.grid, self.q = grid, bins.shape[0]
        self.register_buffer("bins", bins.clone(), persistent=False)
        w = torch.ones(self.q) if ab_weight is None else torch.as_tensor(ab_weight).float()
        if w.shape != (self.q,):
            raise ValueError(f"colorization: {tuple(w.shape)} weights for {self.q} ab bins")
        self.register_buffer("ab_weight", w.clone())  # in the checkpoint: a run keeps its weights
        self.head = _mlp(dim, hidden, self.q * grid * grid)

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised frames ``(B, 3, S, S)`` -> (grey input ``(B, 3, S, S)`` normalised, ab bin
        of every grid cell ``(B, g, g)``)."""
        with torch.autocast(x.device.type, enabled=False):  # Lab in float32, not bf16
            lab = rgb_to_lab(self.to_rgb(x))
        grey = self.normalize(grey_from_lightness(lab[:, :1]).expand(-1, 3, -1, -1))
        cells = F.adaptive_avg_pool2d(lab[:, 1:], self.grid)
        return grey, quantize_ab(cells, self.bins)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        grey, target = self.targets(batch["frames"][:, 0])
        b, g = grey.shape[0], self.grid
        logits = self.head(net(grey)).view(b, self.q, g, g)
        nll = F.cross_entropy(logits.float(), target, reduction="none")
        loss = (self.ab_weight[target] * nll).mean()  # Zhang et al.'s eq. 2, per cell
        return loss, {"logits": logits.detach(), "target": target}


class Exemplar(nn.Module):
    """Dosovitskiy et al.: every view classified as the image (row) it was cut from."""

    def __init__(self, dim: int, *, num_exemplars: int) -> None:
        super().__init__()
        if num_exemplars < 2:
            raise ValueError(f"exemplar: {num_exemplars} surrogate classes; need at least 2")
        self.head = nn.Linear(dim, num_exemplars)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"]
        target = batch["exemplar"].repeat_interleave(x.shape[1])
        return _logs(*classification(self.head(net(x.flatten(0, 1))), target), target)


class SimCLR(nn.Module):
    """Chen et al.: NT-Xent between the projections of two views of every frame."""

    def __init__(self, dim: int, *, proj_dim: int = 128, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"options.temperature must be > 0, not {temperature}")
        self.temperature = temperature
        self.projector = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim)
        )

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, :2]
        if x.shape[1] != 2:
            raise ValueError("simclr needs two views per example (frames (B, 2, 3, S, S))")
        z = self.projector(net(x.flatten(0, 1))).view(x.shape[0], 2, -1)
        # in training, every process's embeddings are negatives (the held-out batches of the
        # ranks may differ in size, so evaluation scores each rank's batch on its own)
        many = self.training and dist.get_world_size() > 1
        loss, logits, target = nt_xent(
            z[:, 0],
            z[:, 1],
            self.temperature,
            gather=dist.all_gather_with_grad if many else None,
            rank=dist.get_rank() if many else 0,
        )
        return loss, {"logits": logits, "target": target}


class MAE(nn.Module):
    """He et al.: reconstruct the masked patches from the visible ones (ViT backbone)."""

    def __init__(
        self,
        dim: int,
        *,
        net: nn.Module,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix: bool = True,
    ) -> None:
        super().__init__()
        from avssl.models.vit import ViT, transformer_block

        if not isinstance(net, ViT):
            raise ValueError(f"mae needs the vit_tiny backbone, not a {type(net).__name__}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"options.mask_ratio must be in (0, 1), not {mask_ratio}")
        self.patch, self.mask_ratio, self.norm_pix = net.patch_size, mask_ratio, norm_pix
        self.decoder_dim = decoder_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = nn.ModuleList(
            transformer_block(decoder_dim, decoder_heads) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        from avssl.models.vit import ViT, sincos_2d

        assert isinstance(net, ViT)  # checked when the head was built
        x = batch["frames"][:, 0]
        tokens = net.embed(x)  # (B, L, D) with positions
        b, length, d = tokens.shape
        noise = batch.get("mask_noise")
        if noise is None or noise.shape != (b, length):
            raise ValueError(
                f"mae: mask_noise of shape {None if noise is None else tuple(noise.shape)}"
                f" for {length} patches (set by make_example from aug.size)"
            )
        keep, mask, restore = random_masking(noise, self.mask_ratio)
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
        y = self.decoder_embed(net.encode(visible))
        y = torch.cat([y, self.mask_token.expand(b, length - y.shape[1], -1)], dim=1)
        y = torch.gather(y, 1, restore[..., None].expand(-1, -1, self.decoder_dim))
        gh, gw = net.grid(x.shape[-2], x.shape[-1])
        y = y + sincos_2d(self.decoder_dim, gh, gw, device=x.device).to(y.dtype)
        for block in self.decoder:
            y = block(y)
        pred = self.decoder_pred(self.decoder_norm(y))
        return mae_loss(pred, patchify(x, self.patch), mask, norm_pix=self.norm_pix), {}


HEADS: dict[str, type[nn.Module]] = {
    "rotation": Rotation,
    "relative_position": RelativePosition,
    "colorization": Colorization,
    "exemplar": Exemplar,
    "simclr": SimCLR,
    "mae": MAE,
}


# ---------------------------------------------------------------------------------- model
class ImageModel(nn.Module):
    """One backbone (``encoder.net``), one head per task of ``tasks`` (name -> loss weight).

    ``forward(batch) -> (loss, logs)``: the weighted sum of the heads' losses; ``logs`` holds the
    first classifying head's ``logits`` and ``target`` (the trainer's accuracy) and, with several
    heads, ``scalars`` (``<task>_loss``, ``<task>_acc``). Head options are keyword arguments
    (module docstring); ``head_hidden`` < 0 takes each head's default.
    """

    def __init__(
        self,
        backbone: str,
        *,
        tasks: Mapping[str, float],
        head_hidden: int = -1,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        patch: int = 0,
        chroma: str = "drop",
        colour_grid: int = 4,
        colour_bin: float = 10.0,
        ab_weight: torch.Tensor | None = None,
        num_exemplars: int = 0,
        proj_dim: int = 128,
        temperature: float = 0.1,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix: bool = True,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(tasks) - set(HEADS))
        if not tasks or unknown:
            raise ValueError(f"image tasks {unknown or '{}'}: choose from {sorted(HEADS)}")
        self.class_weight: torch.Tensor | None = None  # the trainer's balanced-loss hook (unused)
        self.encoder = FrameEncoder(backbone, **backbone_kwargs)
        self.weights = {name: float(w) for name, w in tasks.items()}
        dim = self.encoder.dim

        def hidden(default: int) -> int:
            return default if head_hidden < 0 else head_hidden

        stats = {"mean": tuple(mean), "std": tuple(std)}
        make = {
            "rotation": lambda: Rotation(dim, hidden=hidden(0)),
            "relative_position": lambda: RelativePosition(
                dim, patch=patch, hidden=hidden(256), chroma=chroma, **stats
            ),
            "colorization": lambda: Colorization(
                dim,
                hidden=hidden(256),
                grid=colour_grid,
                bin_size=colour_bin,
                ab_weight=ab_weight,
                **stats,
            ),
            "exemplar": lambda: Exemplar(dim, num_exemplars=num_exemplars),
            "simclr": lambda: SimCLR(dim, proj_dim=proj_dim, temperature=temperature),
            "mae": lambda: MAE(
                dim,
                net=self.encoder.net,
                mask_ratio=mask_ratio,
                decoder_dim=decoder_dim,
                decoder_depth=decoder_depth,
                decoder_heads=decoder_heads,
                norm_pix=norm_pix,
            ),
        }
        self.heads = nn.ModuleDict({name: make[name]() for name in tasks})

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


# -------------------------------------------------------------------------------- prepare
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
    size = cfg.aug.size
    train_rows = video_segments(train_rows, o.frames_per_video, reader)
    val_rows = video_segments(val_rows, o.frames_per_video, reader)
    kw: dict[str, Any] = {
        "tasks": weights,
        "mean": tuple(cfg.aug.mean),
        "std": tuple(cfg.aug.std),
        "chroma": o.chroma,
        "colour_grid": o.colour_grid,
        "colour_bin": o.colour_bin,
        "proj_dim": o.proj_dim,
        "temperature": o.temperature,
        "mask_ratio": o.mask_ratio,
        "decoder_dim": o.decoder_dim,
        "decoder_depth": o.decoder_depth,
        "decoder_heads": o.decoder_heads,
        "norm_pix": o.norm_pix,
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
        kw["num_exemplars"] = len(train_rows)
    if "relative_position" in weights:
        patch, gap, jitter = relative_position_layout(size, o.patch, o.gap, o.jitter)
        kw["patch"] = patch
        example["layout"] = (size, patch, gap, jitter)
        example["drop_colour"] = o.chroma == "drop"
    if "mae" in weights:
        p = cfg.model.kwargs(cfg.backbone).get("patch_size", 16)
        if cfg.backbone != "vit_tiny" or size % p:
            raise ValueError(
                f"mae needs backbone vit_tiny and aug.size ({size}) a multiple of "
                f"its patch ({p}); got backbone {cfg.backbone}"
            )
        example["mask_tokens"] = (size // p) ** 2
    if "colorization" in weights and o.colour_prior_rows > 0:
        head = Colorization(
            1,
            hidden=0,
            grid=o.colour_grid,
            bin_size=o.colour_bin,
            mean=tuple(cfg.aug.mean),
            std=tuple(cfg.aug.std),
        )
        counts = colour_prior(
            train_rows, reader, cfg.aug, head, count=o.colour_prior_rows, seed=cfg.seed
        )
        kw["ab_weight"], _ = ab_weights(
            counts, head.bins, lam=o.rebalance_lambda, sigma=o.rebalance_sigma
        )
    make = functools.partial(make_example, **example)
    classes = {
        "rotation": 4,
        "relative_position": 8,
        "simclr": 0,
        "colorization": len(ab_bins(o.colour_bin)),
        "exemplar": kw.get("num_exemplars", 0),
    }
    first = next((t for t in weights if t != "mae"), None)
    return Prepared(
        train_rows=train_rows,
        val_rows=val_rows,
        model_kwargs=kw,
        make_train=make,
        make_val=make,
        num_classes=classes[first] if first else 0,
    )


# ---------------------------------------------------------------------------------- tasks
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
        make_example=make_example,
        build_model=functools.partial(ImageModel, tasks=one or _DEFAULTS[name]["options"]["tasks"]),
        num_classes=lambda row: 0,  # prepare() tells the trainer
        prepare=functools.partial(prepare, tasks=one),
        views=name in ("simclr", "exemplar", "multi_task"),
        defaults=_DEFAULTS.get(name),
    )


TASKS: dict[str, Task] = {name: _task(name) for name in (*HEADS, "multi_task")}
