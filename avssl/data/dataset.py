"""Map-style datasets over manifest rows, and the per-process frame reader they use.

Worker randomness comes only from ``np.random.default_rng((seed, epoch, index))``; decoders are
opened lazily inside each worker. Design notes: docs/design/data.md, "avssl.data.dataset".
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data import decode
from avssl.data.image import read_image
from avssl.data.manifest import resolve_under
from avssl.types import VideoInfo

#: Prefix of the paths of held-out rows that belong to another prep (``data.val_manifest`` from
#: a second ``avssl-prep`` output): :meth:`FrameReader.path` reads them under ``heldout_root``.
HELDOUT_PREFIX = "@heldout/"


def load_probe_infos(
    probe_jsonl: str | os.PathLike[str] | None, prefix: str = ""
) -> dict[str, VideoInfo]:
    """``{prefix + relpath: VideoInfo}`` from a prep's ``probe.jsonl`` (no re-probing in
    workers)."""
    from avssl.data.manifest import read_manifest

    if probe_jsonl is None or not Path(probe_jsonl).is_file():
        return {}
    out = {}
    for r in read_manifest(probe_jsonl):
        rel = r.pop("video")
        out[prefix + rel] = VideoInfo.from_dict(r)
    return out


def heldout_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a held-out manifest from another prep, marked to resolve under its own root:
    ``video``/``path`` get :data:`HELDOUT_PREFIX`; that prep's cache entries are dropped (the
    reader's cache folder is the training prep's), so frames come from the source videos."""
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if not k.startswith("cache_")}
        for key in ("video", "path"):
            if isinstance(r.get(key), str):
                r[key] = HELDOUT_PREFIX + r[key]
        out.append(r)
    return out


