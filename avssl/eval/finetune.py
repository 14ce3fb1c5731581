"""``avssl-eval finetune``: fine-tune a backbone for clip classification (the UCF-101 protocol).

The transfer test of the temporal-order papers (../shared/METHODS.md): initialise a network with
the self-supervised weights (or at random: the baseline), put a new linear classifier on top and
train the whole network on the labelled training videos of UCF-101 split K, then report accuracy
on the split's test videos. Shuffle & Learn fine-tuned CaffeNet on single frames (50.9% on split
1; random init 38.6%); Odd-One-Out 60.3%.

Data (``--manifest TRAIN --test TEST``):

* ``avssl-prep ucf101`` / ``folder`` video rows (``splitK/train.jsonl``, ``splitK/test.jsonl``;
  ``video``, ``class_id``, ``num_frames``): the video root is ``prep.json``'s ``root`` beside the
  manifest (or one folder up), the probes come from ``probe.jsonl`` (no re-probing);
* the built-in set's ``manifest.jsonl`` (``file``, ``class_id``, ``split``): without ``--test``
  the rows whose ``split`` is in ``data.train_splits`` (default ``train``) train and those of
  ``data.test_split`` (``test``) are tested; ``val`` rows are left out unless listed;
* an image manifest (``avssl-prep digits``: ``path``, ``class_id``, ``split``; PNG/JPEG, grey or
  RGB, relative to ``prep.json``'s ``root`` or else the manifest's folder): an image is a video of
  one frame, so every clip of it repeats that frame.

A test video (by resolved path) found among the training rows is refused.

Model: ``backbone (avssl.eval.encoders.load_encoder) -> dropout -> linear``. How a clip of ``T``
frames (``clip.length``) enters the backbone:

* a 2-D backbone with RGB input: every frame through the backbone, features averaged over the T
  frames (T = 1, the default: frame-level fine-tuning, as Shuffle & Learn);
* a 2-D backbone trained on stacks of frame differences (``in_channels = 3 (L - 1)``, arrow of
  time / O3N ``differences``): the clip's L - 1 consecutive differences as one input (T = L);
* a video backbone (``r3d_18``, ``r2plus1d_18``): the clip as ``(B, 3, T, H, W)`` (T = 16).

Training: the shared core of :mod:`avssl.train` -- ``OptimConfig`` and :func:`lr_at` (the
backbone's learning rate is ``head.backbone_lr_mult`` times the head's; 0 freezes the backbone,
batch-norm statistics included), ``EpochLoader`` + :func:`epoch_indices`, batched
:func:`augment` (one random resized crop / flip / jitter per clip), ``Logger``
(``metrics.jsonl``). A training example is one clip of a training video at a random start;
every random draw derives from ``(seed, epoch, index)`` or ``(seed, epoch, step)`` (dropout
included), so ``--resume`` continues exactly (tested on CPU). Checkpoints (``checkpoint.pt``,
atomic) at the end of every epoch, every ``run.ckpt_every_steps`` steps and on SIGTERM; the
checkpoint loads in :func:`load_encoder` (backbone keys under ``net.``), so a fine-tuned network
can itself be evaluated. Several processes: ``torchrun`` (DDP, as ``avssl-train``).

Evaluation, once, of the final network (no model selection on the test set):

* **clip accuracy**: one clip per test video, the centre one (start ``(n - span) // 2``), centre
  crop;
* **video accuracy**: softmax scores averaged over ``eval.num_clips`` clips x ``eval.num_crops``
  crops per video. Clip ``i`` of ``k`` starts at ``floor((n - span) (2i + 1) / (2k))``: the
  centres of k equal segments (for odd k the middle clip is the centre clip). Crops are squares
  of ``eval.crop_fraction`` of the frame's short side, resized to ``aug.size``: 1 = centre,
  2 = centre + its mirror image, 5 = centre + the four corners, 10 = those five + their mirror
  images (the two-stream / Caffe "10-crop" test);
* balanced accuracy (mean per-class recall) for both, and the video-level confusion matrix.

A video shorter than a clip's span (``(T - 1) * stride + 1`` frames) gives clips that start at
frame 0 and repeat its last frame.

Output: a work directory (``--out DIR``; default ``RUN_DIR/eval/finetune-<dataset>/`` for a run,
``evals/finetune-<dataset>-<modeltag>/`` otherwise) with ``config.yaml``, ``metrics.jsonl`` and
``checkpoint.pt``, and the result JSON of every ``avssl-eval`` command (``kind: "finetune"``;
metrics ``clip_acc``, ``clip_balanced_acc``, ``video_acc``, ``video_balanced_acc``,
``final_train_loss``, ``final_train_acc``; the video-level confusion matrix): ``--json FILE``,
by default ``DIR/finetune-<dataset>.json`` with ``--out`` and otherwise beside the default work
directory (``RUN_DIR/eval/finetune-<dataset>.json``, ``evals/finetune-<dataset>-<tag>.json``).
A run stopped by SIGTERM or ``run.max_minutes`` writes no result: ``--resume`` finishes it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from avssl import dist
from avssl.checkpoints import load_checkpoint, load_weights
from avssl.data.dataset import FrameReader, ManifestDataset, load_probe_infos
from avssl.data.manifest import atomic_output, atomic_write_text, read_manifest, resolve_under
from avssl.data.suffixes import IMAGE_SUFFIXES
from avssl.data.transforms import AugmentConfig, AugmentParams, apply_params, augment
from avssl.eval.encoders import ModelInfo, load_encoder
from avssl.eval.metrics import accuracy, balanced_accuracy, confusion_matrix
from avssl.train import (
    DataConfig,
    EpochLoader,
    Logger,
    OptimConfig,
    RunConfig,
    TrainConfig,
    epoch_indices,
    lr_at,
    wrap_model,
)

__all__ = [
    "ClipConfig",
    "EvalConfig",
    "FinetuneConfig",
    "FinetuneData",
    "FinetuneDataConfig",
    "HeadConfig",
    "VideoClassifier",
    "average_softmax",
    "clip_indices",
    "clip_starts",
    "crop_boxes",
    "eval_starts",
    "finetune",
    "load_data",
    "main",
    "register",
]

CROP_CHOICES = (1, 2, 5, 10)
VIDEO_CLIP_LENGTH = 16  # clip.length = 0 with a video backbone (r3d_18, r2plus1d_18)


# ------------------------------------------------------------------------------------- config
@dataclass
class FinetuneDataConfig:
    # decoded frame size (height x width, px); width 0: square frames. 256 x 340 is the frame
    # size Shuffle & Learn cropped 227 px from (METHODS.md); 128 x 171 is common for 112 crops
    frame_size: int = 256
    frame_width: int = 340
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # one-manifest sets
    test_split: str = "test"
    # per-process cache of whole decoded videos (MB); 0 reads each clip's frames exactly with
    # read_frames (keyframe-aware seeks): better for big sets such as UCF-101
    cache_mb: int = 0
    num_workers: int = 0  # data-loader processes (training and test)
    max_train_rows: int | None = None  # at most this many training videos (spread; debugging)
    max_test_rows: int | None = None  # at most this many test videos (spread; debugging)


@dataclass
class ClipConfig:
    # frames per clip; 0: 1 for a 2-D RGB backbone (frame-level, as Shuffle & Learn), L for a
    # backbone trained on stacks of L - 1 frame differences, 16 for a video backbone
    length: int = 0
    stride: int = 1  # frames between consecutive clip frames


@dataclass
class HeadConfig:
    dropout: float = 0.5  # before the new linear classifier
    # backbone lr = optim.lr x this (the new head gets optim.lr); 0 freezes the backbone (its
    # batch-norm statistics too): a linear classifier trained with augmentation
    backbone_lr_mult: float = 0.1


@dataclass
class EvalConfig:
    num_clips: int = 25  # clips per test video, evenly spaced (the two-stream test: 25)
    num_crops: int = 10  # 1 centre, 2 centre + mirror, 5 centre + corners, 10 with mirrors
    crop_fraction: float = 0.875  # crop side / frame short side (224 of 256)
    batch_size: int = 8  # test videos per batch (each brings num_clips (+1) clips)


def _default_aug() -> AugmentConfig:
    # random resized crops + flips, no colour jitter (the papers' fine-tuning augmentation)
    return AugmentConfig(size=224, scale=(0.4, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)


def _default_optim() -> OptimConfig:
    # SGD momentum 0.9, lr 0.01 (head; backbone x0.1), batch 128, 30 epochs, x0.1 at 80%
    return OptimConfig(lr=0.01, batch_size=128, epochs=30, schedule="step", step_at=0.8)


@dataclass
class FinetuneConfig:
    """Every fine-tuning setting; the defaults are the UCF-101 protocol (see
    ``configs/finetune_ucf101.yaml`` for where each value comes from)."""

    seed: int = 0
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=_default_optim)
    aug: AugmentConfig = field(default_factory=_default_aug)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(tensorboard=False))

    def validate(self) -> None:
        problems = []
        if self.eval.num_crops not in CROP_CHOICES:
            problems.append(f"eval.num_crops={self.eval.num_crops} (one of {CROP_CHOICES})")
        if self.eval.num_clips < 1:
            problems.append(f"eval.num_clips={self.eval.num_clips} (>= 1)")
        if not 0.0 < self.eval.crop_fraction <= 1.0:
            problems.append(f"eval.crop_fraction={self.eval.crop_fraction} (in (0, 1])")
        if self.eval.batch_size < 1 or self.optim.batch_size < 1:
            problems.append("eval.batch_size and optim.batch_size must be >= 1")
        if self.clip.length < 0 or self.clip.stride < 1:
            problems.append(f"clip.length={self.clip.length}, clip.stride={self.clip.stride}")
        if not 0.0 <= self.head.dropout < 1.0:
            problems.append(f"head.dropout={self.head.dropout} (in [0, 1))")
        if self.head.backbone_lr_mult < 0:
            problems.append(f"head.backbone_lr_mult={self.head.backbone_lr_mult} (>= 0)")
        if self.data.frame_size < 1 or self.data.frame_width < 0:
            problems.append(
                f"data.frame_size={self.data.frame_size}, frame_width={self.data.frame_width}"
            )
        if problems:
            raise ValueError("finetune config: bad " + "; ".join(problems))


def _train_view(cfg: FinetuneConfig, batch_size: int | None = None) -> TrainConfig:
    """The fields of :class:`TrainConfig` that ``EpochLoader`` and ``Logger`` read."""
    optim = cfg.optim
    if batch_size is not None:
        optim = dataclasses.replace(optim, batch_size=batch_size)
    return TrainConfig(
        task="finetune",
        seed=cfg.seed,
        data=DataConfig(num_workers=cfg.data.num_workers, cache_mb=cfg.data.cache_mb),
        optim=optim,
        aug=cfg.aug,
        run=cfg.run,
    )


# ------------------------------------------------------------------------ clips and crops
def clip_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """First frames of ``num_clips`` clips of ``span`` frames spread over ``num_frames``.

    Clip ``i`` starts at ``floor((n - span) * (2i + 1) / (2k))``: the clips sit at the centres of
    ``k`` equal segments of the possible starts, so one clip (k = 1) is the centre clip, and for
    odd ``k`` the middle clip is the centre clip. A video shorter than ``span`` gives starts of 0.
    """
    if num_frames < 1 or span < 1 or num_clips < 1:
        raise ValueError(f"clip_starts({num_frames}, {span}, {num_clips}): all must be >= 1")
    room = max(num_frames - span, 0)
    return [room * (2 * i + 1) // (2 * num_clips) for i in range(num_clips)]


def clip_indices(start: int, length: int, stride: int, num_frames: int) -> list[int]:
    """The frames of the clip starting at ``start``: ``start + j * stride`` for ``j < length``,
    clamped to the last frame (a short video repeats its last frame)."""
    return [min(start + j * stride, num_frames - 1) for j in range(length)]


def eval_starts(num_frames: int, span: int, num_clips: int) -> tuple[list[int], int]:
    """Starts of the test clips of one video and which of them is the centre clip.

    ``num_clips`` clips from :func:`clip_starts`; for odd ``num_clips`` the middle one is the
    centre clip, for even ``num_clips`` the centre clip is appended as one more (last) clip that
    only the clip accuracy uses.
    """
    starts = clip_starts(num_frames, span, num_clips)
    if num_clips % 2:
        return starts, num_clips // 2
    return [*starts, clip_starts(num_frames, span, 1)[0]], num_clips


def crop_boxes(
    height: int, width: int, num_crops: int, fraction: float
) -> list[tuple[float, float, float, bool]]:
    """Test crops ``(left, top, side, mirrored)`` in pixels of a ``height x width`` frame.

    Squares of ``fraction * min(height, width)``: the centre, then (5, 10) the top-left,
    top-right, bottom-left and bottom-right corners, then (2, 10) the same mirrored left-right.
    """
    if num_crops not in CROP_CHOICES:
        raise ValueError(f"num_crops={num_crops}: expected one of {CROP_CHOICES}")
    side = fraction * min(height, width)
    cx, cy = (width - side) / 2, (height - side) / 2
    boxes = [(cx, cy)]
    if num_crops >= 5:
        boxes += [
            (0.0, 0.0),
            (width - side, 0.0),
            (0.0, height - side),
            (width - side, height - side),
        ]
    out = [(x, y, side, False) for x, y in boxes]
    if num_crops in (2, 10):
        out += [(x, y, side, True) for x, y in boxes]
    return out


def _crop_params(
    n: int, height: int, width: int, box: tuple[float, float, float, bool]
) -> AugmentParams:
    x0, y0, side, mirror = box
    ones = torch.ones(n, dtype=torch.float64)
    return AugmentParams(
        height=height,
        width=width,
        box_xywh=torch.tensor([x0, y0, side, side], dtype=torch.float64).expand(n, 4).clone(),
        flip=torch.full((n,), mirror, dtype=torch.bool),
        brightness=ones,
        contrast=ones,
        saturation=ones.clone(),
        hue=torch.zeros(n, dtype=torch.float64),
        grayscale=torch.zeros(n, dtype=torch.bool),
    )


def average_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Video scores: ``(V, ..., C)`` logits -> ``(V, C)`` softmax probabilities averaged over
    every axis between the first and the last (clips, crops): the papers' video-level score."""
    if logits.ndim < 2:
        raise ValueError(f"average_softmax: expected (V, ..., C) logits, got {tuple(logits.shape)}")
    probs = torch.softmax(logits.double(), dim=-1)
    return probs.reshape(logits.shape[0], -1, logits.shape[-1]).mean(dim=1)


