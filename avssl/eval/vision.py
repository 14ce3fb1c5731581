"""Frozen-feature evaluation of vision backbones: ``avssl-eval linear`` and ``avssl-eval knn``.

The shared machinery of every frozen-feature command (``retrieval`` too) lives here: reading an
image or video manifest, extracting features from a chosen layer of a backbone, caching them, and
writing the result JSON.

**MODEL** is anything :func:`avssl.eval.encoders.load_encoder` takes (a run directory, a
checkpoint, ``random:BACKBONE`` with ``--model-kwargs`` / ``--like RUN``) or ``pixels``, the
hand-crafted baseline: the preprocessed input (below) area-averaged to ``--pixels-size`` squared
(default 16x16) and flattened, ``3 * p * p`` values. Backbones whose first layer does not take 3
channels (e.g. the stack-of-differences towers of arrow of time / Odd-One-Out) are refused: these
commands feed single RGB frames.

**Manifests** (``--manifest``, a file or a folder holding one):

* image manifests (``avssl-prep digits``: ``images.jsonl`` rows ``path``, ``class_id``, ``label``,
  ``split``, ``fold``; paths relative to the manifest's folder). Images are read with OpenCV; grey
  images are replicated to 3 channels.
* the built-in set's ``manifest.jsonl`` (``file``, ``class_id``, ``class_name``, ``split``
  train/val/test; paths relative to the manifest's folder);
* ``avssl-prep ucf101 | folder | audioset`` video manifests (``video`` relative to ``prep.json`` ->
  ``root``): ``splitK/train.jsonl`` (its sibling ``test.jsonl`` is added automatically, rows taking
  their split from the file name), ``--test-manifest`` for any other pair, or ``videos.jsonl``
  with the role of each video in split ``--split K`` (its ``splits`` field).

**Preprocessing** is the training pipeline's evaluation transform, so the features are those of
what the network saw: :func:`avssl.data.transforms.augment` with ``train=False`` (resize the short
side to ``--size``, centre square, normalise with the training mean/std). Videos are decoded like
``avssl-train``'s loader does, each frame resized to ``--frame-size`` x ``--frame-size`` (square,
aspect not kept) with area interpolation, before that transform. For a run or checkpoint (or
``random:`` with ``--like RUN``) the defaults of ``--size``, ``--frame-size`` and the mean/std come
from the run's training config (``aug.size``, ``data.frame_size``, ``aug.mean/std``); otherwise 64,
64 and the ImageNet statistics.

**Video-level features**: ``--frames K`` (default 4) frames at the centres of K equal segments of
the video (frame ``floor((j + 0.5) * N / K)``, ``j = 0..K-1``, of its N counted frames), read
exactly with :func:`avssl.data.decode.read_frames`; the video's feature is the mean of the K frame
features. Clip backbones (``r3d_18``, ``r2plus1d_18``) instead see the K frames as one clip
``(3, K, H, W)``; they cannot embed single images.

**Layers** (``--layer``, default ``out``): ``out`` is the backbone's own feature (its forward
output). Named layers are read with a forward hook (the forward pass stops there):
``convnet_tiny`` ``block1`` .. ``blockN`` (each conv-BN-ReLU block's output), ``caffenet`` /
``caffenet_small`` ``conv1`` .. ``conv5`` (after the ReLU), ``pool5``, ``fc6``, ``fc7``,
``resnet18`` ``conv1`` (the stem, after its ReLU), ``layer1`` .. ``layer4``, the clip ResNets
``stem``, ``layer1`` .. ``layer4``; any module name of ``net.named_modules()`` works too.
Convolutional maps are average-pooled, globally (``--pool 1``, default) or adaptively to k x k
(``--pool k``), and flattened (``C * k * k`` values); clip maps are first averaged over time.

**Protocols**:

* ``linear``: :func:`avssl.eval.metrics.logistic_probe` -- multinomial logistic regression on
  standardised features, ``C`` chosen on a stratified held-out part (``--val-fraction``) of the
  training split only, refitted on the whole training split, scored once on the test split.
* ``knn``: :func:`avssl.eval.metrics.knn_predict` -- cosine similarity, the ``--k`` nearest
  training samples vote with weight ``exp(s / T)`` (``--temperature``, default 0.07; 0: majority).

Training rows are those whose split is in ``--train-splits`` (default ``train``; the built-in set
also has ``val``: ``--train-splits train,val``), test rows ``--test-splits`` (default ``test``).

**Feature cache**: features of every row of the manifest(s) (all splits) are stored in
``--cache DIR`` (default ``<out dir>/features/``) as ``.npz`` (``feats`` float32 (N, D),
``labels`` int64, ``ids``, ``split``), named by a hash of the model fingerprint, the manifest
files (path, size, modification time), the layer and every option that changes the features;
``linear``, ``knn`` and ``retrieval`` share them. Writes are atomic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avssl import errors
from avssl.checkpoints import checkpoint_file, load_checkpoint
from avssl.data.manifest import atomic_output, atomic_write_text, read_manifest, resolve_under
from avssl.data.suffixes import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, augment

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "DEFAULT_SIZE",
    "EvalSet",
    "FeatureSpec",
    "LoadedModel",
    "Sample",
    "add_feature_options",
    "available_layers",
    "extract_features",
    "load_eval_set",
    "load_model",
    "pool_features",
    "prepare_features",
    "register",
    "resolve_layer",
    "result_dict",
    "run_guarded",
    "write_result",
]

FEATURE_VERSION = 1  # bump when the extraction changes, so old caches are not reused
DEFAULT_SIZE = 64
DEFAULT_FRAME_SIZE = 64
CLIP_BACKBONES = frozenset({"r3d_18", "r2plus1d_18"})


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Sample:
    """One manifest row to embed."""

    id: str  # the row's path relative to the dataset root (unique key in caches and reports)
    path: Path  # the file
    label: int  # class id; -1 without one
    split: str
    class_name: str = ""
    labels: tuple[str, ...] | None = None  # multi-label rows (AudioSet MIDs)
    num_frames: int | None = None  # videos: counted frames, when the manifest has them


@dataclass
class EvalSet:
    """The rows of one evaluation: an image or a video set, with names for reports."""

    name: str  # dataset name for file names and results, e.g. "digits", "synth", "ucf101-split1"
    kind: str  # "image" | "video"
    manifests: list[Path]
    root: Path  # what sample ids are relative to
    samples: list[Sample]
    classes: list[str]  # names by class id
    infos: dict[str, Any] = field(default_factory=dict)  # id -> VideoInfo from a probe.jsonl

    def indices(self, splits: Sequence[str]) -> np.ndarray:
        """Row indices whose split is one of ``splits``, in manifest order."""
        want = set(splits)
        return np.array([i for i, s in enumerate(self.samples) if s.split in want], np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def split_names(self) -> list[str]:
        return sorted({s.split for s in self.samples})


def default_manifest() -> Path:
    """The built-in set's manifest: ``$AVSSL_DATA/synth/manifest.jsonl`` (default avssl-data)."""
    return Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "synth" / "manifest.jsonl"


