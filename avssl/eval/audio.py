"""``avssl-eval esc50``: audio features + linear SVM over a manifest's folds (ESC-50 protocol;
docs/evaluation.md). Design notes: docs/design/models_tasks_eval.md, "avssl/eval/audio.py".
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avssl.data.manifest import read_manifest, resolve_under
from avssl.eval.feature_cache import cached_features
from avssl.eval.loading import MFCC_RECIPE, LoadedModel, _json_arg, digest
from avssl.eval.loading import load_model as _load_model
from avssl.eval.metrics import (
    DEFAULT_C_GRID,
    balanced_accuracy,
    confusion_matrix,
    linear_svm_folds,
)
from avssl.eval.results import default_result_path, safe_name, write_result
from avssl.models.audio import AudioEncoder

KIND = "esc50"
FEATURE_VERSION = 1  # bump when the feature computation changes (invalidates caches)
SYNTH_FOLDS = 5


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


class _Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.t0 = time.monotonic()
        self.step = max(1, total // 10)

    def __call__(self, done: int) -> None:
        if done % self.step == 0 or done == self.total:
            dt = time.monotonic() - self.t0
            print(f"{self.label}: {done}/{self.total} clips, {dt:.1f} s", file=sys.stderr)


@dataclass(frozen=True)
class _Windows:
    """How a tower's features are taken: block ``layer``, windows and pooling."""

    layer: int | None  # the conv block (None: the last)
    window_s: float
    hop_s: float
    pool: str
    grid: tuple[int, int]

    def samples(self, sr: int) -> tuple[int, int]:
        window, hop = round(self.window_s * sr), round(self.hop_s * sr)
        if window < 1 or hop < 1:
            raise ValueError(f"--window-s / --hop-s too small at {sr} Hz: {window}, {hop}")
        return window, hop


def _compute(
    model: LoadedModel, data: AudioSet, win: _Windows | None, batch_size: int, device: str
) -> np.ndarray:
    """Every clip's feature (the protocol's steps 1-3, or the MFCC baseline's vector)."""
    paths = [resolve_under(data.root, p, where=str(data.manifest)) for p in data.paths]
    progress = _Progress(len(data), f"{KIND} {data.name} features")
    if not isinstance(model.net, AudioEncoder) or win is None:
        sr = MFCC_RECIPE["sample_rate"]
        rows = []
        for i, (p, d) in enumerate(zip(paths, data.durations, strict=True)):
            rows.append(mfcc_features(read_clip(p, sr, d), {"n_mfcc": model.info["n_mfcc"]}))
            progress(i + 1)
        return np.stack(rows)
    sr = model.net.sample_rate
    window, hop = win.samples(sr)
    waves = (read_clip(p, sr, d) for p, d in zip(paths, data.durations, strict=True))
    return clip_features(model.net, waves, layer=int(win.layer or 0), window=window, hop=hop,
                         pool=win.pool, grid=win.grid, batch_size=batch_size, device=device,
                         progress=progress)  # fmt: skip


def _features(
    loaded: LoadedModel, data: AudioSet, asked: _Windows, *, cache_dir: Path, no_cache: bool,
    batch_size: int, device: str,
) -> tuple[np.ndarray, _Windows | None, dict[str, Any]]:  # fmt: skip
    """The clips' features from the cache or computed, the windows used (None: mfcc) and what
    the result's ``extra`` records of them (``asked.layer`` None: the last block)."""
    st = data.manifest.stat()
    key: dict[str, Any] = {"v": FEATURE_VERSION, "manifest": str(data.manifest),
                           "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "root": str(data.root), "fold_rule": data.fold_rule,
                           "model": loaded.fingerprint}  # fmt: skip
    extra: dict[str, Any] = {}
    win = None
    if isinstance(loaded.net, AudioEncoder):
        blocks = loaded.net.net.num_layers
        win = dataclasses.replace(asked, layer=blocks if asked.layer is None else asked.layer)
        if win.layer is None or not 1 <= win.layer <= blocks:
            raise ValueError(f"--layer must be in 1..{blocks}, got {win.layer}")
        window, hop = win.samples(loaded.net.sample_rate)
        grid = list(win.grid)
        extra.update(window_s=win.window_s, hop_s=win.hop_s, pool=win.pool, grid=grid)
        key.update(frontend=loaded.info["frontend"], tower=loaded.info["tower"], layer=win.layer,
                   window=window, hop=hop, pool=win.pool, grid=grid)  # fmt: skip
    name = f"{KIND}-{safe_name(data.name)}-{safe_name(loaded.tag)}-{digest(key)}.npz"
    extra["cache"] = str((cache_dir / name).absolute())
    got = cached_features(None if no_cache else cache_dir / name, data.paths, data.labels,
                          [str(int(x)) for x in data.folds],
                          lambda: _compute(loaded, data, win, batch_size, device))  # fmt: skip
    extra["cache_hit"] = got.hit
    if not got.hit:
        extra["feature_seconds"] = round(got.seconds, 3)
    return got.feats, win, extra