# ------------------------------------------------------------------------------------ data
@dataclass
class FinetuneData:
    """Training and test items (dicts: ``id``, ``label``, ``num_frames``, ``index``) of one
    dataset, and how to read them."""

    name: str
    manifest: Path
    test_manifest: Path | None
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    train_root: Path
    test_root: Path
    train_probe: Path | None
    test_probe: Path | None
    classes: list[str]
    notes: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def default_manifest() -> Path:
    """The built-in set's clip manifest (``avssl-prep synth``)."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "synth" / "manifest.jsonl"


def _card(manifest: Path) -> tuple[dict[str, Any], Path | None]:
    """The prep card beside the manifest (or one folder up: ucf101's ``splitK/``)."""
    for d in (manifest.parent, manifest.parent.parent):
        for name in ("prep.json", "dataset.json"):
            if (d / name).is_file():
                return json.loads((d / name).read_text()), d
    return {}, None


def _row_path(row: dict[str, Any], manifest: Path, i: int) -> str:
    for key in ("video", "file", "path"):
        if isinstance(row.get(key), str):
            return str(row[key])
    raise ValueError(f"{manifest}: row {i + 1} has no 'video', 'file' or 'path' field")


def _read_rows(manifest: Path) -> tuple[list[dict[str, Any]], Path, Path | None, dict]:
    """Rows with ``id`` (path relative to the root), ``label``, ``num_frames``, ``split``; the
    root, the probe file (or None) and the card."""
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: manifest not found")
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    card, card_dir = _card(manifest)
    root = Path(card["root"]) if isinstance(card.get("root"), str) else manifest.parent
    first = _row_path(rows[0], manifest, 0)
    resolve_under(root, first, where=f"{manifest}: row 1")  # before any look at the disk
    if not (root / first).exists() and (manifest.parent / first).exists():
        root = manifest.parent
    if not (root / first).exists():
        raise FileNotFoundError(f"{manifest}: {first} not found under {root} (the data root)")
    probe = card_dir / "probe.jsonl" if card_dir and (card_dir / "probe.jsonl").is_file() else None
    out = []
    for i, r in enumerate(rows):
        if "v" in r and r["v"] != 1:
            raise ValueError(f"{manifest}: row {i + 1} has format version {r['v']}, expected 1")
        rel = _row_path(r, manifest, i)
        resolve_under(root, rel, where=f"{manifest}: row {i + 1}")  # never outside the root
        if "class_id" not in r:
            raise ValueError(f"{manifest}: row {i + 1} ({rel}) has no class_id")
        image = Path(rel).suffix.lower() in IMAGE_SUFFIXES
        n = 1 if image else r.get("num_frames")
        out.append(
            {
                "id": rel,
                "label": int(r["class_id"]),
                "num_frames": None if n is None else int(n),
                "split": r.get("split"),
                "name": r.get("class_name", r.get("label")),
                "fingerprint": r.get("fingerprint"),
            }
        )
    return out, root, probe, card


def _spread(items: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    if not n or len(items) <= n:
        return items
    keep = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in keep]


def _fill_num_frames(items: list[dict[str, Any]], root: Path, probe: Path | None) -> None:
    missing = [it for it in items if it["num_frames"] is None]
    if not missing:
        return
    from avssl.data import decode

    infos = load_probe_infos(probe)
    for it in missing:
        info = infos.get(it["id"]) or decode.probe(root / it["id"])
        it["num_frames"] = int(info.num_frames)


def _dataset_name(manifest: Path, card: dict[str, Any]) -> str:
    name = str(card.get("name") or card.get("dataset") or manifest.parent.name)
    name = name.removeprefix("avssl-")
    if re.fullmatch(r"split\d+", manifest.parent.name):
        name += "-" + manifest.parent.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def load_data(cfg: FinetuneConfig, manifest: Path, test_manifest: Path | None) -> FinetuneData:
    """Read and check the training and test rows (module docstring).

    Raises:
        FileNotFoundError: a manifest or the data root is missing.
        ValueError: rows without a split where one is needed, no training or test rows, or a
            test video that is also a training video.
    """
    rows, root, probe, card = _read_rows(manifest)
    notes: dict[str, Any] = {}
    if test_manifest is None:
        if any(r["split"] is None for r in rows):
            raise ValueError(
                f"{manifest}: rows without a 'split' field; give the test rows with --test "
                "(avssl-prep ucf101: --manifest splitK/train.jsonl --test splitK/test.jsonl)"
            )
        train = [r for r in rows if r["split"] in cfg.data.train_splits]
        test = [r for r in rows if r["split"] == cfg.data.test_split]
        test_root, test_probe = root, probe
        notes["unused_rows"] = len(rows) - len(train) - len(test)
    else:
        train = rows
        test, test_root, test_probe, _ = _read_rows(test_manifest)
    unlabelled = sum(r["label"] < 0 for r in train) + sum(r["label"] < 0 for r in test)
    if unlabelled:
        notes["unlabelled_rows_dropped"] = unlabelled
        train = [r for r in train if r["label"] >= 0]
        test = [r for r in test if r["label"] >= 0]
    for what, items in (("training", train), ("test", test)):
        if not items:
            splits = sorted({str(r["split"]) for r in rows})
            raise ValueError(f"{manifest}: no labelled {what} rows (splits: {splits})")
    train_paths = {(root / r["id"]).resolve() for r in train}
    both = sorted(str(p) for p in {(test_root / r["id"]).resolve() for r in test} & train_paths)
    if both:
        raise ValueError(
            f"{len(both)} test videos are also training videos (e.g. {both[0]}): train and test "
            "rows must come from disjoint videos"
        )
    fps = {r["fingerprint"] for r in train if r["fingerprint"]}
    same = sum(1 for r in test if r["fingerprint"] and r["fingerprint"] in fps)
    if same:
        notes["test_files_identical_to_a_training_file"] = same
    train = _spread(sorted(train, key=lambda r: r["id"]), cfg.data.max_train_rows)
    test = _spread(sorted(test, key=lambda r: r["id"]), cfg.data.max_test_rows)
    _fill_num_frames(train, root, probe)
    _fill_num_frames(test, test_root, test_probe)
    for items in (train, test):
        for i, r in enumerate(items):
            r["index"] = i
    num_classes = max(r["label"] for r in train + test) + 1
    names = {r["label"]: str(r["name"]) for r in train + test if r["name"] not in (None, "")}
    card_classes = card.get("classes")
    classes = []
    for k in range(num_classes):
        if k in names:
            classes.append(names[k])
        elif isinstance(card_classes, list) and k < len(card_classes):
            c = card_classes[k]
            classes.append(str(c.get("name", k)) if isinstance(c, dict) else str(c))
        else:
            classes.append(str(k))
    return FinetuneData(
        _dataset_name(manifest, card),
        manifest,
        test_manifest,
        train,
        test,
        root,
        test_root,
        probe,
        test_probe,
        classes,
        notes,
    )


class ClipReader(FrameReader):
    """:class:`FrameReader` for videos, plus images (a one-frame video: every index is 0)."""

    def __init__(self, root: Path, size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(root, size, **kwargs)
        self._images: dict[str, torch.Tensor] = {}

    def __call__(self, rel: str, indices: Any) -> torch.Tensor:
        if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            return super().__call__(rel, indices)
        img = self._image(rel)
        return img.unsqueeze(0).expand(len(indices), -1, -1, -1).contiguous()

    def _image(self, rel: str) -> torch.Tensor:
        cache = self._images
        if rel in cache:
            return cache[rel]
        import cv2

        raw = cv2.imread(str(self.path(rel)), cv2.IMREAD_COLOR)
        if raw is None:
            raise ValueError(f"{self.path(rel)}: not an image OpenCV can read")
        h, w = self.size
        interp = cv2.INTER_AREA if raw.shape[0] > h or raw.shape[1] > w else cv2.INTER_LINEAR
        img = cv2.resize(raw, (w, h), interpolation=interp)[:, :, ::-1]  # BGR -> RGB
        t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        if self.cache_bytes > 0 and len(cache) * t.numel() < self.cache_bytes:
            cache[rel] = t
        return t


def _train_example(
    row: dict[str, Any], read: FrameReader, rng: np.random.Generator, *, length: int, stride: int
) -> dict[str, Any]:
    """One clip of the video at a random start (uniform over the starts that fit)."""
    n = int(row["num_frames"])
    span = (length - 1) * stride + 1
    start = int(rng.integers(0, max(n - span, 0) + 1))
    return {
        "frames": read(row["id"], clip_indices(start, length, stride, n)),
        "target": torch.tensor(int(row["label"])),
    }


def _eval_example(
    row: dict[str, Any],
    read: FrameReader,
    rng: np.random.Generator,
    *,
    length: int,
    stride: int,
    num_clips: int,
) -> dict[str, Any]:
    """Every test clip of one video (:func:`eval_starts`): ``(K, T, 3, H, W)`` uint8."""
    n = int(row["num_frames"])
    starts, _ = eval_starts(n, (length - 1) * stride + 1, num_clips)
    idx = [i for s in starts for i in clip_indices(s, length, stride, n)]
    frames = read(row["id"], idx)
    return {
        "frames": frames.view(len(starts), length, *frames.shape[1:]),
        "target": torch.tensor(int(row["label"])),
        "index": torch.tensor(int(row["index"])),
    }


# ----------------------------------------------------------------------------------- model
InputMode = Literal["frames", "differences", "video"]


class VideoClassifier(nn.Module):
    """``backbone -> dropout -> linear`` on clips ``(B, T, 3, H, W)`` (normalised floats).

    ``mode``: ``"frames"`` (per-frame features averaged over T), ``"differences"`` (the stack of
    the T - 1 frame differences as one image) or ``"video"`` (a 3-D backbone on the clip).
    State-dict keys: ``net.*`` (the backbone, as :func:`load_encoder` reads them), ``head.*``.
    """

    def __init__(
        self,
        net: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        mode: InputMode,
        dropout: float,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        self.net, self.mode, self.frozen = net, mode, frozen
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        if frozen:
            self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> VideoClassifier:
        super().train(mode)
        if self.frozen:
            self.net.eval()  # a frozen backbone keeps its batch-norm statistics
        return self

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        if self.mode == "video":
            return self.net(clips.transpose(1, 2))
        if self.mode == "differences":
            from avssl.tasks.common import stack_of_differences

            return self.net(stack_of_differences(clips))
        b, t = clips.shape[:2]
        return self.net(clips.flatten(0, 1)).view(b, t, -1).mean(dim=1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(clips)))


def _input_mode(info: ModelInfo, cfg: FinetuneConfig) -> tuple[InputMode, int]:
    """How clips enter the backbone, and the clip length (``clip.length`` or its default)."""
    from avssl.models.backbones import BACKBONES

    spec = BACKBONES[info.backbone]
    if spec.video:
        return "video", cfg.clip.length or VIDEO_CLIP_LENGTH
    if info.in_channels == 3:
        return "frames", cfg.clip.length or 1
    if info.in_channels % 3:
        raise ValueError(
            f"{info.spec}: the backbone takes {info.in_channels} input channels, "
            "neither RGB frames nor a stack of RGB differences"
        )
    need = info.in_channels // 3 + 1
    if cfg.clip.length not in (0, need):
        raise ValueError(
            f"{info.spec}: the backbone takes stacks of {need - 1} frame differences, i.e. clips "
            f"of {need} frames; clip.length={cfg.clip.length}"
        )
    return "differences", need


# -------------------------------------------------------------------------------- training
def _autocast(cfg: FinetuneConfig, env: dist.DistEnv) -> Any:
    if env.device.type == "cuda" and cfg.run.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _raw(model: nn.Module) -> VideoClassifier:
    from avssl.train import unwrap_model

    m = unwrap_model(model)
    assert isinstance(m, VideoClassifier)
    return m


def _config_json(cfg: FinetuneConfig) -> str:
    from avssl.config import config_to_dict

    return json.dumps(config_to_dict(cfg), sort_keys=True)


def _comparable(config_json: str) -> dict[str, Any]:
    d = json.loads(config_json)
    d.pop("run", None)  # run options (logging, limits, drills) may change on resume
    return dict(d)


def save_checkpoint(path: Path, state: dict[str, Any], epoch: int, step_in_epoch: int) -> None:
    """Model, optimizer, position and epoch sums; tensors and primitives only, atomic."""
    raw = _raw(state["model"])
    info: ModelInfo = state["info"]
    ckpt = {
        "model": raw.state_dict(),
        "optimizer": state["opt"].state_dict(),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "epoch_sums": [float(v) for v in state["sums"]],
        "config": state["config_json"],
        "backbone": info.backbone,
        "backbone_kwargs": json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in info.kwargs.items()}
        ),
        "task": "finetune",
        "source_model": json.dumps(info.to_dict()),
        "classes": json.dumps(state["classes"]),
    }
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def finetune_one_epoch(
    state: dict[str, Any],
    cfg: FinetuneConfig,
    env: dist.DistEnv,
    epoch: int,
    start_step: int,
    log: Logger,
    stop: Any,
) -> int:
    """:func:`avssl.train.train_one_epoch` with per-group learning rates and seeded dropout;
    returns the global step reached. ``state["sums"]`` accumulates (loss, correct, samples) of
    this rank's batches in the epoch."""
    model, opt, ds = state["model"], state["opt"], state["train"]
    steps, bs = state["steps_per_epoch"], cfg.optim.batch_size
    total = steps * cfg.optim.epochs
    idx = epoch_indices(len(ds), epoch, cfg.seed, env, steps, bs)[start_step * bs :]
    model.train()
    step = epoch * steps + start_step
    batches = state["train_loader"].batches(epoch, idx)
    while True:
        t_ask = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - t_ask
        if batch is None:
            break
        g = torch.Generator().manual_seed(hash((cfg.seed, epoch, step, env.rank)) % 2**62)
        torch.manual_seed(hash((cfg.seed, epoch, step, env.rank, 1)) % 2**62)  # dropout masks
        frames = augment(
            batch["frames"].to(env.device, non_blocking=True), cfg.aug, train=True, generator=g
        )
        target = batch["target"].to(env.device)
        base = lr_at(step, total, cfg.optim)
        for group in opt.param_groups:
            group["lr"] = base * group["lr_mult"]
        with _autocast(cfg, env):
            logits = model(frames)
        loss = nn.functional.cross_entropy(logits.float(), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; stopping")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct = float((logits.detach().argmax(1) == target).sum())
        state["sums"] += np.array([loss.item() * len(target), correct, len(target)])
        log.step(
            step,
            total,
            {"loss": loss.item(), "acc": correct / len(target), "lr": base},
            len(target) * env.world_size,
            waited,
        )
        step += 1
        if stop(step, epoch):
            break
    return step


@torch.no_grad()
def evaluate(
    state: dict[str, Any], cfg: FinetuneConfig, env: dist.DistEnv
) -> tuple[np.ndarray, np.ndarray]:
    """``(video_probs, centre_logits)``, each ``(V, C)`` float64 over all test videos: the
    averaged softmax of every clip and crop, and the logits of the centre clip's centre crop."""
    model, test = state["model"], state["test"]
    v, c = len(test), state["num_classes"]
    probs = torch.zeros(v, c, dtype=torch.float64, device=env.device)
    centre = torch.zeros(v, c, dtype=torch.float64, device=env.device)
    model.eval()
    k = cfg.eval.num_clips
    centre_at = eval_starts(1, 1, k)[1]
    idx = list(range(env.rank, v, env.world_size))
    for batch in state["test_loader"].batches(0, idx):
        frames = batch["frames"]  # (B, K', T, 3, H, W)
        b, kk, h, w = frames.shape[0], frames.shape[1], frames.shape[-2], frames.shape[-1]
        x = frames.flatten(0, 1).to(env.device)
        per_crop = []
        for box in crop_boxes(h, w, cfg.eval.num_crops, cfg.eval.crop_fraction):
            clips = apply_params(x, _crop_params(b * kk, h, w, box), cfg.aug)
            with _autocast(cfg, env):
                per_crop.append(model(clips).float().view(b, kk, c))
        logits = torch.stack(per_crop, dim=2)  # (B, K', crops, C); crop 0 = centre
        rows = batch["index"].to(env.device)
        probs[rows] = average_softmax(logits[:, :k])
        centre[rows] = logits[:, centre_at, 0].double()
    dist.all_reduce_sum(probs)
    dist.all_reduce_sum(centre)
    return probs.cpu().numpy(), centre.cpu().numpy()


def _build(
    cfg: FinetuneConfig, data: FinetuneData, net: nn.Module, info: ModelInfo, env: dist.DistEnv
) -> dict[str, Any]:
    from avssl.models.backbones import feature_dim_of

    mode, length = _input_mode(info, cfg)
    torch.manual_seed(cfg.seed)
    frozen = cfg.head.backbone_lr_mult == 0
    model = VideoClassifier(
        net,
        feature_dim_of(net),
        data.num_classes,
        mode=mode,
        dropout=cfg.head.dropout,
        frozen=frozen,
    ).to(env.device)
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = [{"params": list(model.head.parameters()), "lr_mult": 1.0}]
    if not frozen:
        groups.insert(
            0, {"params": list(model.net.parameters()), "lr_mult": cfg.head.backbone_lr_mult}
        )
    o = cfg.optim
    if o.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
    else:
        opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    hw = (cfg.data.frame_size, cfg.data.frame_width or cfg.data.frame_size)
    readers = [
        ClipReader(root, hw, infos=load_probe_infos(probe), cache_mb=cfg.data.cache_mb)
        for root, probe in ((data.train_root, data.train_probe), (data.test_root, data.test_probe))
    ]
    stride = cfg.clip.stride
    train = ManifestDataset(
        data.train,
        functools.partial(_train_example, length=length, stride=stride),
        readers[0],
        seed=cfg.seed,
    )
    test = ManifestDataset(
        data.test,
        functools.partial(
            _eval_example, length=length, stride=stride, num_clips=cfg.eval.num_clips
        ),
        readers[1],
        seed=cfg.seed + 1,
    )
    steps = cfg.optim.steps_per_epoch or max(1, len(train) // (o.batch_size * env.world_size))
    return {
        "model": model,
        "opt": opt,
        "info": info,
        "mode": mode,
        "clip_length": length,
        "train": train,
        "test": test,
        "train_loader": EpochLoader(train, _train_view(cfg), env.device),
        "test_loader": EpochLoader(test, _train_view(cfg, cfg.eval.batch_size), env.device),
        "steps_per_epoch": steps,
        "num_classes": data.num_classes,
        "classes": data.classes,
        "config_json": _config_json(cfg),
        "sums": np.zeros(3),
    }


def finetune(
    cfg: FinetuneConfig,
    encoder: tuple[nn.Module, ModelInfo],
    data: FinetuneData,
    out_dir: Path,
    *,
    resume: bool = False,
) -> dict[str, Any] | None:
    """Fine-tune ``encoder`` (:func:`load_encoder`'s ``(net, info)``; ``net`` is trained in
    place) on ``data.train`` and evaluate it on ``data.test``.

    Returns the result (``metrics``, ``confusion``, ``model``, ``extra``) on the main process,
    or None when training stopped early (SIGTERM, ``run.max_minutes``) with a checkpoint to
    ``--resume`` from, and on the other ranks.
    """
    cfg.validate()
    env = dist.init_distributed(cfg.run.device)
    try:
        return _finetune(cfg, encoder[0], encoder[1], data, out_dir, env, resume)
    finally:
        dist.cleanup()


def _finetune(
    cfg: FinetuneConfig,
    net: nn.Module,
    info: ModelInfo,
    data: FinetuneData,
    out_dir: Path,
    env: dist.DistEnv,
    resume: bool,
) -> dict[str, Any] | None:
    t_start = time.monotonic()
    ckpt_path = out_dir / "checkpoint.pt"
    state = _build(cfg, data, net, info, env)
    steps = state["steps_per_epoch"]
    start_epoch, start_step = 0, 0
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if ck.get("task") != "finetune":
            raise ValueError(f"{ckpt_path}: not a fine-tuning checkpoint")
        was, now = _comparable(ck["config"]), _comparable(state["config_json"])
        if was != now:
            diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            raise ValueError(
                f"{ckpt_path}: written with another configuration (sections "
                f"{diff} differ); resume with the same settings"
            )
        src = json.loads(ck["source_model"])
        if src.get("fingerprint") != state["info"].fingerprint:
            raise ValueError(f"{ckpt_path}: fine-tuned from {src.get('spec')}, not {info.spec}")
        load_weights(_raw(state["model"]), ck["model"], ckpt_path, what="model")
        state["opt"].load_state_dict(ck["optimizer"])
        start_epoch, start_step = int(ck["epoch"]), int(ck["step_in_epoch"])
        state["sums"] = np.array(ck["epoch_sums"], dtype=np.float64)
    if env.is_main:
        from avssl.config import dump_config

        out_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out_dir / "config.yaml")
    state["model"] = wrap_model(state["model"], cfg.run, env)
    log = Logger(out_dir, _train_view(cfg), env, start_epoch * steps + start_step)
    t0 = time.monotonic()
    term = {"flag": False}
    old = signal.signal(signal.SIGTERM, lambda *_: term.update(flag=True))

    def stop(step: int, epoch: int) -> bool:
        in_epoch = step - epoch * steps
        over = cfg.run.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.run.max_minutes
        every = cfg.run.ckpt_every_steps
        if term["flag"] or over or (every and in_epoch % every == 0 and in_epoch < steps):
            if env.is_main:
                save_checkpoint(ckpt_path, state, epoch, in_epoch)
        if cfg.run.crash_at_step is not None and step == cfg.run.crash_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return term["flag"] or over

    last: dict[str, float] = {}
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            step = finetune_one_epoch(state, cfg, env, epoch, start_step, log, stop)
            start_step = 0
            if step < (epoch + 1) * steps:
                dist.print0(
                    f"\nstopped at step {step} with a checkpoint in {out_dir}; "
                    "continue with --resume"
                )
                return None
            loss_sum, correct, n = state["sums"]
            last = {"train_loss": loss_sum / max(n, 1), "train_acc": correct / max(n, 1)}
            log.write(
                {"step": step - 1, "epoch": epoch, **{k: round(v, 6) for k, v in last.items()}}
            )
            state["sums"] = np.zeros(3)
            if env.is_main:
                save_checkpoint(ckpt_path, state, epoch + 1, 0)
                print(
                    f"\nepoch {epoch + 1}/{cfg.optim.epochs}: train loss "
                    f"{last['train_loss']:.4f} acc {last['train_acc']:.4f}",
                    file=sys.stderr,
                )
    finally:
        signal.signal(signal.SIGTERM, old)
    train_s = time.monotonic() - t_start
    t_eval = time.monotonic()
    probs, centre = evaluate(state, cfg, env)
    eval_s = time.monotonic() - t_eval
    if not env.is_main:
        return None
    y = np.array([r["label"] for r in data.test], dtype=np.int64)
    video_pred, clip_pred = probs.argmax(1), centre.argmax(1)
    metrics = {
        "clip_acc": accuracy(clip_pred, y),
        "clip_balanced_acc": balanced_accuracy(clip_pred, y),
        "video_acc": accuracy(video_pred, y),
        "video_balanced_acc": balanced_accuracy(video_pred, y),
        **({f"final_{k}": float(v) for k, v in last.items()}),
    }
    log.write(
        {
            "step": cfg.optim.epochs * steps,
            "test": True,
            **{k: round(v, 6) for k, v in metrics.items()},
        }
    )
    return {
        "metrics": metrics,
        "confusion": confusion_matrix(video_pred, y, data.num_classes).tolist(),
        "model": state["info"].to_dict(),
        "extra": {
            "input": state["mode"],
            "clip_length": state["clip_length"],
            "clip_stride": cfg.clip.stride,
            "steps": cfg.optim.epochs * steps,
            "steps_per_epoch": steps,
            "world_size": env.world_size,
            "device": str(env.device),
            "train_seconds": round(train_s, 2),
            "eval_seconds": round(eval_s, 2),
            "out_dir": str(out_dir),
            "protocol": (
                f"clip_acc: centre clip, centre crop; video_acc: softmax averaged over "
                f"{cfg.eval.num_clips} clips x {cfg.eval.num_crops} crops "
                f"({cfg.eval.crop_fraction:g} of the short side); final network, no selection"
            ),
            "config": json.loads(state["config_json"]),
            **data.notes,
        },
    }


# ------------------------------------------------------------------------------------- CLI
def _model_tag(info: ModelInfo) -> str:
    """As the other ``avssl-eval`` commands: ``random-<backbone>-<fingerprint[:6]>``, the run
    directory's name, or ``<folder>-<stem>`` of a checkpoint file."""
    if info.source == "random":
        tag = f"random-{info.backbone}-{info.fingerprint.removeprefix('random-')[:6]}"
    else:
        p = Path(info.spec)
        tag = p.name if p.is_dir() else f"{p.parent.name}-{p.stem}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)


def default_paths(info: ModelInfo, dataset: str) -> tuple[Path, Path]:
    """``(work dir, result JSON)``: ``RUN_DIR/eval/finetune-<dataset>{/,.json}`` for a run
    directory, ``evals/finetune-<dataset>-<modeltag>{/,.json}`` otherwise."""
    if info.source == "run":
        base = Path(info.spec) / "eval" / f"finetune-{dataset}"
    else:
        base = Path("evals") / f"finetune-{dataset}-{_model_tag(info)}"
    return base, base.with_name(base.name + ".json")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", metavar="MODEL", help="a run directory, a checkpoint.pt, or random:BACKBONE"
    )
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        metavar="TRAIN.jsonl",
        help="training rows: avssl-prep ucf101's splitK/train.jsonl, the built-in set's "
        "manifest.jsonl (default: $AVSSL_DATA/synth/manifest.jsonl) or an image manifest",
    )
    p.add_argument(
        "--test",
        "--test-manifest",
        dest="test",
        type=Path,
        default=None,
        metavar="TEST.jsonl",
        help="test rows (splitK/test.jsonl); without it, the manifest's 'split' column decides "
        "(data.train_splits / data.test_split)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="YAML",
        help="configuration file (e.g. configs/finetune_ucf101.yaml)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. optim.lr=0.001",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="work directory (checkpoint.pt, metrics.jsonl, config.yaml); default "
        "RUN_DIR/eval/finetune-DATASET/ for a run, else evals/finetune-DATASET-MODELTAG/",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="result JSON; default: DIR/finetune-DATASET.json with --out, else the work "
        "directory's name + .json beside it (RUN_DIR/eval/finetune-DATASET.json)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint.pt (same settings) if it exists",
    )
    p.add_argument(
        "--model-kwargs",
        default=None,
        metavar="JSON",
        help="backbone keyword arguments for random:, e.g. '{\"channels\": [16, 32]}'",
    )
    p.add_argument(
        "--like",
        default=None,
        metavar="RUN",
        help="random: with the backbone keyword arguments of this run",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` to ``avssl-eval``'s sub-commands."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune a backbone + linear classifier on labelled videos (UCF-101 protocol)",
        description=(
            "Fine-tune MODEL (+ dropout + a new linear classifier) on the training videos and "
            "report clip accuracy (centre clip, centre crop) and video accuracy (softmax "
            "averaged over eval.num_clips clips x eval.num_crops crops), balanced accuracies "
            "and the confusion matrix on the test videos. Defaults: the UCF-101 protocol "
            "(FinetuneConfig in avssl/eval/finetune.py; configs/finetune_ucf101.yaml); "
            "configs/finetune_demo.yaml is the CPU-scale run on the built-in set."
        ),
    )
    _add_arguments(p)
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """The ``finetune`` sub-command: 0 ok, 2 bad input (one line on stderr)."""
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"avssl-eval: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from avssl.config import load_config

    t0 = time.monotonic()
    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    cfg.validate()
    kwargs = None
    if args.model_kwargs:
        try:
            kwargs = json.loads(args.model_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--model-kwargs {args.model_kwargs!r}: not JSON ({e})") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"--model-kwargs {args.model_kwargs!r}: expected a JSON object")
    manifest = args.manifest or default_manifest()
    if args.manifest is None and not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; run 'avssl-prep synth' or give --manifest")
    data = load_data(cfg, manifest, args.test)
    net, info = load_encoder(args.model, model_kwargs=kwargs, like=args.like, seed=cfg.seed)
    work, result_path = default_paths(info, data.name)
    if args.out is not None:
        work, result_path = args.out, args.out / f"finetune-{data.name}.json"
    elif cfg.run.out:
        work, result_path = Path(cfg.run.out), Path(cfg.run.out) / f"finetune-{data.name}.json"
    if args.json is not None:
        result_path = args.json
    cfg.run.out = str(work)
    res = finetune(cfg, (net, info), data, work, resume=args.resume)
    if res is None:
        return 0
    result = {
        "format": "avssl-eval",
        "version": 1,
        "kind": "finetune",
        "dataset": {
            "name": data.name,
            "manifest": str(data.manifest),
            "test_manifest": None if data.test_manifest is None else str(data.test_manifest),
            "num_train": len(data.train),
            "num_test": len(data.test),
            "num_classes": data.num_classes,
            "train_splits": None if data.test_manifest else cfg.data.train_splits,
            "test_split": None if data.test_manifest else cfg.data.test_split,
        },
        "model": res["model"],
        "layer": "out",  # the backbone's output feature, fine-tuned with everything below it
        "metrics": res["metrics"],
        "classes": data.classes,
        "confusion": res["confusion"],
        "per_fold": [],
        "extra": res["extra"],
        "command": _command(args),
        "seconds": round(time.monotonic() - t0, 2),
    }
    atomic_write_text(result_path, json.dumps(result, indent=1) + "\n")
    print(
        f"finetune {args.model} on {data.name}: {len(data.train)} train / {len(data.test)} "
        f"test videos, {data.num_classes} classes ({result['seconds']:.0f} s)"
    )
    for k, v in res["metrics"].items():
        print(f"  {k:20s} {v:.4f}")
    print(f"  result: {result_path}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line (``args.argv``, set by ``avssl-eval``'s main, or ``sys.argv``)."""
    argv = getattr(args, "argv", None)
    if isinstance(argv, list | tuple):
        return shlex.join(["avssl-eval", *map(str, argv)])
    return shlex.join(["avssl-eval", "finetune", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    """``python -m avssl.eval.finetune MODEL ...`` (the same as ``avssl-eval finetune``)."""
    p = argparse.ArgumentParser(prog="avssl-eval finetune", description=__doc__.split("\n")[0])
    _add_arguments(p)
    args = p.parse_args(argv)
    if argv is not None:
        args.argv = ["finetune", *argv]
    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