def _resolve_manifest(path: Path) -> Path:
    if path.is_dir():
        for name in ("images.jsonl", "manifest.jsonl", "train.jsonl", "videos.jsonl"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{path}: no images.jsonl, manifest.jsonl, train.jsonl or videos.jsonl in this folder"
        )
    if not path.is_file():
        hint = " (build the built-in set with 'avssl-prep synth')" if "synth" in str(path) else ""
        raise FileNotFoundError(f"{path}: no such manifest{hint}")
    return path


def _card(manifest: Path) -> tuple[dict[str, Any], Path | None]:
    """The dataset card next to a manifest: prep.json in its folder or the folder above (the
    ``splitK/`` files), else the built-in set's dataset.json; ``({}, None)`` without one."""
    for cand in (manifest.parent / "prep.json", manifest.parent.parent / "prep.json",
                 manifest.parent / "dataset.json"):  # fmt: skip
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{cand}: not valid JSON ({e})") from None
            if isinstance(data, dict):
                return data, cand
    return {}, None


def _row_kind(row: dict[str, Any], where: str) -> str:
    if "audio_video" in row:
        raise ValueError(
            f"{where}: an audio-visual pair manifest; give the video manifest (train.jsonl / "
            "test.jsonl) instead"
        )
    if any(k in row for k in ("frames", "subsequences", "five")):
        raise ValueError(
            f"{where}: a pretext-task manifest; give a video manifest (train.jsonl, test.jsonl, "
            "videos.jsonl) or the built-in set's manifest.jsonl"
        )
    if "video" in row:
        return "video"
    if "file" in row:
        return "file"
    if "path" in row:
        suffix = Path(str(row["path"])).suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            raise ValueError(
                f"{where}: an audio manifest ({row['path']}); these commands embed images and "
                "video frames (audio: avssl-eval esc50)"
            )
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"{where}: {row['path']!r} is not an image ({sorted(IMAGE_SUFFIXES)})")
        return "image"
    raise ValueError(f"{where}: a row without 'path', 'file' or 'video'; not a known manifest")


def _rows_to_samples(
    manifest: Path, root: Path, split_key: str | None, file_split: str | None
) -> tuple[str, list[Sample], dict[int, str]]:
    """Rows -> samples. A row's split: its ``split`` field, else ``file_split``, else its role
    in split ``split_key`` of its ``splits`` field, else ``"all"``."""
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: empty manifest")
    stem_split = file_split
    kinds: set[str] = set()
    samples: list[Sample] = []
    names: dict[int, str] = {}
    for n, row in enumerate(rows, 1):
        where = f"{manifest}:{n}"
        if "v" in row and row["v"] != 1:
            raise ValueError(f"{where}: manifest format version {row['v']!r}; this reader knows 1")
        kind = _row_kind(row, where)
        kinds.add(kind)
        rel = str(row[{"video": "video", "file": "file", "image": "path"}[kind]])
        if "split" in row:
            split = str(row["split"])
        elif stem_split is not None:
            split = stem_split
        elif isinstance(row.get("splits"), dict):
            roles: dict[str, Any] = row["splits"]
            key = split_key if split_key is not None else ("1" if "1" in roles else None)
            if key is None and len(roles) == 1:
                key = next(iter(roles))
            if key not in roles:
                raise ValueError(
                    f"{where}: no role for split {key!r} (roles: {roles}); use --split"
                )
            split = str(roles[key])
        else:
            split = "all"
        label = int(row.get("class_id", -1))
        name = str(row.get("class_name", row.get("label", "")))
        if label >= 0 and name:
            names.setdefault(label, name)
        multi = row.get("labels")
        frames = row.get("num_frames")
        samples.append(
            Sample(
                id=rel,
                path=resolve_under(root, rel, where=where),
                label=label,
                split=split,
                class_name=name,
                labels=tuple(str(x) for x in multi) if isinstance(multi, list) else None,
                num_frames=int(frames) if isinstance(frames, int) else None,
            )
        )
    if len(kinds) > 1:
        raise ValueError(f"{manifest}: rows of different kinds ({sorted(kinds)})")
    return kinds.pop(), samples, names


