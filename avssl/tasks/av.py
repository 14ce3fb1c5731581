"""Audio-visual correspondence and synchronisation: ``ave_net``, ``l3_net``, ``avol_net``,
``av_sync`` (models in :mod:`avssl.models.av`); negatives are drawn afresh for every sample,
on the frame's grid so no shortcut is left.
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/av.py".
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
import torch

from avssl.data import av_pairs
from avssl.data.dataset import FrameReader
from avssl.models.av import AVNet
from avssl.tasks.common import Prepared, Task, balanced_weight


def positives(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a pair task trains on: those with ``target`` 1 (or none), checked for the
    fields the negatives need."""
    out = [r for r in rows if int(r.get("target", 1)) == 1]
    for r in out[:1]:
        missing = [k for k in ("video", "frame", "audio_start_s", "fps", "span") if k not in r]
        if missing:
            raise ValueError(
                f"pair rows need {missing}: this manifest predates them; re-run the prep "
                "(avssl-prep audioset | synth | av-digits)"
            )
    return out


def read_frames(
    row: dict[str, Any], reader: FrameReader, frames: int = 1, step: int = 1,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:  # fmt: skip
    """The row's frame(s) as uint8 ``(T, 3, H, W)``: from the pair cache when the row has one
    (single frames only), else decoded, T frames centred on ``row["frame"]``, ``step`` apart
    (indices clipped to the video)."""
    if "cache_frames" in row:
        if frames != 1:
            raise ValueError("a pair cache holds single frames: use frames=1 (or the videos)")
        return reader.cached_frame(row, size)[None]
    centre = int(row["frame"])
    offsets = [(j - (frames - 1) // 2) * step for j in range(frames)]
    info = reader.infos.get(row["video"])
    last = info.num_frames - 1 if info is not None else None
    idx = [max(0, centre + o) if last is None else min(max(0, centre + o), last) for o in offsets]
    return reader(row["video"], idx)


def read_sound(
    src: dict[str, Any], start_s: float, seconds: float, reader: FrameReader, tick: float = 0.0
) -> np.ndarray:
    """``seconds`` of the sound of ``src``'s video from ``start_s`` (that video's time axis), at
    the reader's rate: from the row's cache (``cache_audio``, sample 0 at
    ``cache_audio_start_s``) or decoded. ``tick``: add clicks of that amplitude on the frame
    grid."""
    sr = reader.sample_rate
    if "cache_audio" in src:
        first = round((start_s - float(src["cache_audio_start_s"])) * sr)
        x = reader.cached_audio(src["cache_audio"], first, seconds)
    else:
        x = reader.audio(src.get("audio_video", src["video"]), start_s, seconds)
    if tick:
        x = x.copy()
        fps, origin = float(src["fps"]), float(src["span"][0])
        m0 = math.ceil((start_s - origin) * fps - 1e-9)
        t = origin + np.arange(m0, m0 + int(seconds * fps) + 2) / fps
        k = np.round((t - start_s) * sr).astype(np.int64)
        k = k[(k >= 0) & (k < len(x))]
        x[k] += tick
    return x


#: the level range of :func:`near_silence`, dBFS (RMS of the white noise)
SILENCE_DBFS = (-90.0, -50.0)


def near_silence(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white noise at a level uniform in :data:`SILENCE_DBFS`: the sound of a
    negative that is (nearly) silent (``data.silent_negatives``). A model that only ever hears
    sounding pairs in training has no reason to say 'no match' to silence; the localization
    check's silent trials (exact zeros, below every level drawn here) ask it to."""
    level = 10.0 ** (rng.uniform(*SILENCE_DBFS) / 20.0)
    return (rng.standard_normal(n) * level).astype(np.float32)


@dataclass(frozen=True)
class AudioAug:
    """Training-time augmentation of a pair's sound (positives and negatives alike), from the
    sample's seeded stream: a gain uniform in +-``gain_db`` dB, a playback rate uniform in
    ``1 +- speed`` about the window's centre (linear interpolation, zeros past the ends), one
    stretch of up to ``time_mask`` of the window zeroed. None of it moves the sound in time
    against the frame grid (what the grid rule forbids), so no shortcut is opened."""

    gain_db: float = 0.0
    speed: float = 0.0
    time_mask: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.gain_db or self.speed or self.time_mask)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(x)
        out = np.array(x, dtype=np.float32)  # a copy: x may be a view of a cached track
        if self.speed:
            rate = float(rng.uniform(1 - self.speed, 1 + self.speed))
            c = (n - 1) / 2
            t = c + (np.arange(n) - c) * rate
            out = np.interp(t, np.arange(n), out, left=0.0, right=0.0).astype(np.float32)
        if self.gain_db:
            out = out * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if self.time_mask:
            w = int(rng.uniform(0, self.time_mask) * n)
            if w:
                a = int(rng.integers(0, n - w + 1))
                out[a : a + w] = 0.0
        return out


@dataclass(eq=False)
class PairMaker:
    """``make_example`` of the pair tasks, bound to the positives (``rows``) it draws negatives
    from. ``epoch`` (the curriculum's clock) comes with every example from
    :class:`~avssl.data.dataset.ManifestDataset`."""

    rows: Sequence[dict[str, Any]]
    _: KW_ONLY
    negatives: str = "other"
    frames: int = 1
    frame_step: int = 1
    grid: bool = True
    tick: float = 0.0
    curriculum_epochs: int = 0
    sync_offset_s: tuple[float, float] = (0.5, 2.0)
    neg_fraction: float = 0.5
    audio_aug: AudioAug | None = None
    jitter: int = 0
    where_frame: bool = False
    silent_negatives: float = 0.0

    def __post_init__(self) -> None:
        if self.negatives not in ("other", "sync"):
            raise ValueError(f"negatives must be 'other' or 'sync', got {self.negatives!r}")
        if not 0.0 <= self.silent_negatives <= 1.0:
            raise ValueError(f"silent_negatives must be in [0, 1], got {self.silent_negatives}")
        self.rows = list(self.rows)
        self.source: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            self.source.setdefault(r["video"], r)
        self.videos = sorted(self.source)
        self._index = {v: i for i, v in enumerate(self.videos)}

    def hard_share(self, epoch: int) -> float:
        """The share of synchronisation negatives at ``epoch``."""
        if self.negatives != "sync":
            return 0.0
        if self.curriculum_epochs <= 0:
            return 1.0
        return min(1.0, epoch / self.curriculum_epochs)

    def negative(
        self, row: dict[str, Any], rng: np.random.Generator, epoch: int = 0
    ) -> tuple[dict[str, Any], float, str]:
        """(source row, start time on its axis, kind) of a negative for ``row``."""
        window = float(row["audio_s"])
        fps = float(row["fps"])
        if rng.random() < self.hard_share(epoch):
            o, lo, hi = row["span"]
            k = av_pairs.sync_shift(float(row["audio_start_s"]), av_pairs.AudioSpan(o, lo, hi),
                                    fps, window, *self.sync_offset_s, rng)  # fmt: skip
            if k is not None:
                return row, float(row["audio_start_s"]) + k / fps, "sync"
        own = self._index.get(row["video"], -1)
        others = len(self.videos) - (own >= 0)
        for _ in range(16 if others else 0):
            j = int(rng.integers(others))
            j += int(0 <= own <= j)
            src = self.source[self.videos[j]]
            o, lo, hi = (float(x) for x in src["span"])
            if self.grid:
                ms = av_pairs.grid_starts(av_pairs.AudioSpan(o, lo, hi), fps, window)
                if ms is None:
                    continue
                return src, o + int(rng.integers(ms[0], ms[1] + 1)) / fps, "other"
            if hi - lo >= window:
                return src, float(rng.uniform(lo, hi - window)), "other"
        raise ValueError(f"{row['video']}: no other video has {window:g} s of sound to cut")

    def __call__(
        self, row: dict[str, Any], reader: FrameReader, rng: np.random.Generator, epoch: int = 0
    ) -> dict[str, Any]:
        if self.jitter and "cache_frames" not in row:
            off = int(rng.integers(-self.jitter, self.jitter + 1))
            shown = {**row, "frame": int(row["frame"]) + off}
            if self.where_frame:  # the stack where it is, plus one frame off the centre
                frames = read_frames(row, reader, self.frames, self.frame_step)
                frames = torch.cat([frames, read_frames(shown, reader, 1)], 0)
            else:
                frames = read_frames(shown, reader, self.frames, self.frame_step)
        else:
            frames = read_frames(row, reader, self.frames, self.frame_step)
        window = float(row["audio_s"])
        if rng.random() < self.neg_fraction:
            target = 0
            if self.silent_negatives and rng.random() < self.silent_negatives:
                sound = near_silence(round(window * reader.sample_rate), rng)
            else:
                src, start, _ = self.negative(row, rng, epoch)
                sound = read_sound(src, start, window, reader, self.tick)
        else:
            target = 1
            sound = read_sound(row, float(row["audio_start_s"]), window, reader, self.tick)
        if self.audio_aug is not None:
            sound = self.audio_aug(sound, rng)
        return {
            "frames": frames,
            "audio": torch.from_numpy(sound),
            "target": torch.tensor(target),
            "video_id": torch.tensor(self._index.get(row["video"], -1)),
        }


#: The pair tasks' defaults: the CPU-scale run on the built-in set (``avssl-train ave-net`` with
#: no other argument: 2 cores, under 5 minutes). The papers' settings (VGG towers on 224 frames
#: and the 48 kHz log-spectrogram, Adam, batch 2048) are in configs/*_audioset.yaml.
BUILTIN_DEFAULTS: dict[str, Any] = {
    "backbone": "vgg_av",
    # 16-32-64 channels, one conv per block (the papers: two); a 64 frame -> an 8x8 grid
    "model": {"width": 0.25, "blocks": 3, "convs": 1},
    "audio": {
        "backbone": "audio_tiny",
        "blocks": 3,
        "convs": 1,
        # the built-in set's sound is 16 kHz; 40 log-mel bands, 25 ms windows, 20 ms hop
        "frontend": {"kind": "logmel", "sample_rate": 16000, "win_s": 0.025, "hop": 320,
                     "n_fft": 512, "n_mels": 40},
    },  # fmt: skip
    # negatives: sampled, half the pairs, as the papers. (options.batch_negatives -- every other
    # video's sound in the batch -- learns faster on the digits but hurts here: 12% of the other
    # clips sound like this one and 19% more show a silent object of its class: 70% vs 82%)
    "data": {"frame_size": 64, "max_val_rows": 1000, "neg_fraction": 0.5},
    # no crop: the boxes of the localization check stay where they are; flips and colour jitter
    "aug": {"size": 64, "scale": [1.0, 1.0], "ratio": [1.0, 1.0]},
    "optim": {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.00001, "batch_size": 64,
              "epochs": 12, "steps_per_epoch": 40, "schedule": "cosine", "warmup_steps": 20},
    "run": {"log_every": 10},
}  # fmt: skip


#: The main job, ``avssl-train ave-net``: AVE-Net (Euclidean distance -> fc) with what the
#: built-in set showed it lacks (docs/audio_visual.md, "The main job"): a *when* stream (a
#: second tower reads 9 frames 3 apart -- the 1 s the sound covers -- at 32 px against the
#: sound's time course; the map's frame is up to 1 s off in training so the map learns *what*),
#: the distance scored per place of a 16x16 grid (3x3-smoothed, cells pooled by log-mean-exp)
#: rather than on one max-pooled embedding, every other clip of the batch a negative too with
#: the ranking term, frames turned up to 180 degrees. 560 steps as 7 epochs of 80 (7 held-out
#: evaluations).
AVE_DEFAULTS: dict[str, Any] = {
    **BUILTIN_DEFAULTS,
    "model": {**BUILTIN_DEFAULTS["model"], "pools": 2},
    "data": {**BUILTIN_DEFAULTS["data"], "av_frames": 9, "av_frame_step": 3,
             "av_frame_jitter": 25},
    "options": {"when_stream": True, "when_size": 32, "batch_negatives": True,
                "contrastive": 1.0, "map_smooth": 3, "map_pool": 3.0},
    "aug": {**BUILTIN_DEFAULTS["aug"], "rotate": 180},
    "optim": {**BUILTIN_DEFAULTS["optim"], "epochs": 7, "steps_per_epoch": 80},
}  # fmt: skip


#: av_sync samples its hard negatives (the same video shifted): half the pairs, ramped in over
#: the first 2 epochs from other-video ones; the batch's other videos add easy ones.
SYNC_DEFAULTS: dict[str, Any] = {
    **BUILTIN_DEFAULTS,
    "data": {**BUILTIN_DEFAULTS["data"], "neg_fraction": 0.5, "sync_curriculum_epochs": 2},
}


def pair_model_kwargs(cfg: Any) -> dict[str, Any]:
    """``build_model``'s keyword arguments of a pair task's run (``cfg`` a TrainConfig), apart
    from the vision backbone's own (``cfg.model``)."""
    return {
        "audio_backbone": cfg.audio.backbone,
        "audio_kwargs": cfg.audio.kwargs(),
        "frontend": cfg.audio.frontend,
        "frames": cfg.data.av_frames,
        "embed_dim": cfg.audio.embed_dim,
        "batch_negatives": cfg.options.batch_negatives,
        "when_stream": cfg.options.when_stream,
        "when_size": cfg.options.when_size,
        "map_smooth": cfg.options.map_smooth,
        "map_pool": cfg.options.map_pool,
        "contrastive": cfg.options.contrastive,
    }


def build_pair_model(cfg: Any) -> AVNet:
    """The two-tower model of a pair task (ave_net, l3_net, avol_net, av_sync) from its config
    (random init: seed torch first); what avssl-train trains and the evaluations rebuild."""
    model = PAIR_TASKS[cfg.task].build_model(
        cfg.backbone, **pair_model_kwargs(cfg), **cfg.model.kwargs(cfg.backbone)
    )
    assert isinstance(model, AVNet)
    return model


def pair_maker(cfg: Any, rows: Sequence[dict[str, Any]], *, train: bool) -> PairMaker:
    """The examples of a pair task's run over ``rows``: in training as ``cfg.data`` says; held
    out, the final negatives (all hard for av_sync), half the pairs, fixed."""
    d = cfg.data
    opts: dict[str, Any] = {"negatives": PAIR_NEGATIVES[cfg.task], "frames": d.av_frames,
        "frame_step": d.av_frame_step, "grid": d.av_grid, "tick": d.av_grid_tick,
        "sync_offset_s": tuple(d.sync_offset_s), "neg_fraction": d.neg_fraction}  # fmt: skip
    if not train:
        return PairMaker(rows, **{**opts, "neg_fraction": 0.5})
    aug = AudioAug(d.audio_gain_db, d.audio_speed, d.audio_time_mask)
    return PairMaker(
        rows, curriculum_epochs=d.sync_curriculum_epochs, audio_aug=aug if aug else None,
        jitter=d.av_frame_jitter, where_frame=cfg.options.when_stream,
        silent_negatives=d.silent_negatives, **opts,
    )  # fmt: skip


def prepare(cfg: Any, train_rows: list, val_rows: list, reader: FrameReader) -> Prepared:
    """A pair task fitted to the run: its makers draw negatives from the rows they are given."""
    kw: dict[str, Any] = pair_model_kwargs(cfg)
    if cfg.options.balanced_loss:
        kw["class_weight"] = balanced_weight(train_rows, 2)
    make_train = pair_maker(cfg, train_rows, train=True)
    return Prepared(train_rows, val_rows, kw, make_train, pair_maker(cfg, val_rows, train=False), 2)


def _task(name: str, head: str, negatives: str, description: str) -> Task:
    def build(
        backbone: str, *, backbone_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> AVNet:
        """``AVNet``; the backbone's keyword arguments given flat or as ``backbone_kwargs``."""
        opts = {k: kwargs.pop(k) for k in list(kwargs) if k in AVNET_OPTIONS}
        bkw = {**(backbone_kwargs or {}), **kwargs}
        return AVNet(head, backbone=backbone, backbone_kwargs=bkw, **opts)  # type: ignore[arg-type]

    PAIR_NEGATIVES[name] = negatives
    return Task(
        name=name,
        manifest="avc_train.jsonl",
        description=description,
        prepare=prepare,
        build_model=build,
        pair=True,
        defaults=DEFAULTS.get(name, BUILTIN_DEFAULTS),
    )


PAIR_NEGATIVES: dict[str, str] = {}  # task -> the negatives its PairMaker draws
DEFAULTS = {"ave_net": AVE_DEFAULTS, "av_sync": SYNC_DEFAULTS}  # the others: BUILTIN_DEFAULTS
AVNET_OPTIONS = set(inspect.signature(AVNet).parameters)  # the rest: the backbone's own
AVE_NET = _task(
    "ave_net",
    "ave",
    "other",
    "AVE-Net: audio-visual correspondence, Euclidean distance of 128-D embeddings",
)
L3_NET = _task("l3_net", "l3", "other", "L3-Net: audio-visual correspondence, concatenation fusion")
AVOL_NET = _task(
    "avol_net",
    "avol",
    "other",
    "AVOL-Net: correspondence by max over a grid of localised scores (MIL)",
)
AV_SYNC = _task(
    "av_sync", "ave", "sync", "AV synchronisation: negatives are the same video's sound, shifted"
)
PAIR_TASKS = {t.name: t for t in (AVE_NET, L3_NET, AVOL_NET, AV_SYNC)}
