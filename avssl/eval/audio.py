"""``avssl-eval esc50``: audio features + linear SVM over a manifest's folds (ESC-50 protocol).

Protocol (../shared/METHODS.md, L3-Net / "Objects that Sound"):

1. Every clip is read whole at the front end's rate (mono = mean of the channels,
   :func:`avssl.data.decode.read_audio`) and cut into windows of ``--window-s`` (1 s) every
   ``--hop-s`` (0.5 s): ``1 + (N - W) // H`` windows of ``W`` samples for a clip of ``N >= W``
   samples (a tail shorter than a hop is left out), and for a clip shorter than one window a
   single window, the clip followed by zeros (:func:`split_windows`). A 0.3 s clip gives 1
   window, a 2.2 s clip 3 (starting at 0, 0.5 and 1.0 s), a 5 s ESC-50 clip 9.
2. Each window goes through the front end (the paper's 48 kHz log-spectrogram by default) and
   the audio tower (which standardises its input map, ``AudioConvNet(input_norm=...)``) up to
   block ``--layer`` (default: the last conv block, as L3's conv4 features); the block's map is
   **max-pooled** over frequency and time to one vector (``--pool max``; ``--grid FxT`` keeps
   an F x T max-pooled grid instead: L3-Net pooled its conv4_2 map to 4x3, recalled). Max
   rather than average pooling: a short clip padded to 1 s is mostly padding, and an average
   over the map would dilute its features by the fraction of real sound, a max does not (the
   papers max-pool too).
3. A clip's feature is the mean of its windows' vectors.
4. :func:`avssl.eval.metrics.linear_svm_folds`: leave one fold out, ``C`` chosen by an inner
   leave-one-fold-out cross-validation on the training folds only, standardised features;
   accuracy mean +- (population) std over the folds, per-fold accuracy and chosen ``C``.

``MODEL``:

* ``random:audio_tiny`` / ``random:audio_vgg`` (:data:`avssl.models.audio.AUDIO_BACKBONES`):
  the tower at random initialisation (``torch.manual_seed(--seed)`` before building), the
  baseline every table needs; ``--model-kwargs`` / ``--like RUN`` shape it;
* a run directory (its ``checkpoint.pt``) or a checkpoint file with an audio tower, format::

      {"model": state dict, tower weights under "audio." or "audio_net." (any inner prefix,
                e.g. "audio.net.", is found by matching the tower's own keys; other keys,
                such as heads, are ignored),
       "audio_backbone": "audio_vgg",                 # a name in AUDIO_BACKBONES
       "audio_backbone_kwargs": '{"width": 0.25}',    # JSON text (or a dict), optional
       "audio_frontend": '{"kind": "logmel", ...}',   # JSON text (or a dict), optional:
                                                      # build_frontend's config; default the
                                                      # 48 kHz log-spectrogram
       "task": "ave-net"}                             # optional
* ``mfcc``: the hand-crafted baseline (:data:`MFCC_RECIPE`): the whole clip at 16 kHz,
  ``librosa.feature.mfcc`` with 20 coefficients from a 40-band mel spectrogram (n_fft 512, 25 ms
  Hann window, 10 ms hop, 0-8 kHz, centred frames, zero padding; librosa's dB scale with
  ``top_db=80``), their deltas
  (``librosa.feature.delta``, width 9, ``mode="nearest"``), then mean and std over time of both
  -> 80 dims per clip (no windows: summary statistics are the classic ESC-50 baseline), then the
  same SVM.

``--manifest``: a ``clips.jsonl`` of ``avssl-prep esc50`` / ``avssl-prep audio-folder`` or its
folder (rows ``path``, ``class_id``, ``label``, ``fold``; ``prep.json`` beside it gives ``root``,
the dataset name and class names), or the built-in set's ``manifest.jsonl`` (``avssl-prep
synth``; or its folder): the audio is each clip's sound track, the class its ``class_id``, and
the folds, which it has none of, are assigned deterministically and stratified: a clip's fold is
``(its index among the clips of its class, in manifest order) mod 5 + 1``
(:func:`stratified_folds`).

Features are cached (``--cache DIR``, default ``<out dir>/features/``) as ``.npz`` with
``feats`` float32 (N, D), ``labels`` int64, ``ids`` (the rows' paths) and ``split`` (the fold
number as text), named by a hash of the model fingerprint, the tower's channels and input
normalisation, the front end, the manifest (path, size, mtime) and root, and every option that
changes features (layer, windows, pooling; for ``mfcc`` the recipe). ``--folds`` only selects
rows after loading, so it reuses the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avssl.checkpoints import load_checkpoint, load_weights
from avssl.data.manifest import atomic_output, atomic_write_text, read_manifest, resolve_under
from avssl.errors import MediaError
from avssl.eval.encoders import ModelInfo, _checkpoint, _fingerprint
from avssl.eval.metrics import (
    DEFAULT_C_GRID,
    _make_classifier,
    balanced_accuracy,
    confusion_matrix,
    linear_svm_folds,
)
from avssl.models.audio import (
    AUDIO_BACKBONES,
    AudioEncoder,
    build_audio_backbone,
    build_frontend,
    frontend_config,
)

__all__ = [
    "KIND",
    "MFCC_RECIPE",
    "AudioSet",
    "average_by_clip",
    "clip_features",
    "load_audio_model",
    "load_audio_set",
    "mfcc_features",
    "pool_map",
    "register",
    "run_esc50",
    "split_windows",
    "stratified_folds",
    "window_count",
]

KIND = "esc50"
FEATURE_VERSION = 1  # bump when the feature computation changes (invalidates caches)
SYNTH_FOLDS = 5

#: The MFCC baseline's recipe (librosa 0.11); see the module docstring.
MFCC_RECIPE: dict[str, Any] = {
    "sample_rate": 16000,
    "n_mfcc": 20,
    "n_mels": 40,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "fmin": 0.0,
    "fmax": 8000.0,
    "delta_width": 9,
    "stats": ["mean", "std"],
}

_AUDIO_PREFIXES = ("audio_net.", "audio.")


# --------------------------------------------------------------------------- data


@dataclass
class AudioSet:
    """Clips of one manifest: where they are, their classes and folds."""

    name: str
    manifest: Path
    root: Path
    paths: list[str]
    labels: np.ndarray  # int64 class ids
    folds: np.ndarray  # int64, 1-based
    classes: list[str]
    durations: list[float | None]
    fold_rule: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> AudioSet:
        idx = np.flatnonzero(keep)
        return AudioSet(
            self.name, self.manifest, self.root, [self.paths[i] for i in idx],
            self.labels[idx], self.folds[idx], self.classes,
            [self.durations[i] for i in idx], self.fold_rule, dict(self.extra),
        )  # fmt: skip


def stratified_folds(class_ids: Sequence[int], num_folds: int = SYNTH_FOLDS) -> np.ndarray:
    """Fold (1-based) of each row: its index among the rows of its class, mod ``num_folds``,
    plus 1 -- so every class is spread over the folds as evenly as its count allows."""
    seen: dict[int, int] = {}
    out = np.empty(len(class_ids), np.int64)
    for i, c in enumerate(class_ids):
        k = seen.get(int(c), 0)
        out[i] = k % num_folds + 1
        seen[int(c)] = k + 1
    return out


def _row_value(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row or row[key] is None:
        raise ValueError(f"{where}: row has no {key!r}")
    return row[key]


def load_audio_set(manifest: str | Path) -> AudioSet:
    """Read a prep ``clips.jsonl`` (or its folder) or a synth ``manifest.jsonl`` (or its folder).

    See the module docstring for the two forms. Raises FileNotFoundError / ValueError naming
    the file for a missing manifest, an empty one, or rows lacking the needed columns.
    """
    p = Path(manifest)
    if p.is_dir():
        for name in ("clips.jsonl", "manifest.jsonl"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise FileNotFoundError(
                f"{manifest}: no clips.jsonl (avssl-prep esc50 / audio-folder) or "
                "manifest.jsonl (avssl-prep synth) in this folder"
            )
    rows = read_manifest(p)
    if not rows:
        raise ValueError(f"{p}: the manifest has no rows")
    p = p.resolve()
    first = rows[0]
    if "path" in first and "fold" in first:
        prep_file = p.parent / "prep.json"
        prep = json.loads(prep_file.read_text()) if prep_file.is_file() else {}
        root = Path(prep.get("root", p.parent))
        paths, labels, folds, durs = [], [], [], []
        for i, r in enumerate(rows, 1):
            where = f"{p}:{i}"
            paths.append(str(_row_value(r, "path", where)))
            labels.append(int(_row_value(r, "class_id", where)))
            folds.append(int(_row_value(r, "fold", where)))
            d = r.get("duration_s")
            durs.append(float(d) if d is not None else None)
        names = {int(r["class_id"]): str(r.get("label", r["class_id"])) for r in rows}
        classes = list(prep.get("classes") or [])
        name = str(prep.get("dataset") or p.parent.name)
        rule = str(prep.get("fold_rule") or ("official" if name == "esc50" else "manifest"))
    elif "file" in first and "class_id" in first:
        root = p.parent
        paths, labels, durs = [], [], []
        for i, r in enumerate(rows, 1):
            where = f"{p}:{i}"
            paths.append(str(_row_value(r, "file", where)))
            labels.append(int(_row_value(r, "class_id", where)))
            d = r.get("duration_s")
            durs.append(float(d) if d is not None else None)
        names = {int(r["class_id"]): str(r.get("class_name", r["class_id"])) for r in rows}
        classes = []
        folds = stratified_folds(labels).tolist()
        name = p.parent.name
        rule = f"class-rank-mod-{SYNTH_FOLDS}"
    else:
        raise ValueError(
            f"{p}: rows need path/class_id/fold (avssl-prep esc50 or audio-folder clips.jsonl) "
            f"or file/class_id (avssl-prep synth manifest.jsonl); got columns {sorted(first)}"
        )
    if min(labels) < 0:
        raise ValueError(f"{p}: negative class_id {min(labels)}")
    if not classes:
        classes = [names.get(c, str(c)) for c in range(max(labels) + 1)]
    return AudioSet(
        name, p, root, paths, np.asarray(labels, np.int64), np.asarray(folds, np.int64),
        classes, durs, rule,
    )  # fmt: skip


def read_clip(path: Path, sample_rate: int, duration_s: float | None) -> np.ndarray:
    """The whole clip, mono float32 at ``sample_rate`` (``duration_s`` from the manifest, else
    probed from the decoded samples)."""
    from avssl.data.decode import probe_audio, read_audio

    if duration_s is None:
        duration_s = probe_audio(path).duration_s
    return read_audio(path, 0.0, duration_s, sample_rate=sample_rate).data[0].numpy()


# --------------------------------------------------------------------------- windows, pooling


def window_count(num_samples: int, window: int, hop: int) -> int:
    """Windows of ``window`` samples every ``hop`` in ``num_samples`` samples: ``1 + (N - W) //
    H`` for ``N >= W``, else 1 (one zero-padded window)."""
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 sample, got {window}, {hop}")
    if num_samples <= window:
        return 1
    return 1 + (num_samples - window) // hop


def split_windows(wave: np.ndarray, window: int, hop: int) -> np.ndarray:
    """``(K, window)`` windows of a 1-D waveform (:func:`window_count`); a clip shorter than one
    window is returned as one window, zero-padded at the end."""
    x = np.asarray(wave, np.float32).reshape(-1)
    k = window_count(x.size, window, hop)
    if x.size < window:
        out = np.zeros((1, window), np.float32)
        out[0, : x.size] = x
        return out
    idx = np.arange(k)[:, None] * hop + np.arange(window)[None, :]
    return x[idx]


def pool_map(fmap: torch.Tensor, how: str = "max", grid: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """``(B, C, F, T)`` -> ``(B, C * gf * gt)``: max- or average-pooled to a ``gf x gt`` grid over
    (frequency, time) (``(1, 1)``: one vector), flattened channel-major."""
    if how == "max":
        pooled = F.adaptive_max_pool2d(fmap, grid)
    elif how == "avg":
        pooled = F.adaptive_avg_pool2d(fmap, grid)
    else:
        raise ValueError(f"pool must be 'max' or 'avg', got {how!r}")
    return torch.flatten(pooled, 1)


def average_by_clip(feats: np.ndarray, clip_index: np.ndarray, num_clips: int) -> np.ndarray:
    """Mean of the rows of ``feats`` (windows) per clip: row ``i`` belongs to clip
    ``clip_index[i]``; every clip in ``0..num_clips-1`` needs at least one window."""
    f = np.asarray(feats, np.float64)
    idx = np.asarray(clip_index, np.int64)
    counts = np.bincount(idx, minlength=num_clips)
    if counts.size != num_clips or (counts == 0).any():
        raise ValueError("every clip needs at least one window (and no index >= num_clips)")
    sums = np.zeros((num_clips, f.shape[1]), np.float64)
    np.add.at(sums, idx, f)
    return (sums / counts[:, None]).astype(np.float32)


def clip_features(
    encoder: AudioEncoder,
    waves: Iterable[np.ndarray],
    *,
    layer: int,
    window: int,
    hop: int,
    pool: str = "max",
    grid: tuple[int, int] = (1, 1),
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One feature per clip (steps 1-3 of the protocol) from waveforms at the encoder's rate.

    Windows of consecutive clips are batched together (``batch_size`` to ``2 * batch_size - 1``
    windows a forward pass) under ``torch.no_grad()`` on ``device``; ``progress(clips_done)`` is
    called per clip.
    """
    dev = torch.device(device)
    encoder = encoder.to(dev).eval()
    outs: list[np.ndarray] = []
    owners: list[int] = []
    batch: list[np.ndarray] = []
    batch_owner: list[int] = []

    def flush() -> None:
        if not batch:
            return
        x = torch.from_numpy(np.concatenate(batch)).to(dev)
        with torch.no_grad():
            v = pool_map(encoder.features(x, layer), pool, grid)
        outs.append(v.float().cpu().numpy())
        owners.extend(batch_owner)
        batch.clear()
        batch_owner.clear()

    n = 0
    pending = 0
    for i, wave in enumerate(waves):
        w = split_windows(wave, window, hop)
        for start in range(0, w.shape[0], batch_size):
            part = w[start : start + batch_size]
            batch.append(part)
            batch_owner.extend([i] * part.shape[0])
            pending += part.shape[0]
            if pending >= batch_size:
                flush()
                pending = 0
        n = i + 1
        if progress is not None:
            progress(n)
    flush()
    if n == 0:
        raise ValueError("no clips")
    return average_by_clip(np.concatenate(outs), np.asarray(owners), n)


