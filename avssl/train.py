"""The training core every pretext task shares: ``build`` + ``train_one_epoch`` + checkpoints.

Shape after DINO/MAE (STYLE.md): a config dataclass with every default, a plain
:func:`train_one_epoch` that fits on one screen, a model that owns its loss, learning rates as a
pure function of the step. Data order, augmentation and every random draw derive from
``(seed, epoch, step)``, never from the number of workers or processes, so a run resumed from a
checkpoint continues exactly as it would have (``--resume``; tested on CPU).

Distributed: ``torchrun --nproc_per_node=N -m avssl.cli train TASK ...`` -- one process per GPU
(NCCL) or per CPU slot (gloo); each rank reads its own slice of the epoch's permutation, gradients
are averaged by DDP, metrics are summed over ranks, rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
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
from avssl.data.dataset import (
    HELDOUT_PREFIX,
    FrameReader,
    ManifestDataset,
    heldout_rows,
    load_probe_infos,
    split_by_video,
)
from avssl.data.manifest import read_manifest
from avssl.data.transforms import AugmentConfig, augment
from avssl.models.tracking import TrackingOptions
from avssl.tasks import TASKS

__all__ = [
    "EXIT_PREEMPTED",
    "STOP_SIGNALS",
    "DataConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "main_train",
    "train",
]

# Exit status of avssl-train stopped by a stop signal after writing its checkpoint: "preempted,
# resume me with --resume" (sysexits.h EX_TEMPFAIL), distinct from 0 (finished, or stopped by
# run.max_minutes after its final evaluation), 1 (an error) and 2 (bad arguments).
EXIT_PREEMPTED = 75
# The signals that make avssl-train checkpoint at the end of the current step and exit with
# EXIT_PREEMPTED: SIGTERM (a scheduler's kill, SLURM preemption, torchrun's shutdown) and SIGUSR1
# (SLURM's advance warning, sbatch --signal=USR1@120).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


@dataclass
class DataConfig:
    manifest: str | None = None  # a prep manifest; None: the built-in set ($AVSSL_DATA/synth)
    root: str | None = None  # video root; None: prep.json's root beside the manifest
    val_fraction: float = 0.2  # whole videos held out for the pretext accuracy
    # k-fold by video instead (k >= 2): hold out fold val_fold; k runs hold out every video once
    val_folds: int = 0
    val_fold: int = 0
    frame_size: int = 64  # frames are decoded at this short side (square crop from it)
    cache_mb: int = 2048  # per-process cache of decoded videos (0: read_frames every time)
    num_workers: int = 0  # data-loader processes
    # batches each worker keeps ready (DataLoader prefetch_factor; with num_workers > 0)
    prefetch_factor: int = 2
    # page-locked host batches for asynchronous copies to the GPU; "auto": on when training on CUDA
    pin_memory: Literal["auto", "on", "off"] = "auto"
    shuffle_labels: bool = False  # leak check: targets permuted across rows
    # probability of showing a training row played backwards, for the tasks whose label survives
    # it (shuffle_learn, odd_one_out): twice the distinct inputs, no "which way" shortcut
    time_reverse: float = 0.0
    max_rows: int | None = None  # use at most this many training rows (debug, smoke tests)
    max_val_rows: int | None = None  # evaluate on at most this many held-out rows (spread)
    # held-out rows from this manifest instead of a split of data.manifest (e.g. avc_test.jsonl)
    val_manifest: str | None = None
    # --- audio-visual pair tasks (ave_net, l3_net, avol_net, av_sync; avssl/tasks/av.py) ---
    av_frames: int = 1  # frames given to the vision tower, stacked as channels (1: the papers)
    av_frame_step: int = 1  # frames apart, when av_frames > 1
    av_grid: bool = True  # correspondence negatives start on the frame's grid (the shortcut rule)
    av_grid_tick: float = 0.0  # > 0: add frame-grid clicks of this amplitude (shortcut experiment)
    neg_fraction: float = 0.5  # share of negatives (the papers: 50:50)
    sync_curriculum_epochs: int = 0  # av_sync: hard (shifted) negatives ramp 0 -> 1 over these
    sync_offset_s: tuple[float, float] = (0.5, 2.0)  # av_sync: |shift| range of hard negatives
    # training-time sound augmentation (avssl.tasks.av.AudioAug; never a shift in time): gain
    # +-dB, playback rate 1 +- speed about the window's centre, one zeroed stretch <= time_mask
    audio_gain_db: float = 0.0
    audio_speed: float = 0.0
    audio_time_mask: float = 0.0
    # training: show a frame up to this many frames off the row's (0: the row's own; with
    # options.when_stream only the map's frame moves, the stack stays)
    av_frame_jitter: int = 0
    # training: this share of the sampled negatives hear near-silence (white noise at -90 to
    # -50 dBFS, avssl.tasks.av.near_silence) instead of another video's sound
    silent_negatives: float = 0.0
    # after training a pair task: sound-source localization on these trials (rows with bbox);
    # None: localization_test.jsonl beside the held-out manifest, if there is one
    localization_manifest: str | None = None
    localization_frame_size: int = 0  # frames of the trials at this size (0: data.frame_size)
    localization_trials: int = 400  # at most this many trials, spread out (0: no localization)


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one pass over the training rows
    schedule: Literal["step", "cosine", "constant"] = "step"
    step_at: float = 0.8  # "step": lr x0.1 at this fraction of training (S&L: 80k of 100k)
    warmup_steps: int = 0


@dataclass
class RunConfig:
    out: str | None = None  # run directory; None: runs/<task>
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = False
    compile: bool = False
    log_every: int = 20
    ckpt_every_steps: int = 0  # also checkpoint every N steps (0: end of each epoch only)
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    tensorboard: bool = True
    # Crash drill: SIGKILL this process right after the checkpoint of this global step (tests
    # and drills of --resume; a real crash gives no such timing guarantee)
    crash_at_step: int | None = None


@dataclass
class TaskOptions:
    odd_encoding: Literal["dynamic_image", "differences", "frames"] = "dynamic_image"
    # shuffle_learn: "concat" = the paper's concatenated features; "compare" = the two frame-to-
    # frame steps and their product (same sign = the middle frame lies between the others)
    tuple_fusion: Literal["concat", "compare"] = "concat"
    # odd_one_out: "sod" = the paper's sum-of-differences fusion then an N-way classifier;
    # "score" = one oddness score per subsequence from its features minus the question's mean
    odd_fusion: Literal["sod", "score"] = "sod"
    # arrow_of_time with a 2-D backbone: per-frame features fused late, the stack of differences,
    # or "stabilized": the differences after aligning every frame to the middle one (global shift)
    arrow_encoding: Literal["frames", "differences", "stabilized"] = "frames"
    # weight the loss by inverse class frequency of the training rows (Shuffle & Learn's 25%
    # positives otherwise pull a small model towards "negative"); off = the papers' plain loss
    balanced_loss: bool = False
    # hidden units before the classifier: 0 = linear, -1 = the task's default (linear for
    # shuffle_learn and odd_one_out as the papers, 256 for arrow_of_time's late fusion)
    head_hidden: int = -1
    # pair tasks: also score every frame against the other videos' sounds in the batch (B - 1
    # negatives per frame for free; positives and negatives weighted 1/2 each, as the papers'
    # 50:50). Off: only the sampled pairs (data.neg_fraction negatives), the papers' batches
    batch_negatives: bool = False
    # pair tasks with batch_negatives: weight of a symmetric InfoNCE term on the same (B, B)
    # match logits (each positive ranked above its row's and column's negatives); 0: off
    contrastive: float = 0.0
    # avol_net with data.av_frames = T > 1: the map's tower sees the centre frame only and a second
    # tower reads the T-frame stack against the sound's time course (*when*); their logits add
    when_stream: bool = False
    # avol_net: average each cell's cosine over its k x k neighbourhood before the score (odd k;
    # 1: the paper's per-cell score)
    map_smooth: int = 1
    # avol_net: pool the cell logits by log-mean-exp with this sharpness (0: the paper's max)
    map_pool: float = 0.0

    # --- image tasks (avssl/tasks/image.py; docs/image_tasks.md) ---
    # a whole-video row (videos.jsonl) becomes this many rows, one per segment of the video
    frames_per_video: int = 32
    # multi_task: head -> loss weight (default: relative position, colourisation, exemplar)
    tasks: dict[str, float] = field(default_factory=dict)
    # relative_position: patch side, gap between patches, max jitter per patch, in pixels of the
    # augmented frame (aug.size); 0 / -1: the paper's proportions (96 / 48 / 7) at that size
    patch: int = 0
    gap: int = -1
    jitter: int = -1
    # relative_position's chromatic-aberration guard, per patch: keep one random channel (the
    # paper's colour dropping), project out green-magenta, luma only, or nothing
    chroma: Literal["drop", "project", "grey", "none"] = "drop"
    colour_grid: int = 4  # colorization: predict the ab bin of each cell of a g x g grid
    colour_bin: float = 10.0  # ab bin size (the paper's 10)
    colour_prior_rows: int = 512  # training frames measured for the rebalancing (0: none)
    rebalance_lambda: float = 0.5  # Zhang et al.: mix with uniform, (1 - l) p + l / Q
    rebalance_sigma: float = 5.0  # Zhang et al.: Gaussian smoothing of p, in ab units
    exemplar_views: int = 2  # exemplar: augmented views per image per step
    exemplar_classes: int = 0  # exemplar: surrogate classes (0: every training image)
    proj_dim: int = 128  # simclr: projection output size
    temperature: float = 0.1  # simclr: NT-Xent temperature (the paper's ImageNet setting)
    mask_ratio: float = 0.75  # mae: fraction of the patches masked
    decoder_dim: int = 512  # mae decoder width / blocks / heads (the paper's 512 / 8 / 16)
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix: bool = True  # mae: loss on per-patch normalised pixels


@dataclass
class ModelConfig:
    """Backbone options (passed to ``avssl.models.build_backbone``); 0 / empty: its default."""

    width: float = 0.0  # caffenet, vgg_av: channel multiplier
    blocks: int = 0  # vgg_av: how many conv blocks (each halves the map)
    convs: int = 0  # vgg_av: conv layers per block (2: the papers)
    pools: int = -1  # vgg_av: how many blocks end with a 2x2 pool (-1: all; fewer: a finer map)
    channels: list[int] = field(default_factory=list)  # convnet_tiny: block channels
    spatial: int = 0  # convnet_tiny: keep an s x s map in the feature
    patch_size: int = 0  # vit_tiny: patch side in pixels (16)
    dim: int = 0  # vit_tiny: token width (192)
    depth: int = 0  # vit_tiny: transformer blocks (12)
    heads: int = 0  # vit_tiny: attention heads (3)

    def kwargs(self, backbone: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.width:
            out["width"] = self.width
        if self.blocks:
            out["blocks"] = self.blocks
        if self.convs:
            out["convs"] = self.convs
        if self.pools >= 0:
            out["pools"] = self.pools
        if self.channels:
            out["channels"] = tuple(self.channels)
        if self.spatial:
            out["spatial"] = self.spatial
        for name in ("patch_size", "dim", "depth", "heads"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


@dataclass
class AudioConfig:
    """The audio tower of the pair tasks (``avssl.models.audio``); 0 / empty: its default."""

    backbone: str = "audio_vgg"  # or audio_tiny (width 0.25)
    width: float = 0.0
    blocks: int = 0
    convs: int = 0  # conv layers per block (2: the papers)
    input_norm: Literal["none", "instance"] = "none"  # "none": silence stays telling
    # front end (avssl.models.audio.build_frontend): {} = the papers' 1 s log-spectrogram at 48 kHz
    frontend: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 128  # both towers' embedding size

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input_norm": self.input_norm}
        if self.width:
            out["width"] = self.width
        if self.blocks:
            out["blocks"] = self.blocks
        if self.convs:
            out["convs"] = self.convs
        return out


@dataclass
class TrainConfig:
    task: str = "shuffle_learn"
    seed: int = 0
    backbone: str = "convnet_tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aug: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=56))
    run: RunConfig = field(default_factory=RunConfig)
    options: TaskOptions = field(default_factory=TaskOptions)
    audio: AudioConfig = field(default_factory=AudioConfig)
    # colorization_tracking (avssl/tasks/tracking.py, docs/tracking.md): its defaults live with
    # its model, avssl/models/tracking.py
    tracking: TrackingOptions = field(default_factory=TrackingOptions)


def default_manifest(task: str) -> Path:
    """The built-in set's manifest (written by ``avssl-prep synth``): ``temporal/<task>.jsonl``,
    or for the pair tasks ``av/avc_train.jsonl`` (held out: ``av/avc_test.jsonl``); the image
    tasks read the digits (``avssl-prep digits``: ``digits/images.jsonl``)."""
    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    synth = data / "synth"
    if task in TASKS and TASKS[task].manifest == "images.jsonl":
        return data / "digits" / "images.jsonl"
    if task in TASKS and TASKS[task].pair:
        return synth / "av" / "avc_train.jsonl"
    # the task's manifest (colorization_tracking reads videos.jsonl; the others <task>.jsonl)
    return synth / "temporal" / (TASKS[task].manifest if task in TASKS else f"{task}.jsonl")


TIMING_KEYS = ("samples_per_s", "data_wait")  # metrics.jsonl fields that vary run to run


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """The learning rate at ``step`` of ``total`` (a pure function: resumes exactly)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        return cfg.lr * (0.1 if step >= cfg.step_at * total else 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    return cfg.lr


# ---------------------------------------------------------------------------------- building
def _rows(cfg: TrainConfig) -> tuple[list[dict], list[dict], Path, dict]:
    manifest = Path(cfg.data.manifest) if cfg.data.manifest else default_manifest(cfg.task)
    pair = TASKS[cfg.task].pair
    val_manifest = cfg.data.val_manifest
    if pair and not cfg.data.manifest:
        from data_prep.synth_av import ensure_builtin_av

        ensure_builtin_av(manifest.parent)  # the main job builds its data on first use
        val_manifest = val_manifest or str(manifest.parent / "avc_test.jsonl")
    if not manifest.is_file():
        hint = (
            ("run 'avssl-prep synth' first (it builds the built-in set and its temporal manifests)")
            if not cfg.data.manifest
            else "check data.manifest"
        )
        if not cfg.data.manifest and TASKS[cfg.task].manifest == "images.jsonl":
            hint = ("run 'avssl-prep digits ../shared/data/digits/opencv-doc__digits.png' first, "
                    "or set data.manifest to an image manifest or any video manifest")  # fmt: skip
        raise FileNotFoundError(f"{manifest}: manifest not found; {hint}")
    card_path = _card_of(manifest)
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    root = Path(cfg.data.root or card.get("root") or manifest.parent)
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    images = "path" in rows[0]  # an image manifest (avssl-prep digits | images)
    heldout_root = None
    if val_manifest:
        train_rows, val_rows = rows, read_manifest(val_manifest)
        val_card_path = _card_of(Path(val_manifest))
        val_card = json.loads(val_card_path.read_text()) if val_card_path.is_file() else {}
        val_root = Path(val_card.get("root") or Path(val_manifest).parent)
        if not cfg.data.root and val_root.resolve() != root.resolve():
            # a held-out set prepared separately: its rows are paths under its own root
            heldout_root, val_rows = val_root, heldout_rows(val_rows)
    elif images and any(r.get("split") == "train" for r in rows):
        # its own split: the train rows train, the others (test) are held out
        train_rows = [r for r in rows if r.get("split") == "train"]
        val_rows = [r for r in rows if r.get("split") != "train"]
    else:
        train_rows, val_rows = split_by_video(
            rows, cfg.data.val_fraction, cfg.seed, folds=cfg.data.val_folds,
            fold=cfg.data.val_fold, key="path" if images else "video",
        )  # fmt: skip
    if pair:
        from avssl.tasks.av import positives

        train_rows, val_rows = positives(train_rows), positives(val_rows)
    if cfg.data.max_rows:
        train_rows = train_rows[: cfg.data.max_rows]
    if cfg.data.max_val_rows and len(val_rows) > cfg.data.max_val_rows:
        keep = np.linspace(0, len(val_rows) - 1, cfg.data.max_val_rows).round().astype(int)
        val_rows = [val_rows[i] for i in keep]
    where = {"manifest": str(manifest), "card": card_path, "val_manifest": val_manifest,
             "heldout_root": heldout_root}  # fmt: skip
    return train_rows, val_rows, root, where


def _card_of(manifest: Path) -> Path:
    """The prep.json of a manifest: beside it, or one folder up (ucf101: OUT/splitK/x.jsonl)."""
    card_path = manifest.parent / "prep.json"
    return card_path if card_path.is_file() else manifest.parent.parent / "prep.json"


def build(cfg: TrainConfig, env: dist.DistEnv) -> dict[str, Any]:
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; available: {sorted(TASKS)}")
    task = TASKS[cfg.task]
    if cfg.data.time_reverse and task.reverse_row is None:
        raise ValueError(f"data.time_reverse: {cfg.task} changes its label when played backwards")
    if task.pair and cfg.data.shuffle_labels:
        raise ValueError(f"data.shuffle_labels: {cfg.task} draws its targets per sample")
    train_rows, val_rows, root, where = _rows(cfg)
    card = json.loads(Path(where["card"]).read_text()) if Path(where["card"]).is_file() else {}
    infos = load_probe_infos(Path(where["card"]).parent / "probe.jsonl")
    heldout_root = where["heldout_root"]
    if heldout_root is not None:
        held_card = _card_of(Path(where["val_manifest"]))
        infos.update(load_probe_infos(held_card.parent / "probe.jsonl", HELDOUT_PREFIX))
    size = (cfg.data.frame_size, cfg.data.frame_size)
    row0 = train_rows[0]
    kwargs: dict[str, Any] = {}
    if cfg.options.head_hidden >= 0:
        kwargs["head_hidden"] = cfg.options.head_hidden
    if cfg.task == "odd_one_out":
        kwargs["num_subsequences"] = len(row0["subsequences"])
        kwargs["length"] = len(row0["subsequences"][0])
        kwargs["encoding"] = cfg.options.odd_encoding
        kwargs["fusion"] = cfg.options.odd_fusion
    elif cfg.task == "shuffle_learn":
        kwargs["fusion"] = cfg.options.tuple_fusion
    elif cfg.task == "arrow_of_time":
        kwargs["length"] = len(row0["frames"])
        kwargs["encoding"] = cfg.options.arrow_encoding
    prep = None
    if task.prepare is not None:  # the image tasks: the run shapes their model and examples
        if cfg.data.shuffle_labels:
            raise ValueError(f"data.shuffle_labels: {cfg.task} makes its targets per sample")
        reader = FrameReader(root, size, infos=infos, cache_mb=cfg.data.cache_mb,
                             heldout_root=heldout_root)  # fmt: skip
        prep = task.prepare(cfg, train_rows, val_rows, reader)
        train_rows, val_rows = prep.train_rows, prep.val_rows
        kwargs.update(prep.model_kwargs)
    torch.manual_seed(cfg.seed)
    if task.pair:
        model = build_pair_model(cfg)
    else:
        model = task.build_model(cfg.backbone, **kwargs, **cfg.model.kwargs(cfg.backbone))
    sample_rate = int(getattr(model, "sample_rate", 0))
    cache_dir = card.get("cache_dir")
    if cache_dir and not Path(cache_dir).is_dir():  # a moved dataset: the card's folder
        cache_dir = str(Path(where["card"]).parent)
    cache_rate = card.get("config", {}).get("cache_sample_rate")
    if task.pair and "cache_audio" in row0 and cache_rate != sample_rate:
        raise ValueError(
            f"{where['manifest']}: the pair cache holds sound at {cache_rate} Hz but the audio "
            f"front end wants {sample_rate} Hz: set audio.frontend.sample_rate={cache_rate}"
        )
    if prep is None:
        reader = FrameReader(
            root, size, infos=infos, cache_mb=cfg.data.cache_mb, sample_rate=sample_rate,
            cache_dir=cache_dir, heldout_root=heldout_root,
        )  # fmt: skip
    make_train = make_val = task.make_example
    if prep is not None:
        make_train, make_val = prep.make_train, prep.make_val
    if task.bind is not None:
        opts: dict[str, Any] = {
            "frames": cfg.data.av_frames,
            "frame_step": cfg.data.av_frame_step,
            "grid": cfg.data.av_grid,
            "tick": cfg.data.av_grid_tick,
            "sync_offset_s": tuple(cfg.data.sync_offset_s),
            "neg_fraction": cfg.data.neg_fraction,
        }
        from avssl.tasks.av import AudioAug

        aug = AudioAug(cfg.data.audio_gain_db, cfg.data.audio_speed, cfg.data.audio_time_mask)
        make_train = task.bind(
            train_rows, curriculum_epochs=cfg.data.sync_curriculum_epochs,
            audio_aug=aug if aug else None, jitter=cfg.data.av_frame_jitter,
            where_frame=cfg.options.when_stream, silent_negatives=cfg.data.silent_negatives,
            **opts,
        )  # fmt: skip
        # held out: the final negatives (all hard for av_sync), half the pairs, fixed
        make_val = task.bind(val_rows, **{**opts, "neg_fraction": 0.5})
    if cfg.options.balanced_loss:
        counts = np.bincount(
            [int(r["target"]) for r in train_rows], minlength=task.num_classes(row0)
        ).astype(np.float64)
        w = counts.sum() / np.maximum(counts, 1) / len(counts)
        model.class_weight = torch.tensor(w, dtype=torch.float32)
    model = model.to(env.device)
    if model.class_weight is not None:
        model.class_weight = model.class_weight.to(env.device)
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.optim.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(),
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
    ds = ManifestDataset(
        train_rows,
        make_train,
        reader,
        seed=cfg.seed,
        shuffle_labels=cfg.data.shuffle_labels,
        reverse_row=task.reverse_row,
        time_reverse=cfg.data.time_reverse,
    )
    val = ManifestDataset(val_rows, make_val, reader, seed=cfg.seed + 1)
    steps = cfg.optim.steps_per_epoch or max(1, len(ds) // (cfg.optim.batch_size * env.world_size))
    return {
        "task": task,
        "model": model,
        "opt": opt,
        "train": ds,
        "val": val,
        "train_loader": EpochLoader(ds, cfg, env.device),
        "val_loader": EpochLoader(val, cfg, env.device),
        "steps_per_epoch": steps,
        "where": where,
        "reader": reader,
        # classes of the held-out per-class accuracy (0: the task has none)
        "num_classes": prep.num_classes if prep is not None else task.num_classes(row0),
    }


def build_pair_model(cfg: TrainConfig) -> nn.Module:
    """The two-tower model of a pair task (ave_net, l3_net, avol_net, av_sync) from its config
    (random init: seed torch first); what avssl-train trains and the evaluations rebuild."""
    return TASKS[cfg.task].build_model(
        cfg.backbone,
        backbone_kwargs=cfg.model.kwargs(cfg.backbone),
        audio_backbone=cfg.audio.backbone,
        audio_kwargs=cfg.audio.kwargs(),
        frontend=cfg.audio.frontend,
        frames=cfg.data.av_frames,
        embed_dim=cfg.audio.embed_dim,
        batch_negatives=cfg.options.batch_negatives,
        when_stream=cfg.options.when_stream,
        map_smooth=cfg.options.map_smooth,
        map_pool=cfg.options.map_pool,
        contrastive=cfg.options.contrastive,
    )


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore the stop signals: a scheduler signals every process of the job
    (torchrun signals each worker's whole process group), and a worker killed by one would fail
    the main process's next batch before it could write its checkpoint. The main process decides
    when to stop; its workers end when it does. They start with the signals blocked (see
    :meth:`EpochLoader.batches`), so one that comes while a worker imports waits and is dropped
    here."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class EpochLoader:
    """One ``DataLoader`` for the whole run: its workers (``data.num_workers``) start once and
    keep their decoded-video caches from epoch to epoch. ``batches(epoch, indices)`` iterates
    the batches of those dataset rows; the keys ``(epoch, index)`` travel to the workers, so the
    random stream of every sample is fixed by (seed, epoch, index) whatever the worker count."""

    def __init__(
        self, ds: ManifestDataset, cfg: TrainConfig, device: torch.device | None = None
    ) -> None:
        self.keys: list[tuple[int, int]] = []
        workers = cfg.data.num_workers
        pin = cfg.data.pin_memory == "on" or (
            cfg.data.pin_memory == "auto" and device is not None and device.type == "cuda"
        )
        self.loader = torch.utils.data.DataLoader(
            ds,
            batch_size=cfg.optim.batch_size,
            sampler=self.keys,  # read afresh by every iter(): the current epoch's keys
            num_workers=workers,
            drop_last=False,
            persistent_workers=workers > 0,
            prefetch_factor=cfg.data.prefetch_factor if workers else None,
            pin_memory=pin and torch.cuda.is_available(),
            multiprocessing_context="spawn" if workers else None,
            worker_init_fn=_ignore_stop_signals if workers else None,
        )

    def batches(self, epoch: int, indices: list[int]) -> Any:
        self.keys[:] = [(epoch, i) for i in indices]
        if not self.loader.num_workers or not hasattr(signal, "pthread_sigmask"):
            return iter(self.loader)
        # the workers (started by the first iter) inherit this mask: a stop signal stays
        # pending until they ignore it, and here until the mask is restored
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return iter(self.loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def epoch_indices(
    n: int, epoch: int, seed: int, env: dist.DistEnv, steps: int, bs: int
) -> list[int]:
    """This rank's sample indices for ``epoch``: a permutation seeded by (seed, epoch), cycled to
    ``steps`` full batches per rank, rank r taking every world-size-th batch slice."""
    perm = np.random.default_rng([seed, epoch, 17]).permutation(n)
    need = steps * bs * env.world_size
    reps = int(math.ceil(need / max(n, 1)))
    full = np.concatenate([np.roll(perm, k * 7) for k in range(reps)])[:need]
    per = full.reshape(steps, env.world_size, bs)[:, env.rank, :]
    return per.reshape(-1).tolist()


# ------------------------------------------------------------------------------ one epoch
def train_one_epoch(
    state: dict[str, Any],
    cfg: TrainConfig,
    env: dist.DistEnv,
    epoch: int,
    start_step: int,
    log: Any,
    stop: Any,
) -> int:
    """Train from ``start_step`` to the end of ``epoch``; returns the global step reached."""
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
        waited = time.perf_counter() - t_ask  # blocked on the loader: the input pipeline's share
        if batch is None:
            break
        g = torch.Generator().manual_seed(hash((cfg.seed, epoch, step, env.rank)) % 2**62)
        frames = _augment(batch["frames"].to(env.device, non_blocking=True), cfg, state["task"], g)
        target = batch["target"].to(env.device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg.optim)
        with _autocast(cfg, env):
            loss, logs = model(_inputs(batch, frames, target, env))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; stopping")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        vals = {"loss": loss.item()}
        if "logits" in logs:  # a task with classes (MAE has none): a model may bring its targets
            hits = logs["logits"].argmax(1) == logs.get("target", target)
            vals["acc"] = hits.float().mean().item()
        vals["lr"] = opt.param_groups[0]["lr"]
        vals.update({k: float(v) for k, v in logs.get("scalars", {}).items()})  # multi-task
        log.step(step, total, vals, len(target) * env.world_size, waited)
        step += 1
        if stop(step, epoch):
            break
    return step


def _augment(
    x: torch.Tensor, cfg: TrainConfig, task: Any, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`augment` of ``(B, T, 3, H, W)`` frames (``generator`` None: the evaluation crop).
    A views task's T frames are augmented as B * T one-frame clips, each its own crop, flip and
    jitter; held out, they get the same, from a fixed seed (identical views would make SimCLR's
    and Exemplar's held-out accuracy trivial)."""
    if not task.views:
        return augment(x, cfg.aug, train=generator is not None, generator=generator)
    b, t = x.shape[:2]
    if generator is None:
        generator = torch.Generator().manual_seed(cfg.seed + 1)
    out = augment(x.flatten(0, 1)[:, None], cfg.aug, train=True, generator=generator)
    return out.view(b, t, *out.shape[2:])


def _inputs(
    batch: dict[str, torch.Tensor], frames: torch.Tensor, target: torch.Tensor, env: dist.DistEnv
) -> dict[str, torch.Tensor]:
    """The model's batch: augmented frames, target, and every other tensor of the examples (the
    sound of the pair tasks, the patch positions and mask draws of the image tasks, ...)."""
    out = {"frames": frames, "target": target}
    for key, value in batch.items():
        if key not in out and isinstance(value, torch.Tensor):
            out[key] = value.to(env.device, non_blocking=True)
    return out


def _autocast(cfg: TrainConfig, env: dist.DistEnv) -> Any:
    if env.device.type == "cuda" and cfg.run.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(state: dict[str, Any], cfg: TrainConfig, env: dist.DistEnv) -> dict[str, float]:
    """Held-out pretext accuracy and balanced accuracy (mean per-class recall), over all ranks.

    The targets are the model's own where it makes them (``logs["target"]``: rotation, pixels of
    colourisation, ...); a task without fixed classes (``num_classes`` 0: SimCLR) reports no
    balanced accuracy, one without classification (no ``logits``: MAE) the loss alone."""
    model, val = state["model"], state["val"]
    if len(val) == 0:
        return {}
    model.eval()
    k = state["num_classes"]
    counts = torch.zeros(2, max(k, 1), dtype=torch.float64, device=env.device)  # [hit, all]/class
    loss_sum = torch.zeros(2, dtype=torch.float64, device=env.device)
    idx = list(range(env.rank, len(val), env.world_size))
    for batch in state["val_loader"].batches(0, idx):
        frames = _augment(batch["frames"].to(env.device), cfg, state["task"], None)
        target = batch["target"].to(env.device)
        with _autocast(cfg, env):
            loss, logs = model(_inputs(batch, frames, target, env))
        if "logits" in logs:
            truth = logs.get("target", target).flatten()
            hit = (logs["logits"].argmax(1).flatten() == truth).double()
            cls = truth if k else torch.zeros_like(truth)
            counts[0].index_add_(0, cls, hit)
            counts[1].index_add_(0, cls, torch.ones_like(hit))
        loss_sum += torch.tensor([loss.item() * len(target), len(target)], device=env.device)
    dist.all_reduce_sum(counts)
    dist.all_reduce_sum(loss_sum)
    out = {"val_loss": float(loss_sum[0] / loss_sum[1])}
    seen = counts[1] > 0
    if seen.any():
        out["val_acc"] = float(counts[0].sum() / counts[1].sum())
        if k:
            out["val_balanced_acc"] = float((counts[0][seen] / counts[1][seen]).mean())
    return {**out, "val_samples": int(loss_sum[1])}


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: Path, state: dict[str, Any], cfg: TrainConfig, epoch: int, step_in_epoch: int
) -> None:
    """Tensors and primitives only (loads with ``weights_only=True``), written atomically."""
    from avssl.config import config_to_dict
    from avssl.data.manifest import atomic_output

    raw = unwrap_model(state["model"])
    encoder = getattr(
        raw, "encoder", raw
    )  # a FrameEncoder / AVNet knows the kwargs it was built with
    backbone_kwargs = getattr(encoder, "backbone_kwargs", None) or cfg.model.kwargs(cfg.backbone)
    ckpt = {
        "model": raw.state_dict(),
        "optimizer": state["opt"].state_dict(),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "config": json.dumps(config_to_dict(cfg)),
        "backbone": cfg.backbone,
        "backbone_kwargs": json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in backbone_kwargs.items()}
        ),
        "task": cfg.task,
    }
    if hasattr(raw, "audio_net"):  # the audio tower, as avssl-eval esc50 | retrieval load it
        ckpt["audio_backbone"] = raw.audio_backbone_name
        ckpt["audio_backbone_kwargs"] = json.dumps(raw.audio_kwargs)
        ckpt["audio_frontend"] = json.dumps(raw.frontend_config)
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors and primitives only (``weights_only=True``); anything else is refused with a
    ValueError naming the file (:func:`avssl.checkpoints.load_checkpoint`)."""
    from avssl.checkpoints import load_checkpoint as load_safely

    return load_safely(path)


def _step_of(line: str) -> float:
    """The ``step`` of a metrics.jsonl line; +inf for a line that is not whole JSON."""
    try:
        return float(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class Logger:
    """Progress line, metrics.jsonl and TensorBoard; silent on ranks other than 0."""

    def __init__(
        self, run_dir: Path, cfg: TrainConfig, env: dist.DistEnv, resume_step: int
    ) -> None:
        self.env, self.cfg = env, cfg
        self.path = run_dir / "metrics.jsonl"
        self.t0, self.seen, self.tb = time.monotonic(), 0, None
        # throughput and data wait over the current log interval (timing fields of the records)
        self.t_mark, self.seen_mark, self.wait = self.t0, 0, 0.0
        if not env.is_main:
            return
        if self.path.exists():  # keep the lines up to the checkpoint: a resumed log is whole
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if _step_of(ln) < resume_step  # (a line torn by a kill mid-append: dropped)
            ]
            from avssl.data.manifest import atomic_write_text

            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        if cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
            except ImportError:
                self.tb = None

    def write(self, rec: dict[str, Any]) -> None:
        if not self.env.is_main:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k != "step":
                    self.tb.add_scalar(k, v, rec["step"])

    def step(self, step: int, total: int, vals: dict[str, float], n: int, waited: float) -> None:
        """Record one step: ``n`` samples over all ranks, ``waited`` s blocked on the loader."""
        self.seen += n
        self.wait += waited
        if step % self.cfg.run.log_every and step != total - 1:
            return
        now = time.monotonic()
        span = max(now - self.t_mark, 1e-9)
        timing = {  # TIMING_KEYS: not reproducible, left out when runs are compared
            "samples_per_s": round((self.seen - self.seen_mark) / span, 2),
            "data_wait": round(min(self.wait / span, 1.0), 4),
        }
        self.t_mark, self.seen_mark, self.wait = now, self.seen, 0.0
        self.write({"step": step, **{k: round(v, 6) for k, v in vals.items()}, **timing})
        if self.env.is_main:
            el = now - self.t0
            rate = self.seen / el if el > 0 else 0.0
            eta = (total - step - 1) * (el / max(self.seen, 1)) * self.cfg.optim.batch_size
            tty = sys.stderr.isatty()
            print(
                f"{chr(13) if tty else ''}step {step + 1}/{total} loss {vals['loss']:.4f} "
                + (f"acc {vals['acc']:.3f} " if "acc" in vals else "")
                + f"{rate:.0f} samples/s "
                f"data wait {100 * timing['data_wait']:.0f}% ETA {eta:.0f} s ",
                end="" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module :func:`wrap_model` wrapped (DDP's ``.module``, torch.compile's ``_orig_mod``)."""
    raw = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return getattr(raw, "_orig_mod", raw)


def wrap_model(model: nn.Module, run: RunConfig, env: dist.DistEnv) -> nn.Module:
    """DDP across the processes of a torchrun launch, then ``torch.compile`` if asked."""
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    if run.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def train(cfg: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last evaluation metrics.

    A stop signal (:data:`STOP_SIGNALS`) ends the run after the current step with a checkpoint
    on every rank's agreement; the metrics are then ``{"stopped_at_step", "preempted"}`` (the
    signal's name) and :func:`main_train` returns :data:`EXIT_PREEMPTED`."""
    caught: dict[str, str | None] = {"signal": None}

    def on_stop_signal(signum: int, _frame: Any) -> None:
        caught["signal"] = caught["signal"] or signal.Signals(signum).name

    # installed first, so a signal that comes while the data loads still stops at step one
    old_handlers = {s: signal.signal(s, on_stop_signal) for s in STOP_SIGNALS}
    try:
        return _train(cfg, resume, caught)
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


def _train(cfg: TrainConfig, resume: bool, caught: dict[str, str | None]) -> dict[str, Any]:
    env = dist.init_distributed(cfg.run.device)
    run_dir = Path(cfg.run.out or f"runs/{cfg.task}")
    ckpt_path = run_dir / "checkpoint.pt"
    state = build(cfg, env)
    start_epoch, start_step = 0, 0
    if env.is_main and run_dir.is_dir():  # temporary files a kill mid-write left (checkpoint,
        # metrics, config: top level only; RUN/eval belongs to avssl-eval, which may be running)
        for tmp in run_dir.glob(".*.tmp*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
    if resume and ckpt_path.is_file():
        from avssl.checkpoints import load_weights

        ck = load_checkpoint(ckpt_path)
        load_weights(state["model"], ck["model"], ckpt_path, what="model")
        state["opt"].load_state_dict(ck["optimizer"])
        start_epoch, start_step = int(ck["epoch"]), int(ck["step_in_epoch"])
    if env.is_main:
        from avssl.config import dump_config

        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    state["model"] = wrap_model(state["model"], cfg.run, env)
    steps = state["steps_per_epoch"]
    log = Logger(run_dir, cfg, env, start_epoch * steps + start_step)
    t0 = time.monotonic()
    stopping = {"signal": False}

    def stop(step: int, epoch: int) -> bool:
        """After every step: checkpoint when due and say whether to stop. A stop signal or the
        time limit on any rank stops every rank after the same step (an all-reduced decision:
        a rank that stopped alone would leave the others hanging in the next all-reduce)."""
        in_epoch = step - epoch * steps
        over = cfg.run.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.run.max_minutes
        flags = torch.tensor([caught["signal"] is not None, over], dtype=torch.int32)
        sig, over = (bool(v) for v in dist.all_reduce_max(flags.to(env.device)).tolist())
        stopping["signal"] = sig
        if (
            sig
            or over
            or (
                cfg.run.ckpt_every_steps
                and in_epoch % cfg.run.ckpt_every_steps == 0
                and in_epoch < steps
            )
        ):
            if env.is_main:
                save_checkpoint(ckpt_path, state, cfg, epoch, in_epoch)
        if cfg.run.crash_at_step is not None and step == cfg.run.crash_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return sig or over

    metrics: dict[str, Any] = {}
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            step = train_one_epoch(state, cfg, env, epoch, start_step, log, stop)
            start_step = 0
            if step < (epoch + 1) * steps:  # stopped early (a stop signal or the time limit)
                metrics = {"stopped_at_step": step}
                if stopping["signal"]:  # preempted: the checkpoint is written, resume later
                    metrics["preempted"] = caught["signal"] or "signal on another rank"
                    if env.is_main:
                        print(
                            f"\n{metrics['preempted']}: checkpoint of step {step} in "
                            f"{ckpt_path}; continue with --resume (exit status "
                            f"{EXIT_PREEMPTED})",
                            file=sys.stderr,
                        )
                    # no rank leaves before rank 0 has written the checkpoint (torchrun stops
                    # the other workers as soon as one exits with a failure status)
                    dist.barrier()
                else:  # the time limit: evaluate what there is
                    metrics = {"step": step - 1, "epoch": epoch, **evaluate(state, cfg, env)}
                    log.write(metrics)
                break
            metrics = {"step": step - 1, "epoch": epoch, **evaluate(state, cfg, env)}
            log.write(metrics)
            if env.is_main:
                save_checkpoint(ckpt_path, state, cfg, epoch + 1, 0)
                print(
                    f"\nepoch {epoch + 1}/{cfg.optim.epochs}: "
                    + ", ".join(
                        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in metrics.items()
                    ),
                    file=sys.stderr,
                )
        if state["task"].pair and env.is_main and "stopped_at_step" not in metrics:
            metrics.update(_localization(cfg, state, run_dir))
    finally:
        dist.cleanup()
    return metrics


def _localization(cfg: TrainConfig, state: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The pair tasks' closing check: localization on held-out trials with ground-truth boxes
    (avssl/eval/av.py), heatmap sheets in RUN/heatmaps, figures in RUN/localization.json."""
    from avssl.eval.av import LoadedAV, localization_report

    lm = cfg.data.localization_manifest if cfg.data.localization_trials > 0 else ""
    if lm is None:
        held = state["where"].get("val_manifest")
        cand = Path(held).parent / "localization_test.jsonl" if held else None
        lm = str(cand) if cand is not None and cand.is_file() else ""
    if not lm:
        return {}
    raw = unwrap_model(state["model"])
    was = raw.training
    raw.eval()
    rep = localization_report(
        LoadedAV(raw, cfg, str(run_dir / "checkpoint.pt")), Path(lm), run_dir / "heatmaps",
        frame_size=cfg.data.localization_frame_size or None,
        max_trials=cfg.data.localization_trials,
    )  # fmt: skip
    raw.train(was)
    from avssl.data.manifest import atomic_write_text

    atomic_write_text(run_dir / "localization.json", json.dumps(rep, indent=2) + "\n")
    m = rep["metrics"]
    print(
        f"localization on {int(m['trials'])} held-out trials: pointing game "
        f"{100 * m['pointing_matched']:.1f}% (chance {100 * m['chance_pointing']:.1f}%), "
        f"cIoU@0.5 {m['cIoU@0.5']:.3f}, AUC {m['AUC']:.3f}; said 'match' to "
        f"{100 * m['match_rate_matched']:.1f}% of true pairs, "
        f"{100 * m['match_rate_mismatched']:.1f}% with mismatched and "
        f"{100 * m['match_rate_silent']:.1f}% with silent sound; heatmaps in "
        f"{run_dir / 'heatmaps'}",
        file=sys.stderr,
    )
    return {f"loc_{k}": v for k, v in m.items()}


def main_train(
    task: str, config_path: str | None, overrides: list[str], out: str | None, resume: bool
) -> int:
    from avssl.config import load_config

    cfg = load_config(
        TrainConfig, config_path, [f"task={task}", *overrides], base=TASKS[task].defaults
    )
    if out is not None:
        cfg.run.out = out
    metrics = train(cfg, resume=resume)
    if dist.is_main():
        print(json.dumps(metrics))
    return EXIT_PREEMPTED if "preempted" in metrics else 0
