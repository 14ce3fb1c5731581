"""Audio-visual correspondence and synchronisation: ``ave_net``, ``l3_net``, ``avol_net``,
``av_sync`` (models in :mod:`avssl.models.av`; settings in ../shared/METHODS.md).

The dataset rows are the **positives** of a pair manifest (``avc_*.jsonl`` from ``avssl-prep
audioset | synth | av-digits``; rows with ``target`` 0 are left out): a frame of a video, the
window of sound centred on it, the video's frame rate ``fps`` and the stretch ``span =
[origin, lo, hi]`` where its sound may be cut. Every example is a positive or a negative with
probability 1/2, and **negatives are drawn afresh for every sample** (seeded by (seed, epoch,
index) like everything else), as the method draws them:

* correspondence (``negatives="other"``): the sound of another video, chosen uniformly, cut on
  the *frame's* grid -- its start is ``origin_B + m / fps_A`` -- so positive and negative windows
  start on the same grid (the shortcut rule of "Objects that Sound"; :mod:`avssl.data.av_pairs`).
  ``grid=False`` cuts negatives anywhere instead (the shortcut experiment);
* synchronisation (``negatives="sync"``): the same video's sound shifted by a whole number of
  frames, ``|shift|`` in ``[min_offset_s, max_offset_s]``; with ``curriculum_epochs = C > 0``
  the share of such hard negatives grows linearly from 0 at epoch 0 to 1 at epoch C, the rest
  being other-video negatives (the curriculum of Korbar et al. 2018).

``frames = T > 1`` gives the vision tower T frames centred on the row's frame, ``frame_step``
apart, stacked as channels (early fusion; 1 = the papers' single frame). ``jitter = J > 0``
(training only, decoded videos): the frame shown is up to J frames off the row's, drawn per
sample -- with ``where_frame`` (the AVOL when stream) the stack stays where it is and that one
frame is appended as a (T + 1)-th, for the map's tower. A frame whose timing no longer matches
the sound leaves the map only *what* to learn, not *when*. ``tick > 0`` adds a
click of that amplitude at every frame boundary of the source video to its sound -- a recording
artefact locked to the frame grid, the kind of cue the shortcut rule is about.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avssl.data import av_pairs
from avssl.data.dataset import FrameReader
from avssl.models.av import AVNet
from avssl.tasks.common import Task

__all__ = ["AudioAug", "PairMaker", "positives", "read_frames", "read_sound"]


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
    ``cache_audio_start_s``) or decoded. ``tick``: add frame-grid clicks (see the module)."""
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
    """Training-time augmentation of a pair's sound (positives and negatives alike), drawn from
    the sample's seeded stream. None of it moves the sound in time against the frame grid
    (a shifted window is exactly what the grid rule forbids), so no shortcut is opened:

    * ``gain_db``: a gain uniform in ``[-gain_db, +gain_db]`` dB;
    * ``speed``: played at a rate uniform in ``[1 - speed, 1 + speed]`` about the window's
      centre (pitch and tempo together, as a faster or slower speaker; linear interpolation,
      zeros past the ends);
    * ``time_mask``: one stretch of up to this fraction of the window zeroed (SpecAugment's
      time mask, on the waveform)."""

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


class PairMaker:
    """``make_example`` of the pair tasks, bound to the positives it draws negatives from.

    ``epoch`` is set by :class:`~avssl.data.dataset.ManifestDataset` before each example (the
    curriculum's clock)."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        negatives: str = "other",
        frames: int = 1,
        frame_step: int = 1,
        grid: bool = True,
        tick: float = 0.0,
        curriculum_epochs: int = 0,
        sync_offset_s: tuple[float, float] = (0.5, 2.0),
        neg_fraction: float = 0.5,
        audio_aug: AudioAug | None = None,
        jitter: int = 0,
        where_frame: bool = False,
        silent_negatives: float = 0.0,
    ) -> None:
        if negatives not in ("other", "sync"):
            raise ValueError(f"negatives must be 'other' or 'sync', got {negatives!r}")
        self.rows = list(rows)
        self.source: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            self.source.setdefault(r["video"], r)
        self.videos = sorted(self.source)
        self._index = {v: i for i, v in enumerate(self.videos)}
        self.negatives, self.frames, self.frame_step = negatives, frames, frame_step
        self.grid, self.tick, self.curriculum_epochs = grid, tick, curriculum_epochs
        self.sync_offset_s = sync_offset_s
        self.neg_fraction = neg_fraction
        self.audio_aug = audio_aug
        self.jitter, self.where_frame = int(jitter), bool(where_frame)
        if not 0.0 <= silent_negatives <= 1.0:
            raise ValueError(f"silent_negatives must be in [0, 1], got {silent_negatives}")
        self.silent_negatives = float(silent_negatives)
        self.epoch = 0

    def hard_share(self) -> float:
        """The share of synchronisation negatives at the current epoch."""
        if self.negatives != "sync":
            return 0.0
        if self.curriculum_epochs <= 0:
            return 1.0
        return min(1.0, self.epoch / self.curriculum_epochs)

    def negative(
        self, row: dict[str, Any], rng: np.random.Generator
    ) -> tuple[dict[str, Any], float, str]:
        """(source row, start time on its axis, kind) of a negative for ``row``."""
        window = float(row["audio_s"])
        fps = float(row["fps"])
        if rng.random() < self.hard_share():
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
        self, row: dict[str, Any], reader: FrameReader, rng: np.random.Generator
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
                src, start, _ = self.negative(row, rng)
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


def _unbound(row: dict[str, Any], reader: FrameReader, rng: np.random.Generator) -> dict:
    raise RuntimeError("pair tasks draw negatives from their rows: use Task.bind(rows, ...)")


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


#: av_sync samples its hard negatives (the same video shifted): half the pairs, ramped in over
#: the first 2 epochs from other-video ones; the batch's other videos add easy ones.
SYNC_DEFAULTS: dict[str, Any] = {
    **BUILTIN_DEFAULTS,
    "data": {**BUILTIN_DEFAULTS["data"], "neg_fraction": 0.5, "sync_curriculum_epochs": 2},
}


def _task(name: str, head: str, negatives: str, description: str) -> Task:
    def build(backbone: str, **kwargs: Any) -> AVNet:
        return AVNet(head, backbone=backbone, **kwargs)  # type: ignore[arg-type]

    def bind(rows: Sequence[dict[str, Any]], **options: Any) -> PairMaker:
        return PairMaker(rows, negatives=negatives, **options)

    return Task(
        name=name,
        manifest="avc_train.jsonl",
        description=description,
        make_example=_unbound,
        build_model=build,
        num_classes=lambda row: 2,
        bind=bind,
        pair=True,
        defaults=SYNC_DEFAULTS if negatives == "sync" else BUILTIN_DEFAULTS,
    )


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