def mfcc_features(wave: np.ndarray, recipe: dict[str, Any] | None = None) -> np.ndarray:
    """The MFCC baseline's vector of one clip at ``recipe["sample_rate"]``: mean and std over
    time of the MFCCs and of their deltas (``4 * n_mfcc`` values; :data:`MFCC_RECIPE`)."""
    import librosa

    r = {**MFCC_RECIPE, **(recipe or {})}
    y = np.asarray(wave, np.float32).reshape(-1)
    if y.size < r["n_fft"]:
        y = np.pad(y, (0, r["n_fft"] - y.size))
    m = librosa.feature.mfcc(
        y=y, sr=r["sample_rate"], n_mfcc=r["n_mfcc"], n_fft=r["n_fft"],
        win_length=r["win_length"], hop_length=r["hop_length"], n_mels=r["n_mels"],
        fmin=r["fmin"], fmax=r["fmax"], center=True, pad_mode="constant",
    )  # fmt: skip
    d = librosa.feature.delta(m, width=r["delta_width"], mode="nearest")
    parts = [m.mean(1), m.std(1), d.mean(1), d.std(1)]
    return np.concatenate(parts).astype(np.float32)


# --------------------------------------------------------------------------- models


def _json_arg(value: Any, what: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    out = json.loads(value) if isinstance(value, str) else value
    if not isinstance(out, dict):
        raise ValueError(f"{what} must be a JSON object, got {value!r}")
    return dict(out)


def _audio_state(model_state: dict[str, torch.Tensor], keys: list[str]) -> dict[str, Any]:
    """The tower's entries of a checkpoint's state dict: under ``audio_net.`` or ``audio.``,
    at the inner prefix where all of the tower's own ``keys`` are found."""
    for top in _AUDIO_PREFIXES:
        sub = {k[len(top) :]: v for k, v in model_state.items() if k.startswith(top)}
        if not sub:
            continue
        probe = keys[0]
        inner = sorted(
            {k[: -len(probe)] for k in sub if k.endswith(probe)}, key=lambda q: (len(q), q)
        )
        for q in inner:
            if q and not q.endswith("."):
                continue
            if all(q + k in sub for k in keys):
                return {k: sub[q + k] for k in keys}
    return {}


def load_audio_model(
    spec: str,
    *,
    model_kwargs: dict[str, Any] | None = None,
    frontend: dict[str, Any] | None = None,
    like: str | None = None,
    seed: int = 0,
) -> tuple[AudioEncoder, ModelInfo]:
    """The audio encoder (front end + tower) named by ``spec``, in eval mode, on the CPU.

    ``spec``: ``random:NAME`` or a run dir / checkpoint with an audio tower (module docstring).
    ``frontend`` overrides front-end keys (the checkpoint's, else the 48 kHz log-spectrogram);
    ``model_kwargs`` the tower's keywords. The ModelInfo's ``kwargs`` hold the tower's keywords;
    the front end is ``encoder.frontend.config``.
    """
    if spec.startswith("random:"):
        name = spec.split(":", 1)[1]
        if name not in AUDIO_BACKBONES:
            raise ValueError(
                f"unknown audio backbone {name!r}; available: {', '.join(AUDIO_BACKBONES)}"
            )
        kwargs = dict(model_kwargs or {})
        fe_cfg = dict(frontend or {})
        if like is not None:
            ck = load_checkpoint(_checkpoint(like))
            if ck.get("audio_backbone") != name:
                raise ValueError(
                    f"like={like}: its audio backbone is {ck.get('audio_backbone')}, not {name}"
                )
            kwargs = {**_json_arg(ck.get("audio_backbone_kwargs"), "audio_backbone_kwargs"),
                      **kwargs}  # fmt: skip
            fe_cfg = {**_json_arg(ck.get("audio_frontend"), "audio_frontend"), **fe_cfg}
        torch.manual_seed(seed)
        net = build_audio_backbone(name, **kwargs)
        fp = hashlib.blake2b(
            json.dumps([name, kwargs, seed], sort_keys=True).encode(), digest_size=8
        ).hexdigest()
        info = ModelInfo("random", spec, name, kwargs, fingerprint=f"random-{fp}", in_channels=1)
    else:
        if like is not None:
            raise ValueError("like= applies to random:NAME baselines only")
        path = _checkpoint(spec)
        ck = load_checkpoint(path)
        name = str(ck.get("audio_backbone") or "")
        if not name:
            raise ValueError(
                f"{path}: no audio tower (no 'audio_backbone' entry; a vision-only "
                f"{ck.get('task', 'avssl-train')} checkpoint?)"
            )
        kwargs = {**_json_arg(ck.get("audio_backbone_kwargs"), "audio_backbone_kwargs"),
                  **(model_kwargs or {})}  # fmt: skip
        fe_cfg = {**_json_arg(ck.get("audio_frontend"), "audio_frontend"), **(frontend or {})}
        net = build_audio_backbone(str(name), **kwargs)
        keys = list(net.state_dict())
        state = _audio_state(ck.get("model", {}), keys)
        if not state:
            sample = [k for k in ck.get("model", {}) if k.startswith(_AUDIO_PREFIXES)][:5]
            raise ValueError(
                f"{path}: no {name} weights under {' or '.join(_AUDIO_PREFIXES)} (expected "
                f"keys ending in e.g. {keys[0]!r}; found {sample or 'none'})"
            )
        load_weights(net, state, path, what=f"{name} audio tower")
        info = ModelInfo(
            "run" if Path(spec).is_dir() else "checkpoint", spec, str(name), kwargs,
            task=ck.get("task"), path=str(path), fingerprint=_fingerprint(state), in_channels=1,
        )  # fmt: skip
    encoder = AudioEncoder(build_frontend(fe_cfg), net).eval()
    return encoder, info


# --------------------------------------------------------------------------- the command


def _parse_folds(text: str) -> list[int] | None:
    if text.strip().lower() == "all":
        return None
    try:
        out = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(
            f"--folds must be 'all' or a comma list of fold numbers, got {text!r}"
        ) from None
    if not out:
        raise ValueError(f"--folds: no fold numbers in {text!r}")
    return out


def _parse_grid(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"--grid must be FxT with positive integers (e.g. 1x1, 4x3), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _parse_c_grid(text: str | None) -> list[float]:
    if text is None:
        return list(DEFAULT_C_GRID)
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--c-grid must be a comma list of numbers, got {text!r}") from None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _model_tag(spec: str) -> str:
    if spec in ("mfcc",) or spec.startswith("random:"):
        return _safe(spec.replace(":", "-"))
    p = Path(spec)
    return _safe(p.name if p.is_dir() else f"{p.parent.name}-{p.stem}")


def _default_out(spec: str, dataset: str) -> Path:
    if spec != "mfcc" and not spec.startswith("random:") and Path(spec).is_dir():
        return Path(spec) / "eval" / f"{KIND}-{_safe(dataset)}.json"
    return Path("evals") / f"{KIND}-{_safe(dataset)}-{_model_tag(spec)}.json"


def _cache_key(parts: dict[str, Any]) -> str:
    return hashlib.blake2b(
        json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=8
    ).hexdigest()


def _load_cache(path: Path, ids: list[str]) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if [str(i) for i in z["ids"].tolist()] != ids:
            return None  # same key, other rows: stale (should not happen); recompute
        return np.asarray(z["feats"], np.float32)


def _save_cache(path: Path, feats: np.ndarray, data: AudioSet) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                feats=feats.astype(np.float32),
                labels=data.labels.astype(np.int64),
                ids=np.asarray(data.paths, dtype=str),
                split=np.asarray([str(int(x)) for x in data.folds], dtype=str),
            )


class _Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.t0 = time.monotonic()
        self.step = max(1, total // 10)

    def __call__(self, done: int) -> None:
        if done % self.step == 0 or done == self.total:
            dt = time.monotonic() - self.t0
            print(f"{self.label}: {done}/{self.total} clips, {dt:.1f} s", file=sys.stderr)


def _features(
    args: argparse.Namespace, data: AudioSet, cache_dir: Path
) -> tuple[np.ndarray, dict[str, Any], int | None, dict[str, Any]]:
    """(features, model dict for the JSON, layer, extra) -- from the cache when it has them."""
    st = data.manifest.stat()
    base = {
        "v": FEATURE_VERSION,
        "manifest": str(data.manifest),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "root": str(data.root),
        "fold_rule": data.fold_rule,
    }
    extra: dict[str, Any] = {}
    if args.model == "mfcc":
        recipe = {**MFCC_RECIPE, "n_mfcc": args.n_mfcc}
        model: dict[str, Any] = {"source": "mfcc", "spec": "mfcc", **recipe}
        model["fingerprint"] = "mfcc-" + _cache_key(recipe)
        layer: int | None = None
        key = _cache_key({**base, "model": model["fingerprint"]})
        encoder = None
    else:
        encoder, info = load_audio_model(
            args.model,
            model_kwargs=_json_arg(args.model_kwargs, "--model-kwargs"),
            frontend=_json_arg(args.frontend, "--frontend"),
            like=args.like,
            seed=args.seed,
        )
        fe = frontend_config(encoder.frontend)
        tower = {"channels": list(encoder.net.channels), "input_norm": encoder.net.input_norm}
        model = {**info.to_dict(), "frontend": fe, "tower": tower}
        layer = encoder.net.num_layers if args.layer is None else args.layer
        if not 1 <= layer <= encoder.net.num_layers:
            raise ValueError(f"--layer must be in 1..{encoder.net.num_layers}, got {layer}")
        grid = _parse_grid(args.grid)
        sr = encoder.sample_rate
        window, hop = round(args.window_s * sr), round(args.hop_s * sr)
        if window < 1 or hop < 1:
            raise ValueError(f"--window-s / --hop-s too small at {sr} Hz: {window}, {hop}")
        extra.update(window_s=args.window_s, hop_s=args.hop_s, pool=args.pool, grid=list(grid))
        key = _cache_key(
            {**base, "model": info.fingerprint, "frontend": fe, "tower": tower, "layer": layer,
             "window": window, "hop": hop, "pool": args.pool, "grid": list(grid)}
        )  # fmt: skip
    cache = cache_dir / f"{KIND}-{_safe(data.name)}-{_model_tag(args.model)}-{key}.npz"
    extra["cache"] = str(cache.absolute())
    t0 = time.monotonic()
    feats = None if args.no_cache else _load_cache(cache, data.paths)
    if feats is not None:
        print(f"features: loaded from cache {cache}")
        extra["cache_hit"] = True
        return feats, model, layer, extra
    paths = [resolve_under(data.root, p, where=str(data.manifest)) for p in data.paths]
    progress = _Progress(len(data), f"{KIND} {data.name} features")
    if encoder is None:
        sr = MFCC_RECIPE["sample_rate"]
        rows = []
        for i, (p, d) in enumerate(zip(paths, data.durations, strict=True)):
            rows.append(mfcc_features(read_clip(p, sr, d), {"n_mfcc": args.n_mfcc}))
            progress(i + 1)
        feats = np.stack(rows)
    else:
        sr = encoder.sample_rate
        waves = (read_clip(p, sr, d) for p, d in zip(paths, data.durations, strict=True))
        feats = clip_features(
            encoder, waves, layer=int(layer or 0), window=round(args.window_s * sr),
            hop=round(args.hop_s * sr), pool=args.pool, grid=_parse_grid(args.grid),
            batch_size=args.batch_size, device=args.device, progress=progress,
        )  # fmt: skip
    extra["cache_hit"] = False
    extra["feature_seconds"] = round(time.monotonic() - t0, 3)
    if not args.no_cache:
        _save_cache(cache, feats, data)
        print(f"features: computed in {extra['feature_seconds']:.1f} s, cached at {cache}")
    return feats, model, layer, extra


def _predictions(
    feats: np.ndarray, labels: np.ndarray, folds: np.ndarray, res: dict[str, Any], args: Any
) -> np.ndarray:
    """Every clip's prediction by its test fold's final classifier (refitted exactly as
    ``linear_svm_folds`` fits it, same C and seed), for the confusion matrix."""
    pred = np.empty_like(labels)
    for f, c, acc in zip(res["fold_ids"], res["chosen_C"], res["fold_accuracy"], strict=True):
        train, test = folds != f, folds == f
        clf = _make_classifier("svm", c, not args.no_standardize, args.seed, args.max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(feats[train], labels[train])
        pred[test] = clf.predict(feats[test])
        refit = float(np.mean(pred[test] == labels[test]))
        if not math.isclose(refit, acc, abs_tol=1e-9):
            print(f"warning: fold {f} refit accuracy {refit} != {acc}", file=sys.stderr)
    return pred


def run_esc50(args: argparse.Namespace) -> int:
    """The ``esc50`` sub-command (see the module docstring); 0 ok, 2 bad input."""
    t_start = time.monotonic()
    try:
        data = load_audio_set(args.manifest)
        wanted = _parse_folds(args.folds)
        c_grid = _parse_c_grid(args.c_grid)
        if wanted is not None:
            missing = sorted(set(wanted) - set(data.folds.tolist()))
            if missing:
                raise ValueError(f"--folds {args.folds}: no clips in fold(s) {missing}")
        out = Path(args.out) if args.out else _default_out(args.model, data.name)
        cache_dir = Path(args.cache) if args.cache else out.parent / "features"
        feats, model, layer, extra = _features(args, data, cache_dir)
        if wanted is not None:
            keep = np.isin(data.folds, wanted)
            data, feats = data.subset(keep), feats[keep]
        t_svm = time.monotonic()
        res = linear_svm_folds(
            feats, data.labels, data.folds, c_grid, not args.no_standardize, args.seed,
            max_iter=args.max_iter,
        )  # fmt: skip
        pred = _predictions(feats, data.labels, data.folds, res, args)
    except (OSError, ValueError, MediaError) as e:
        print(f"avssl-eval: {e}", file=sys.stderr)
        return 2
    extra["svm_seconds"] = round(time.monotonic() - t_svm, 3)
    n_cls = len(data.classes)
    n = len(data)
    per_fold = []
    for f, acc, c, inner in zip(
        res["fold_ids"], res["fold_accuracy"], res["chosen_C"], res["inner_accuracy"],
        strict=True,
    ):  # fmt: skip
        n_test = int(np.sum(data.folds == f))
        per_fold.append({"fold": f, "accuracy": acc, "C": c, "num_train": n - n_test,
                         "num_test": n_test, "inner_accuracy": inner})  # fmt: skip
    extra.update(
        feature_dim=int(feats.shape[1]), C_grid=res["C_grid"], standardize=not args.no_standardize,
        convergence_warnings=res["convergence_warnings"], device=args.device,
        fold_rule=data.fold_rule, seed=args.seed,
    )  # fmt: skip
    result = {
        "format": "avssl-eval",
        "version": 1,
        "kind": KIND,
        "dataset": {
            "name": data.name,
            "manifest": str(data.manifest),
            "root": str(data.root),
            # cross-validation: every clip is tested once; num_train is the mean training size
            "num_train": round(float(np.mean([r["num_train"] for r in per_fold]))),
            "num_test": n,
            "num_clips": n,
            "num_classes": n_cls,
            "folds": res["fold_ids"],
            "fold_rule": data.fold_rule,
        },
        "model": model,
        "layer": layer,
        "metrics": {
            "accuracy": res["mean"],
            "accuracy_std": res["std"],
            "balanced_accuracy": balanced_accuracy(pred, data.labels, n_cls),
            "chance": 1.0 / n_cls,
        },
        "classes": data.classes,
        "confusion": confusion_matrix(pred, data.labels, n_cls).tolist(),
        "per_fold": per_fold,
        "extra": extra,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seconds": round(time.monotonic() - t_start, 3),
    }
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    m = result["metrics"]
    print(f"{KIND} {data.name} ({n} clips, {len(res['fold_ids'])} folds, {n_cls} classes), "
          f"model {args.model}, layer {layer}")  # fmt: skip
    print(f"accuracy           {m['accuracy']:.4f} +- {m['accuracy_std']:.4f}")
    print(f"balanced_accuracy  {m['balanced_accuracy']:.4f}")
    print(f"chance             {m['chance']:.4f}")
    print("fold accuracy      " + " ".join(f"{a:.4f}" for a in res["fold_accuracy"]))
    print("chosen C           " + " ".join(f"{c:g}" for c in res["chosen_C"]))
    print(f"wrote {out} ({result['seconds']:.1f} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``esc50`` sub-command to an ``avssl-eval`` parser."""
    p = sub.add_parser(
        KIND,
        help="audio features + linear SVM over a manifest's folds (ESC-50 protocol)",
        description=(
            "ESC-50 protocol (METHODS.md): features of the audio tower's block --layer on "
            "--window-s windows every --hop-s (short clips zero-padded to one window), "
            "max-pooled over frequency and time, averaged per clip; linear SVM, leave one "
            "fold out, C chosen on the training folds only; accuracy mean +- std over folds. "
            "MODEL: random:audio_tiny | random:audio_vgg (random-init baseline), a run dir or "
            "checkpoint with an audio tower, or mfcc (MFCC + deltas, mean/std over time). "
            "--manifest: clips.jsonl of avssl-prep esc50 / audio-folder (or its folder), or "
            "the synth manifest.jsonl (folds: class rank mod 5). See avssl/eval/audio.py."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="random:NAME, a run dir / checkpoint, or mfcc")
    p.add_argument(
        "--manifest",
        required=True,
        metavar="PATH",
        help="clips.jsonl (or its prep folder) or a synth manifest.jsonl",
    )
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="conv block whose output is pooled (1..blocks; default the last)",
    )
    p.add_argument("--window-s", type=float, default=1.0, help="window length (s, default 1)")
    p.add_argument("--hop-s", type=float, default=0.5, help="hop between windows (s, default 0.5)")
    p.add_argument(
        "--pool",
        choices=("max", "avg"),
        default="max",
        help="pooling of a window's map over frequency and time (default max)",
    )
    p.add_argument(
        "--grid",
        default="1x1",
        metavar="FxT",
        help="pool to an F x T grid instead of one vector (L3 used 4x3; default 1x1)",
    )
    p.add_argument(
        "--folds", default="all", help="'all' or a comma list: evaluate on these folds only (>= 3)"
    )
    p.add_argument(
        "--c-grid",
        default=None,
        metavar="LIST",
        help="comma list of SVM C values (default 0.001,0.01,0.1,1,10,100)",
    )
    p.add_argument(
        "--no-standardize", action="store_true", help="do not standardise features before the SVM"
    )
    p.add_argument("--max-iter", type=int, default=10000, help="liblinear iterations per fit")
    p.add_argument("--seed", type=int, default=0, help="random-init and SVM seed (default 0)")
    p.add_argument(
        "--model-kwargs",
        default=None,
        metavar="JSON",
        help='audio tower keywords, e.g. \'{"width": 0.5, "blocks": 3}\'',
    )
    p.add_argument(
        "--frontend",
        default=None,
        metavar="JSON",
        help='front-end overrides, e.g. \'{"sample_rate": 16000, "n_fft": 256}\' or '
        '\'{"kind": "logmel", "n_mels": 64}\' (default: 48 kHz log-spectrogram)',
    )
    p.add_argument(
        "--like",
        default=None,
        metavar="RUN",
        help="random:NAME only: copy the tower and front-end settings of this run",
    )
    p.add_argument(
        "--n-mfcc",
        type=int,
        default=MFCC_RECIPE["n_mfcc"],
        help="mfcc only: number of coefficients (default 20)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="cpu", help="torch device for the features (default cpu)")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="result JSON (default RUN/eval/esc50-DATASET.json for a run, else "
        "evals/esc50-DATASET-MODELTAG.json)",
    )
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="feature cache folder (default OUT_DIR/features)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.set_defaults(func=run_esc50)