def load_eval_set(
    manifest: str | os.PathLike[str],
    *,
    test_manifest: str | os.PathLike[str] | None = None,
    split: str | None = None,
) -> EvalSet:
    """Read an image or video manifest (module docstring) into an :class:`EvalSet`.

    ``test_manifest`` adds a second file (its rows' split: their ``split`` field, else the file
    name ``train``/``test``/``val``, else ``test``). A ``train.jsonl`` with a sibling ``test.jsonl``
    gets that file added. ``split`` picks the role of ``videos.jsonl`` rows (``splits`` field).
    """
    first = _resolve_manifest(Path(manifest))
    files = [first]
    if test_manifest is not None:
        files.append(_resolve_manifest(Path(test_manifest)))
    elif first.name == "train.jsonl" and (first.parent / "test.jsonl").is_file():
        files.append(first.parent / "test.jsonl")
    card, card_path = _card(first)
    kinds: set[str] = set()
    samples: list[Sample] = []
    names: dict[int, str] = {}
    roots: list[Path] = []
    infos: dict[str, Any] = {}
    for i, m in enumerate(files):
        m_card, m_card_path = _card(m)
        root = m.parent
        if m_card_path is not None and m_card_path.name == "prep.json" and m_card.get("root"):
            root = Path(str(m_card["root"]))
            from avssl.data.dataset import load_probe_infos

            infos.update(load_probe_infos(m_card_path.parent / "probe.jsonl"))
        roots.append(root)
        file_split = m.stem if m.stem in ("train", "test", "val") else None
        if i == 1 and file_split is None:
            file_split = "test"  # --test-manifest: its rows are test rows
        kind, part, part_names = _rows_to_samples(m, root, split, file_split)
        kinds.add("image" if kind == "image" else "video")
        samples += part
        for k, v in part_names.items():
            names.setdefault(k, v)
    if len(kinds) > 1:
        raise ValueError(f"{[str(f) for f in files]}: an image and a video manifest cannot mix")
    # names
    raw_classes = card.get("classes")
    classes: list[str] = []
    if isinstance(raw_classes, list):
        classes = [str(c["name"]) if isinstance(c, dict) else str(c) for c in raw_classes]
    top = max((s.label for s in samples), default=-1)
    for k in range(len(classes), top + 1):
        classes.append(names.get(k, str(k)))
    # dataset name
    if card_path is not None and card_path.name == "prep.json":
        name = str(card.get("dataset") or first.parent.name)
        if re.fullmatch(r"split\d+", first.parent.name):
            name = f"{name}-{first.parent.name}"
    elif card_path is not None:  # dataset.json of the built-in set
        name = "synth" if card.get("name") == "avssl-synth" else str(card.get("name", "synth"))
    else:
        name = first.parent.name or "dataset"
    return EvalSet(name, kinds.pop(), files, roots[0], samples, classes, infos)


# --------------------------------------------------------------------------- models and layers


@dataclass
class LoadedModel:
    """A backbone (or the pixel baseline, ``net is None``) with what results and caches need."""

    net: nn.Module | None
    info: dict[str, Any]  # the result's "model"
    fingerprint: str
    tag: str  # for default output file names
    backbone: str  # "pixels" for the baseline
    clip: bool = False  # (B, 3, T, H, W) input
    train_config: dict[str, Any] | None = None
    run_dir: Path | None = None


