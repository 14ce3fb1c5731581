"""The settings of an ``avssl-train`` run: :class:`TrainConfig` and its sections, every default
in one place (a YAML file via ``--config`` holds what differs; ``--set`` overrides single fields;
a task's own defaults sit in between: :attr:`avssl.tasks.Task.defaults`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from avssl.data.transforms import AugmentConfig
from avssl.models.tracking import TrackingOptions


def _given(section: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields ``names`` of a config section that are set (non-zero, non-empty)."""
    return {name: getattr(section, name) for name in names if getattr(section, name)}


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
    # ave_net / avol_net with data.av_frames = T > 1: the map's tower sees the centre frame only
    # and a second tower reads the T-frame stack against the sound's time course (*when*); their
    # logits add
    when_stream: bool = False
    # the when tower reads the stack resized to this many pixels (0: the frames' own size);
    # timing needs little detail and the tower costs a quarter at half the side
    when_size: int = 0
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
        out = _given(self, ("width", "blocks", "convs"))
        if self.pools >= 0:
            out["pools"] = self.pools
        if self.channels:
            out["channels"] = tuple(self.channels)
        return {**out, **_given(self, ("spatial", "patch_size", "dim", "depth", "heads"))}


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
        return {"input_norm": self.input_norm, **_given(self, ("width", "blocks", "convs"))}


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