def run_esc50(
    model: str, manifest: str, *, layer: int | None = None, window_s: float = 1.0,
    hop_s: float = 0.5, pool: str = "max", grid: str = "1x1", folds: str = "all",
    c_grid: str | None = None, no_standardize: bool = False, max_iter: int = 10000,
    seed: int = 0, model_kwargs: str | None = None, frontend: str | None = None,
    like: str | None = None, n_mfcc: int = MFCC_RECIPE["n_mfcc"], batch_size: int = 16,
    device: str = "cpu", out: str | None = None, cache: str | None = None,
    no_cache: bool = False, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval esc50`` (module docstring; the arguments are its options); writes the result
    JSON and returns 0."""
    t_start = time.monotonic()
    data = load_audio_set(manifest)
    wanted, grid_ft = _parse_folds(folds), _parse_grid(grid)
    if wanted is not None and (missing := sorted(set(wanted) - set(data.folds.tolist()))):
        raise ValueError(f"--folds {folds}: no clips in fold(s) {missing}")
    loaded = _load_model(model, audio=True, model_kwargs=_json_arg(model_kwargs, "--model-kwargs"),
                         frontend=_json_arg(frontend, "--frontend"), like=like, seed=seed,
                         n_mfcc=n_mfcc)  # fmt: skip
    out_path = (
        Path(out)
        if out
        else default_result_path(KIND, data.name, loaded.tag, loaded.run_dir, loaded.baseline_of)
    )
    asked = _Windows(layer, window_s, hop_s, pool, grid_ft)
    cache_dir = Path(cache) if cache else out_path.parent / "features"
    feats, win, extra = _features(loaded, data, asked, cache_dir=cache_dir, no_cache=no_cache,
                                  batch_size=batch_size, device=device)  # fmt: skip
    if wanted is not None:
        keep = np.isin(data.folds, wanted)
        data, feats = data.subset(keep), feats[keep]
    t_svm = time.monotonic()
    standardize = not no_standardize
    res = linear_svm_folds(feats, data.labels, data.folds, _parse_c_grid(c_grid), standardize,
                           seed, max_iter=max_iter)  # fmt: skip
    pred = res["predictions"]
    extra["svm_seconds"] = round(time.monotonic() - t_svm, 3)
    n_cls, n = len(data.classes), len(data)
    per_fold = []
    for f, acc, c, inner in zip(res["fold_ids"], res["fold_accuracy"], res["chosen_C"],
                                res["inner_accuracy"], strict=True):  # fmt: skip
        n_test = int(np.sum(data.folds == f))
        per_fold.append({"fold": f, "accuracy": acc, "C": c, "num_train": n - n_test,
                         "num_test": n_test, "inner_accuracy": inner})  # fmt: skip
    extra.update(
        feature_dim=int(feats.shape[1]), C_grid=res["C_grid"], standardize=standardize,
        convergence_warnings=res["convergence_warnings"], device=device,
        fold_rule=data.fold_rule, seed=seed,
    )  # fmt: skip
    # cross-validation: every clip is tested once; num_train is the mean training size
    dataset = {"name": data.name, "manifest": str(data.manifest), "root": str(data.root),
               "num_train": round(float(np.mean([r["num_train"] for r in per_fold]))),
               "num_test": n, "num_clips": n, "num_classes": n_cls, "folds": res["fold_ids"],
               "fold_rule": data.fold_rule}  # fmt: skip
    metrics = {"accuracy": res["mean"], "accuracy_std": res["std"],
               "balanced_accuracy": balanced_accuracy(pred, data.labels, n_cls),
               "chance": 1.0 / n_cls}  # fmt: skip
    result = write_result(
        out_path, KIND, argv, t_start, dataset=dataset, model=loaded.info,
        layer=None if win is None else win.layer, metrics=metrics, classes=data.classes,
        confusion=confusion_matrix(pred, data.labels, n_cls).tolist(), per_fold=per_fold,
        extra=extra,
    )  # fmt: skip
    print(f"{KIND} {data.name} ({n} clips, {len(res['fold_ids'])} folds, {n_cls} classes), "
          f"model {model}, layer {result['layer']}")  # fmt: skip
    print(f"accuracy           {metrics['accuracy']:.4f} +- {metrics['accuracy_std']:.4f}")
    print(f"balanced_accuracy  {metrics['balanced_accuracy']:.4f}")
    print(f"chance             {metrics['chance']:.4f}")
    print("fold accuracy      " + " ".join(f"{a:.4f}" for a in res["fold_accuracy"]))
    print("chosen C           " + " ".join(f"{c:g}" for c in res["chosen_C"]))
    print(f"wrote {out_path} ({result['seconds']:.1f} s)")
    return 0