class FrameReader:
    """Frames of the dataset's videos as uint8 ``(T, 3, H, W)`` at ``size = (H, W)``; the images
    of an image manifest as ``(1, 3, H, W)`` (:meth:`image`)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: tuple[int, int],
        *,
        infos: dict[str, VideoInfo] | None = None,
        cache_mb: int = 0,
        sample_rate: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        heldout_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        # Rows of a held-out set prepared elsewhere carry HELDOUT_PREFIX and resolve here.
        self.heldout_root = Path(heldout_root) if heldout_root is not None else None
        self.size = size
        self.infos = infos or {}
        self.cache_bytes = cache_mb * 2**20
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._used = 0
        self.sample_rate = sample_rate  # audio windows come at this rate (0: no audio wanted)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.root
        self._mmaps: dict[str, np.ndarray] = {}

    def path(self, rel: str) -> Path:
        """The file of manifest path ``rel``: under :attr:`root` (or, for a row of a held-out set
        from another prep, ``HELDOUT_PREFIX + path`` under :attr:`heldout_root`), else a
        :class:`ValueError` (absolute paths and ``..`` out of the root are refused)."""
        if rel.startswith(HELDOUT_PREFIX) and self.heldout_root is not None:
            return resolve_under(self.heldout_root, rel[len(HELDOUT_PREFIX) :])
        return resolve_under(self.root, rel)

    def _info(self, rel: str) -> VideoInfo | None:
        """The prep's probe, unless the file changed since (iter_frames does not check; read_frames
        does, so the per-sample path passes ``infos`` straight through)."""
        info = self.infos.get(rel)
        if info is not None:
            if decode.media_identity(self.path(rel)) != (info.size_bytes, info.mtime_ns):
                return None  # the file changed since the prep: probe again
        return info

    def _whole(self, rel: str) -> np.ndarray:
        if rel in self._cache:
            self._cache.move_to_end(rel)
            return self._cache[rel]
        # (N, 3, H, W) contiguous, so that a batch is a plain copy (a channels-last view made
        # the collate 10x slower)
        frames = np.ascontiguousarray(
            np.stack(  # (N, 3, H, W)
                [
                    f
                    for _, f in decode.iter_frames(
                        self.path(rel), size=self.size, info=self._info(rel)
                    )
                ]
            ).transpose(0, 3, 1, 2)
        )
        self._keep(rel, frames)
        return frames

    def _keep(self, key: str, array: np.ndarray) -> None:
        self._cache[key] = array
        self._used += array.nbytes
        while self._used > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._used -= old.nbytes

    def image(self, rel: str) -> torch.Tensor:
        """Image ``rel`` (under :attr:`root`) as uint8 ``(1, 3, H, W)`` at :attr:`size`: read with
        :func:`read_image` and resized as video frames are (square, aspect not kept; area when
        shrinking); kept in the same LRU cache."""
        key = f"image:{rel}"
        arr = self._cache.get(key)
        if arr is None:
            rgb = decode.resize(read_image(self.path(rel)), self.size)
            arr = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
            if self.cache_bytes > 0:
                self._keep(key, arr)
        else:
            self._cache.move_to_end(key)
        return torch.from_numpy(arr)

    def audio(self, rel: str, start_s: float, seconds: float) -> np.ndarray:
        """``seconds`` of ``rel``'s sound from ``start_s`` (its time axis), mono float32 at
        :attr:`sample_rate`; zeros where the window runs past the track. Sample ``k`` is the
        track at ``(round(start_s * sr) + k) / sr``, as :func:`avssl.data.decode.read_audio`
        gives it (the track is read once from 0 s and sliced: the same samples)."""
        sr = self.sample_rate
        if sr <= 0:
            raise ValueError("this reader was made without a sample_rate: no audio")
        key = f"audio:{sr}:{rel}"
        track = self._cache.get(key)
        if track is None:
            info = self._info(rel)
            dur = max((a.duration_s for a in info.audio), default=0.0) if info else 0.0
            if dur <= 0:
                dur = max((a.duration_s for a in decode.probe(self.path(rel)).audio), default=0)
            track = decode.read_audio(self.path(rel), 0.0, dur, sample_rate=sr).data.numpy()[0]
            self._keep(key, track)
        else:
            self._cache.move_to_end(key)
        return _window(track, round(start_s * sr), round(seconds * sr))

    def _mmap(self, rel: str) -> np.ndarray:
        if rel not in self._mmaps:
            self._mmaps[rel] = np.load(resolve_under(self.cache_dir, rel), mmap_mode="r")
        return self._mmaps[rel]

    def cached_frame(
        self, row: dict[str, Any], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """A pair-cache row's frame as uint8 ``(3, H, W)`` at ``size`` (default :attr:`size`;
        ``cache_frames`` + ``cache_row`` for raw arrays, + ``cache_bytes`` for JPEG caches)."""
        rgb = cached_frame(self._mmap(row["cache_frames"]), row, self.cache_dir)
        return torch.from_numpy(decode.resize(rgb, size or self.size)).permute(2, 0, 1)

    def cached_audio(self, rel: str, sample: int, seconds: float) -> np.ndarray:
        """``seconds`` of a cache's int16 mono track from sample ``sample``, float32 in
        [-1, 1] (the cache must be at :attr:`sample_rate`; zeros past its ends)."""
        return _window(self._mmap(rel), sample, round(seconds * self.sample_rate), 1 / 32767.0)

    def __call__(self, rel: str, indices: Sequence[int]) -> torch.Tensor:
        if self.cache_bytes > 0:
            return torch.from_numpy(self._whole(rel)[list(indices)])
        clip = decode.read_frames(
            self.path(rel), list(indices), size=self.size, info=self.infos.get(rel)
        )
        return clip.data.contiguous()


def cached_frame(frames: np.ndarray, row: dict[str, Any], cache_dir: Path) -> np.ndarray:
    """A pair-cache row's frame, ``(H, W, 3)`` uint8 RGB, from its (memory-mapped) frames file:
    the JPEG at bytes ``cache_bytes`` of a JPEG cache, or row ``cache_row`` of a raw one."""
    if "cache_bytes" not in row:
        return np.array(frames[row["cache_row"]])
    import cv2

    a, b = row["cache_bytes"]
    bgr = cv2.imdecode(np.asarray(frames[a:b]), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{cache_dir / row['cache_frames']}: bytes {a}:{b} are not a JPEG")
    return np.ascontiguousarray(bgr[..., ::-1])


def _window(track: np.ndarray, start: int, n: int, scale: float = 1.0) -> np.ndarray:
    """``track[start : start + n]`` as float32 times ``scale``, zero-padded outside the track."""
    out = np.zeros(n, np.float32)
    lo, hi = max(start, 0), min(start + n, len(track))
    if hi > lo:
        out[lo - start : hi - start] = np.asarray(track[lo:hi], dtype=np.float32) * scale
    return out


class ManifestDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """``rows`` through ``make_example(row, reader, rng, epoch) -> dict of tensors``.

    ``dataset[(epoch, index)]``: the random stream ``rng`` is seeded by (seed, epoch, index),
    and ``epoch`` goes to the maker too (a schedule: av_sync's curriculum); ``shuffle_labels``
    (a leak check) replaces each row's target by the target of another row, fixed for the run;
    with ``reverse_row`` and ``time_reverse = p > 0``, a row is shown as ``reverse_row(row)``
    with probability p (label-preserving time reversal).
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        make_example: Callable[..., dict[str, Any]],
        reader: FrameReader,
        *,
        seed: int = 0,
        shuffle_labels: bool = False,
        reverse_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        time_reverse: float = 0.0,
    ) -> None:
        if time_reverse and reverse_row is None:
            raise ValueError("time_reverse > 0 needs a task whose label survives time reversal")
        if not 0.0 <= time_reverse <= 1.0:
            raise ValueError(f"time_reverse must be a probability, not {time_reverse}")
        self.reverse_row, self.time_reverse = reverse_row, time_reverse
        self.rows = rows
        self.make_example = make_example
        self.reader = reader
        self.seed = seed
        self.label_perm: np.ndarray | None = None
        if shuffle_labels:
            self.label_perm = np.random.default_rng([seed, 7919]).permutation(len(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``dataset[(epoch, index)]``, or ``dataset[index]`` of epoch 0."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        row = self.rows[index]
        if self.time_reverse and rng.random() < self.time_reverse:
            assert self.reverse_row is not None
            row = self.reverse_row(row)
        ex = self.make_example(row, self.reader, rng, epoch)
        if self.label_perm is not None:
            other_row = self.rows[int(self.label_perm[index])]
            other = self.make_example(other_row, _NoFrames(), rng, epoch)
            ex["target"] = other["target"]
        return ex


class _NoFrames(FrameReader):
    """A reader for computing a row's target only (label shuffling): returns empty frames."""

    def __init__(self) -> None:
        super().__init__(".", (1, 1))

    def __call__(self, rel: str, indices: Sequence[int]) -> torch.Tensor:
        return torch.zeros((len(indices), 3, 1, 1), dtype=torch.uint8)


def split_by_video(
    rows: list[dict[str, Any]],
    val_fraction: float,
    seed: int = 0,
    *,
    folds: int = 0,
    fold: int = 0,
    key: str = "video",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out whole videos: a video goes to validation when a hash of (seed, path) falls below
    ``val_fraction``; at least one video on each side when there are two or more.

    ``folds = k > 1``: k-fold cross-validation by video instead -- the videos, ranked by the same
    hash, are dealt round-robin into k folds (sizes differ by at most one) and fold ``fold`` is
    held out, so k runs hold out every video exactly once (for small sets, where one held-out
    handful of videos says little). ``key``: the row field naming the video (``path`` for an
    image manifest without splits: images are held out one by one)."""
    import hashlib

    videos = sorted({r[key] for r in rows})

    def u(v: str) -> float:
        h = hashlib.blake2b(f"{seed}:{v}".encode(), digest_size=8).hexdigest()
        return int(h, 16) / 2**64

    if folds:
        if folds < 2 or not 0 <= fold < folds:
            raise ValueError(f"val_folds={folds}, val_fold={fold}: need k >= 2 and 0 <= fold < k")
        if len(videos) < folds:
            raise ValueError(f"{folds} folds need at least {folds} videos, not {len(videos)}")
        held = {v for i, v in enumerate(sorted(videos, key=u)) if i % folds == fold}
        return [r for r in rows if r[key] not in held], [r for r in rows if r[key] in held]
    held = {v for v in videos if u(v) < val_fraction}
    if len(videos) >= 2 and val_fraction > 0:
        ranked = sorted(videos, key=u)
        if not held:
            held = {ranked[0]}
        if held == set(videos):
            held.discard(ranked[-1])
    return [r for r in rows if r[key] not in held], [r for r in rows if r[key] in held]