def _checkpoint_config(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        ck_path = checkpoint_file(path)
    except FileNotFoundError:
        return None
    ck = load_checkpoint(ck_path)
    raw = ck.get("config")
    if isinstance(raw, str):
        cfg = json.loads(raw)
        return cfg if isinstance(cfg, dict) else None
    return None


def load_model(
    spec: str,
    *,
    model_kwargs: dict[str, Any] | None = None,
    like: str | None = None,
    seed: int = 0,
    pixels_size: int = 16,
) -> LoadedModel:
    """``pixels`` or anything :func:`avssl.eval.encoders.load_encoder` takes.

    Raises ValueError for a backbone whose first layer does not take 3 channels.
    """
    if spec == "pixels":
        if pixels_size < 1:
            raise ValueError(f"--pixels-size must be >= 1, got {pixels_size}")
        pix = {"source": "pixels", "spec": "pixels", "size": pixels_size,
               "dim": 3 * pixels_size * pixels_size}  # fmt: skip
        return LoadedModel(None, pix, f"pixels-{pixels_size}", f"pixels{pixels_size}", "pixels")
    from avssl.eval.encoders import load_encoder

    net, info = load_encoder(spec, model_kwargs=model_kwargs, like=like, seed=seed)
    if info.in_channels != 3:
        raise ValueError(
            f"{spec}: its first layer takes {info.in_channels} input channels (e.g. a "
            "stack-of-differences tower); frozen-feature evaluation feeds RGB images and frames "
            "(3 channels)"
        )
    if info.source == "random":
        tag = f"random-{info.backbone}-{info.fingerprint.removeprefix('random-')[:6]}"
        cfg = _checkpoint_config(like)
    else:
        p = Path(spec)
        tag = p.name if p.is_dir() else f"{p.parent.name}-{p.stem}"
        cfg = _checkpoint_config(info.path)
    run_dir = Path(spec) if info.source == "run" else None
    return LoadedModel(net, info.to_dict(), info.fingerprint, tag, info.backbone,
                       info.backbone in CLIP_BACKBONES, cfg, run_dir)  # fmt: skip


def available_layers(net: nn.Module, backbone: str) -> dict[str, str]:
    """Named layers of a backbone: friendly name -> module name (``out``: the forward output)."""
    layers: dict[str, str] = {}
    if backbone == "convnet_tiny":
        relus = [n for n, m in net.named_modules() if n.startswith("features.")
                 and isinstance(m, nn.ReLU)]  # fmt: skip
        layers = {f"block{i + 1}": n for i, n in enumerate(relus)}
    elif backbone in ("caffenet", "caffenet_small"):
        conv = [n for n, m in net.named_modules() if n.startswith("features.")
                and isinstance(m, nn.ReLU)]  # fmt: skip
        pools = [n for n, m in net.named_modules() if n.startswith("features.")
                 and isinstance(m, nn.MaxPool2d)]  # fmt: skip
        fcs = [n for n, m in net.named_modules() if n.startswith("fc.") and isinstance(m, nn.ReLU)]
        layers = {f"conv{i + 1}": n for i, n in enumerate(conv)}
        if pools:
            layers["pool5"] = pools[-1]
        layers.update({f"fc{i + 6}": n for i, n in enumerate(fcs)})
    elif backbone == "resnet18":
        layers = {"conv1": "relu", **{f"layer{i}": f"layer{i}" for i in range(1, 5)}}
    elif backbone in CLIP_BACKBONES:
        layers = {"stem": "stem", **{f"layer{i}": f"layer{i}" for i in range(1, 5)}}
    layers["out"] = ""
    return layers


def resolve_layer(net: nn.Module, backbone: str, layer: str) -> nn.Module | None:
    """The module whose output ``layer`` names (None for ``out``, the forward output)."""
    named = available_layers(net, backbone)
    modules = dict(net.named_modules())
    target = named.get(layer, layer)
    if target == "":
        return None
    if target not in modules:
        raise ValueError(
            f"unknown layer {layer!r} of {backbone}; use one of {', '.join(named)} or a module "
            f"name of the network (e.g. {', '.join(list(modules)[1:4])})"
        )
    return modules[target]


def pool_features(t: torch.Tensor, pool: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> adaptive average pool to ``pool x pool``, flattened ``(B, C*p*p)``;
    ``(B, C, T, H, W)`` is first averaged over T; ``(B, D)`` is returned as is."""
    if t.ndim == 5:
        t = t.mean(dim=2)
    if t.ndim == 4:
        return torch.flatten(F.adaptive_avg_pool2d(t, pool), 1)
    return torch.flatten(t, 1)


class _Stop(Exception):
    """Raised by the layer hook: the rest of the forward pass is not needed."""


class _Extractor:
    """``x -> (B, D)`` features of one layer (hook) or of the forward output."""

    def __init__(self, net: nn.Module, module: nn.Module | None, pool: int) -> None:
        self.net = net
        self.module = module
        self.pool = pool
        self._out: torch.Tensor | None = None

    def _hook(self, _m: nn.Module, _inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, tuple) else out
        self._out = pool_features(t, self.pool)  # a new tensor: later in-place ops cannot touch it
        raise _Stop

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is None:
            return pool_features(self.net(x), self.pool)
        handle = self.module.register_forward_hook(self._hook)
        try:
            self.net(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if self._out is None:
            raise ValueError("the chosen layer was not reached by the forward pass")
        out, self._out = self._out, None
        return out


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSpec:
    """Every option that changes the features (all go into the cache key)."""

    layer: str = "out"
    pool: int = 1
    size: int = DEFAULT_SIZE
    frame_size: int = DEFAULT_FRAME_SIZE
    frames: int = 4
    pixels_size: int = 16
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("pool", "size", "frame_size", "frames", "pixels_size"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )


def _frame_indices(n: int, k: int) -> list[int]:
    """The centres of ``k`` equal segments of ``n`` frames: ``floor((j + 0.5) * n / k)``."""
    return [((2 * j + 1) * n) // (2 * k) for j in range(k)]


def _read_image(path: Path) -> torch.Tensor:
    """``(1, 3, H, W)`` uint8 RGB; grey replicated to 3 channels, alpha dropped (the trainer's
    reader, :func:`avssl.data.image.read_image`)."""
    from avssl.data.image import read_image

    return torch.from_numpy(read_image(path)).permute(2, 0, 1)[None]


def _read_video(sample: Sample, spec: FeatureSpec, info: Any = None) -> torch.Tensor:
    """``(K, 3, F, F)`` uint8 frames of ``sample`` (module docstring). ``info``: the prep's
    probe of the file (``read_frames`` re-probes if the file changed since)."""
    from avssl.data import decode

    n = sample.num_frames
    if n is None:
        n = (info or decode.probe(sample.path)).num_frames
    if n < 1:
        raise ValueError(f"{sample.path}: no frames")
    size = (spec.frame_size, spec.frame_size)
    clip = decode.read_frames(sample.path, _frame_indices(n, spec.frames), size=size, info=info)
    return clip.data.contiguous()


def extract_features(
    ev: EvalSet,
    model: LoadedModel,
    spec: FeatureSpec,
    *,
    batch_size: int = 128,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Features ``(N, D)`` float32 of every sample of ``ev``, in order (module docstring)."""
    if model.clip and ev.kind == "image":
        raise ValueError(f"{model.backbone} is a clip backbone: it cannot embed single images")
    cfg = AugmentConfig(size=spec.size, mean=spec.mean, std=spec.std)
    dev = torch.device(device)
    if model.net is None:
        p = spec.pixels_size

        def embed(x: torch.Tensor) -> torch.Tensor:
            return torch.flatten(F.adaptive_avg_pool2d(x, p), 1)
    else:
        net = model.net.to(dev).eval()
        module = resolve_layer(net, model.backbone, spec.layer)
        embed = _Extractor(net, module, spec.pool)

    n = len(ev.samples)
    out: list[np.ndarray | None] = [None] * n
    pending: list[tuple[int, torch.Tensor]] = []  # (sample index, (T, 3, S, S) float)
    t0 = last = time.monotonic()

    def flush() -> None:
        if not pending:
            return
        if model.clip:
            x = torch.stack([c.permute(1, 0, 2, 3) for _, c in pending])  # (B, 3, T, S, S)
            feats = embed(x.to(dev)).float().cpu()
            for (i, _), f in zip(pending, feats, strict=True):
                out[i] = f.numpy()
        else:
            x = torch.cat([c for _, c in pending])
            feats = embed(x.to(dev)).float().cpu()
            start = 0
            for i, c in pending:
                out[i] = feats[start : start + c.shape[0]].mean(dim=0).numpy()
                start += c.shape[0]
        pending.clear()

    with torch.no_grad():
        for i, s in enumerate(ev.samples):
            if ev.kind == "image":
                raw = _read_image(s.path)
            else:
                raw = _read_video(s, spec, ev.infos.get(s.id))
            pending.append((i, augment(raw[None], cfg, train=False)[0]))
            if sum(c.shape[0] for _, c in pending) >= batch_size:
                flush()
            now = time.monotonic()
            if progress and now - last > 10:
                last = now
                rate = (i + 1) / (now - t0)
                print(f"features: {i + 1}/{n} ({rate:.0f}/s)", file=sys.stderr, flush=True)
        flush()
    return np.stack([o for o in out if o is not None]).astype(np.float32)


def _cache_key(ev: EvalSet, model: LoadedModel, spec: FeatureSpec, split: str | None) -> str:
    files = []
    for m in ev.manifests:
        st = m.stat()
        files.append([str(m.resolve()), st.st_size, st.st_mtime_ns])
    key: dict[str, Any] = {"v": FEATURE_VERSION, "model": model.fingerprint,
                           "manifests": files, "split": split, "size": spec.size,
                           "mean": list(spec.mean), "std": list(spec.std)}  # fmt: skip
    if model.net is None:
        key["pixels"] = spec.pixels_size
    else:
        key.update(layer=spec.layer, pool=spec.pool)
    if ev.kind == "video":
        key.update(frames=spec.frames, frame_size=spec.frame_size)
    return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"


@dataclass
class Features:
    """Features of an :class:`EvalSet` and where they came from."""

    feats: np.ndarray  # (N, D) float32
    cache: Path | None
    hit: bool
    seconds: float


def prepare_features(
    ev: EvalSet,
    model: LoadedModel,
    spec: FeatureSpec,
    *,
    cache_dir: Path | None,
    split: str | None = None,
    batch_size: int = 128,
    device: str = "cpu",
    progress: bool = True,
) -> Features:
    """Features of ``ev`` from the cache in ``cache_dir`` when there (ids must match), else
    extracted and written there atomically (``cache_dir=None``: no cache)."""
    t0 = time.monotonic()
    path = None
    ids = np.array([s.id for s in ev.samples], dtype=np.str_)
    if cache_dir is not None:
        layer = "pixels" if model.net is None else spec.layer
        name = f"{ev.name}-{model.tag}-{layer}-{_cache_key(ev, model, spec, split)}.npz"
        path = cache_dir / _safe(name)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    feats, cached_ids = z["feats"], z["ids"]
                if cached_ids.shape == ids.shape and bool((cached_ids == ids).all()):
                    return Features(feats, path, True, time.monotonic() - t0)
            except (OSError, KeyError, ValueError):
                pass  # unreadable or stale: recompute and replace
    feats = extract_features(ev, model, spec, batch_size=batch_size, device=device,
                             progress=progress)  # fmt: skip
    if path is not None:
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, feats=feats, labels=ev.labels, ids=ids,
                     split=np.array([s.split for s in ev.samples], dtype=np.str_))  # fmt: skip
    return Features(feats, path, False, time.monotonic() - t0)


# --------------------------------------------------------------------------- results


def _command(args: argparse.Namespace) -> str:
    argv = getattr(args, "argv", None)
    if isinstance(argv, list | tuple):
        return shlex.join(["avssl-eval", *map(str, argv)])
    return shlex.join(["avssl-eval", *sys.argv[1:]])


def result_dict(
    kind: str,
    args: argparse.Namespace,
    dataset: dict[str, Any],
    model: LoadedModel,
    layer: str,
    metrics: dict[str, float],
    *,
    seconds: float,
    classes: list[str] | None = None,
    confusion: list[list[int]] | None = None,
    per_fold: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The common result JSON of every ``avssl-eval`` command."""
    out: dict[str, Any] = {
        "format": "avssl-eval",
        "version": 1,
        "kind": kind,
        "dataset": dataset,
        "model": model.info,
        "layer": layer,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if classes is not None:
        out["classes"] = classes
    if confusion is not None:
        out["confusion"] = confusion
    out["per_fold"] = per_fold or []
    out["extra"] = extra or {}
    out["command"] = _command(args)
    out["seconds"] = round(float(seconds), 3)
    return out


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


def print_summary(result: dict[str, Any], path: Path) -> None:
    """One line per metric (fractions also as percentages), then where the JSON went."""
    d, m = result["dataset"], result["model"]
    print(f"{result['kind']}: {m.get('spec', m.get('source'))} layer {result['layer']} on "
          f"{d['name']} ({d['num_train']} train / {d['num_test']} test)")  # fmt: skip
    for k, v in result["metrics"].items():
        pct = f"  ({100 * v:.2f}%)" if re.match(r"(accuracy|balanced_|R@|nDCG|mAP)", k) else ""
        print(f"  {k:<20} {v:.4f}{pct}")
    print(f"wrote {path}")


def run_guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: bad input (ValueError, OSError, media errors) -> one line, exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ValueError, OSError, errors.MediaError, json.JSONDecodeError) as e:
            print(f"avssl-eval: {e}", file=sys.stderr)
            return 2

    run.__name__ = getattr(fn, "__name__", "run")
    return run


# --------------------------------------------------------------------------- CLI


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _splits(text: str) -> list[str]:
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected split names such as train or train,val")
    return parts


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"channels\": [16]}'")
    return value


def add_feature_options(p: argparse.ArgumentParser) -> None:
    """MODEL, the manifest and the feature options shared by linear, knn and retrieval."""
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a checkpoint.pt, random:BACKBONE (random init) or pixels (the "
        "raw-pixel baseline)",
    )
    p.add_argument("--model-kwargs", type=_json_dict, default=None, metavar="JSON",
                   help="backbone keyword arguments for random:BACKBONE, e.g. "
                   "'{\"channels\": [16, 32, 64, 128], \"spatial\": 3}'")  # fmt: skip
    p.add_argument("--like", default=None, metavar="RUN",
                   help="random:BACKBONE: copy the backbone kwargs and the preprocessing of "
                   "this trained run")  # fmt: skip
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random initialisation and of the probe (default 0)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--manifest", type=Path, default=None, metavar="M",
                   help="an image manifest (avssl-prep digits: images.jsonl), the built-in "
                   "set's manifest.jsonl, or an avssl-prep video manifest (splitK/train.jsonl "
                   "with its test.jsonl, videos.jsonl); a folder holding one. Default: "
                   "$AVSSL_DATA/synth/manifest.jsonl")  # fmt: skip
    g.add_argument(
        "--test-manifest",
        type=Path,
        default=None,
        metavar="M2",
        help="a second manifest with the test rows",
    )
    g.add_argument(
        "--split",
        default=None,
        metavar="K",
        help="videos.jsonl: which split's train/test roles to use (default 1)",
    )
    f = p.add_argument_group("features")
    f.add_argument(
        "--layer",
        default="out",
        help="convnet_tiny block1..blockN; caffenet conv1..conv5, pool5, fc6, fc7; "
        "resnet18 conv1, layer1..layer4; or out, the backbone's feature (default)",
    )
    f.add_argument(
        "--pool",
        type=_positive,
        default=1,
        metavar="K",
        help="average-pool conv maps to K x K before flattening (default 1: global)",
    )
    f.add_argument(
        "--size",
        type=_positive,
        default=None,
        metavar="PX",
        help="network input side (default: the run's aug.size, else 64)",
    )
    f.add_argument(
        "--frame-size",
        type=_positive,
        default=None,
        metavar="PX",
        help="videos: decode frames at PX x PX (default: the run's data.frame_size, else 64)",
    )
    f.add_argument(
        "--frames",
        type=_positive,
        default=4,
        metavar="K",
        help="videos: frames per video, evenly spaced; features averaged (default 4)",
    )
    f.add_argument(
        "--pixels-size",
        type=_positive,
        default=16,
        metavar="P",
        help="pixels: average the input down to P x P (default 16)",
    )
    f.add_argument(
        "--batch-size",
        type=_positive,
        default=128,
        metavar="N",
        help="frames per forward pass (default 128)",
    )
    f.add_argument("--device", default="cpu", help="torch device (default cpu)")
    f.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="feature cache folder (default: <out dir>/features)",
    )
    f.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="result JSON (default RUN/eval/KIND-DATASET.json for a run, else "
                   "evals/KIND-DATASET-MODEL.json)")  # fmt: skip


def _feature_spec(args: argparse.Namespace, model: LoadedModel) -> FeatureSpec:
    cfg = model.train_config or {}
    aug = cfg.get("aug") if isinstance(cfg.get("aug"), dict) else {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    assert isinstance(aug, dict) and isinstance(data, dict)
    size = args.size or int(aug.get("size", DEFAULT_SIZE))
    frame_size = args.frame_size or int(data.get("frame_size", DEFAULT_FRAME_SIZE))
    mean = tuple(float(x) for x in aug.get("mean", IMAGENET_MEAN))
    std = tuple(float(x) for x in aug.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"the run's aug.mean/std are not 3 values: {mean}, {std}")
    layer = "pixels" if model.net is None else args.layer
    if model.net is None and args.layer != "out":
        raise ValueError("pixels has no layers; drop --layer")
    return FeatureSpec(layer=layer, pool=args.pool, size=size, frame_size=frame_size,
                       frames=args.frames, pixels_size=args.pixels_size,
                       mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]))  # fmt: skip


@dataclass
class Prepared:
    """Everything a frozen-feature command needs, after the features are in hand."""

    ev: EvalSet
    model: LoadedModel
    spec: FeatureSpec
    features: Features
    out: Path
    t0: float
    extra: dict[str, Any] = field(default_factory=dict)


def prepare(
    args: argparse.Namespace, kind: str, check: Callable[[EvalSet], Any] | None = None
) -> Prepared:
    """Load the model and the manifest, run ``check(eval_set)`` (raise on bad input before any
    decoding), and get the features (cache or extraction)."""
    t0 = time.monotonic()
    model = load_model(args.model, model_kwargs=args.model_kwargs, like=args.like,
                       seed=args.seed, pixels_size=args.pixels_size)  # fmt: skip
    if args.like is not None and model.info.get("source") != "random":
        raise ValueError("--like applies to random:BACKBONE only")
    ev = load_eval_set(args.manifest or default_manifest(), test_manifest=args.test_manifest,
                       split=args.split)  # fmt: skip
    spec = _feature_spec(args, model)
    if model.net is not None:
        resolve_layer(model.net, model.backbone, spec.layer)  # fail fast on a bad --layer
    if model.clip and ev.kind == "image":
        raise ValueError(f"{model.backbone} is a clip backbone: it cannot embed single images")
    if check is not None:
        check(ev)
    if args.out is not None:
        out = Path(args.out)
    elif model.run_dir is not None:
        out = model.run_dir / "eval" / f"{kind}-{_safe(ev.name)}.json"
    else:
        out = Path("evals") / f"{kind}-{_safe(ev.name)}-{_safe(model.tag)}.json"
    cache_dir = None if args.no_cache else (args.cache or out.parent / "features")
    feats = prepare_features(ev, model, spec, cache_dir=cache_dir, split=args.split,
                             batch_size=args.batch_size, device=args.device)  # fmt: skip
    if feats.hit:
        print(f"features: loaded from cache {feats.cache}")
    else:
        where = f", cached in {feats.cache}" if feats.cache else ""
        print(f"features: {feats.feats.shape[0]} x {feats.feats.shape[1]} extracted in "
              f"{feats.seconds:.1f} s{where}")  # fmt: skip
    return Prepared(ev, model, spec, feats, out, t0)


def features_extra(prep: Prepared) -> dict[str, Any]:
    """What the result's ``extra.features`` records."""
    s = prep.spec
    d: dict[str, Any] = {"dim": int(prep.features.feats.shape[1]), "size": s.size,
                         "mean": list(s.mean), "std": list(s.std),
                         "cache": str(prep.features.cache) if prep.features.cache else None,
                         "cache_hit": prep.features.hit}  # fmt: skip
    if prep.model.net is None:
        d["pixels_size"] = s.pixels_size
    else:
        d["pool"] = s.pool
    if prep.ev.kind == "video":
        d.update(frames=s.frames, frame_size=s.frame_size, video_feature="mean over frames")
    return d


def dataset_dict(prep: Prepared, train: np.ndarray, test: np.ndarray, **more: Any) -> dict:
    ev = prep.ev
    return {"name": ev.name, "manifest": ", ".join(str(m) for m in ev.manifests),
            "num_train": int(train.size), "num_test": int(test.size), "kind": ev.kind,
            "root": str(ev.root), **more}  # fmt: skip


def _train_test(ev: EvalSet, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices; ValueError when a side is empty, they overlap or a row
    has no class."""
    train, test = ev.indices(args.train_splits), ev.indices(args.test_splits)
    for what, idx, names in (("training", train, args.train_splits),
                             ("test", test, args.test_splits)):  # fmt: skip
        if idx.size == 0:
            raise ValueError(
                f"no {what} rows: no row of {ev.manifests[0]} has split {','.join(names)} "
                f"(splits present: {', '.join(ev.split_names)})"
            )
    if set(train.tolist()) & set(test.tolist()):
        raise ValueError("the training and test splits overlap")
    labels = ev.labels
    if (labels[train] < 0).any() or (labels[test] < 0).any():
        raise ValueError(
            "rows without a class (class_id -1, e.g. multi-label AudioSet rows): classification "
            "needs one class per row (retrieval takes label lists)"
        )
    return train, test


def _linear(args: argparse.Namespace) -> int:
    from avssl.eval import metrics as M

    prep = prepare(args, "linear", check=lambda ev: _train_test(ev, args))
    train, test = _train_test(prep.ev, args)
    x, y = prep.features.feats, prep.ev.labels
    res = M.logistic_probe(x[train], y[train], x[test], y[test], C_grid=args.c_grid,
                           val_fraction=args.val_fraction, seed=args.seed,
                           max_iter=args.max_iter)  # fmt: skip
    # logistic_probe returns no predictions: refit its final model (same C, seed and data, so
    # the same deterministic lbfgs fit) for the confusion matrix.
    clf = M._make_classifier("logreg", res["C"], True, args.seed, args.max_iter)
    with M._count_convergence([0]):
        clf.fit(x[train], y[train])
    pred = clf.predict(x[test]).astype(np.int64)
    num_classes = max(len(prep.ev.classes), int(y[train].max()) + 1, int(y[test].max()) + 1)
    cm = M.confusion_matrix(pred, y[test], num_classes)
    metrics = {"accuracy": res["accuracy"], "balanced_accuracy": res["balanced_accuracy"],
               "C": res["C"]}  # fmt: skip
    extra = {"features": features_extra(prep), "protocol": "logistic regression (lbfgs, "
             "standardised), C on a stratified held-out part of the training split",
             "val_fraction": args.val_fraction, "num_val": res["num_val"],
             "C_grid": res["C_grid"], "val_accuracy": res["val_accuracy"],
             "convergence_warnings": res["convergence_warnings"],
             "refit_accuracy": M.accuracy(pred, y[test])}  # fmt: skip
    return _finish(prep, args, "linear", train, test, metrics, cm, extra)


def _knn(args: argparse.Namespace) -> int:
    from avssl.eval import metrics as M

    prep = prepare(args, "knn", check=lambda ev: _train_test(ev, args))
    train, test = _train_test(prep.ev, args)
    x, y = prep.features.feats, prep.ev.labels
    temperature = None if args.temperature == 0 else args.temperature
    num_classes = max(len(prep.ev.classes), int(y[train].max()) + 1, int(y[test].max()) + 1)
    pred = M.knn_predict(x[train], y[train], x[test], k=args.k, temperature=temperature,
                         num_classes=num_classes)  # fmt: skip
    metrics = {"accuracy": M.accuracy(pred, y[test]),
               "balanced_accuracy": M.balanced_accuracy(pred, y[test])}  # fmt: skip
    cm = M.confusion_matrix(pred, y[test], num_classes)
    extra = {"features": features_extra(prep), "k": args.k, "temperature": temperature,
             "protocol": "weighted kNN on cosine similarity (Wu et al. 2018)"}  # fmt: skip
    return _finish(prep, args, "knn", train, test, metrics, cm, extra)


def _finish(
    prep: Prepared,
    args: argparse.Namespace,
    kind: str,
    train: np.ndarray,
    test: np.ndarray,
    metrics: dict[str, float],
    cm: np.ndarray,
    extra: dict[str, Any],
) -> int:
    dataset = dataset_dict(prep, train, test, train_splits=args.train_splits,
                           test_splits=args.test_splits)  # fmt: skip
    classes = prep.ev.classes + [str(k) for k in range(len(prep.ev.classes), cm.shape[0])]
    result = result_dict(kind, args, dataset, prep.model, prep.spec.layer, metrics,
                         seconds=time.monotonic() - prep.t0, classes=classes,
                         confusion=cm.tolist(), extra=extra)  # fmt: skip
    write_result(prep.out, result)
    print_summary(result, prep.out)
    return 0


def _c_grid(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"expected numbers such as 0.01,0.1,1, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _add_splits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-splits", type=_splits, default=["train"], metavar="S[,S]",
                   help="splits that train the probe (default train; the built-in set: "
                   "train,val adds its validation clips)")  # fmt: skip
    p.add_argument(
        "--test-splits",
        type=_splits,
        default=["test"],
        metavar="S[,S]",
        help="splits it is scored on (default test)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``linear`` and ``knn`` to ``avssl-eval``."""
    from avssl.eval.metrics import DEFAULT_C_GRID

    p = sub.add_parser(
        "linear",
        help="linear probe (logistic regression) on frozen features of an image/video set",
        description="Logistic-regression probe on frozen features from --layer of MODEL: C "
        "chosen on a held-out part of the training split only, then refitted and scored once "
        "on the test split. Writes accuracy, balanced accuracy and the confusion matrix. "
        "Features are cached (shared with knn and retrieval). See avssl/eval/vision.py.",
    )
    add_feature_options(p)
    _add_splits(p)
    p.add_argument("--C-grid", dest="c_grid", type=_c_grid, default=list(DEFAULT_C_GRID),
                   metavar="C[,C]", help="inverse regularisation strengths to choose from "
                   f"(default {','.join(str(c) for c in DEFAULT_C_GRID)})")  # fmt: skip
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="share of each class of the training split held out to choose C "
                   "(default 0.2)")  # fmt: skip
    p.add_argument(
        "--max-iter",
        type=_positive,
        default=1000,
        metavar="N",
        help="lbfgs iterations per fit (default 1000)",
    )
    p.set_defaults(func=run_guarded(_linear))

    p = sub.add_parser(
        "knn",
        help="weighted k-nearest-neighbour accuracy on frozen features",
        description="Weighted kNN (cosine similarity, votes exp(s/T)) from the training split "
        "to the test split on frozen features from --layer of MODEL. Features are cached "
        "(shared with linear and retrieval). See avssl/eval/vision.py.",
    )
    add_feature_options(p)
    _add_splits(p)
    p.add_argument("--k", type=_positive, default=20, help="neighbours (default 20)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.07,
        metavar="T",
        help="vote weight exp(similarity / T) (default 0.07; 0: majority vote)",
    )
    p.set_defaults(func=run_guarded(_knn))
