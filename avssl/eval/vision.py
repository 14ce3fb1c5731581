"""Frozen-feature evaluation of vision backbones: ``avssl-eval linear`` and ``avssl-eval knn``
(protocols: docs/evaluation.md), and what every frozen-feature command (``retrieval`` too)
shares: the model, the rows, the features (extracted and cached) and the result JSON.
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/vision.py".
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, augment
from avssl.eval.feature_cache import Features, cached_features
from avssl.eval.image_sets import EvalSet, Sample, default_manifest, load_eval_set
from avssl.eval.loading import CLIP_BACKBONES, LoadedModel, digest, load_model
from avssl.eval.results import default_result_path, safe_name, write_result

FEATURE_VERSION = 1  # bump when the extraction changes, so old caches are not reused
DEFAULT_SIZE = 64
DEFAULT_FRAME_SIZE = 64


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
    return digest(key)


@dataclass(frozen=True)
class FeatureOptions:
    """What ``linear``, ``knn`` and ``retrieval`` share: the model, the rows and the feature
    options (their meaning: ``avssl-eval linear --help``)."""

    model: str
    manifest: Path | None = None
    test_manifest: Path | None = None
    split: str | None = None
    model_kwargs: dict[str, Any] | None = None
    like: str | None = None
    seed: int = 0
    layer: str = "out"
    pool: int = 1
    size: int | None = None
    frame_size: int | None = None
    frames: int = 4
    pixels_size: int = 16
    batch_size: int = 128
    device: str = "cpu"
    cache: Path | None = None
    no_cache: bool = False
    out: Path | None = None


def _feature_spec(opts: FeatureOptions, model: LoadedModel) -> FeatureSpec:
    cfg = model.train_config or {}
    aug = cfg.get("aug") if isinstance(cfg.get("aug"), dict) else {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    assert isinstance(aug, dict) and isinstance(data, dict)
    size = opts.size or int(aug.get("size", DEFAULT_SIZE))
    frame_size = opts.frame_size or int(data.get("frame_size", DEFAULT_FRAME_SIZE))
    mean = tuple(float(x) for x in aug.get("mean", IMAGENET_MEAN))
    std = tuple(float(x) for x in aug.get("std", IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"the run's aug.mean/std are not 3 values: {mean}, {std}")
    layer = "pixels" if model.net is None else opts.layer
    if model.net is None and opts.layer != "out":
        raise ValueError("pixels has no layers; drop --layer")
    return FeatureSpec(layer=layer, pool=opts.pool, size=size, frame_size=frame_size,
                       frames=opts.frames, pixels_size=opts.pixels_size,
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


def _load(opts: FeatureOptions) -> LoadedModel:
    model = load_model(opts.model, model_kwargs=opts.model_kwargs, like=opts.like,
                       seed=opts.seed, pixels_size=opts.pixels_size)  # fmt: skip
    channels = model.info.get("in_channels", 3)
    if channels != 3:
        raise ValueError(
            f"{opts.model}: its first layer takes {channels} input channels (e.g. a "
            "stack-of-differences tower); frozen-feature evaluation feeds RGB images and frames "
            "(3 channels)"
        )
    if opts.like is not None and model.info.get("source") != "random":
        raise ValueError("--like applies to random:BACKBONE only")
    return model


def prepare(
    opts: FeatureOptions, kind: str, check: Callable[[EvalSet], Any] | None = None
) -> Prepared:
    """Load the model and the manifest, run ``check(eval_set)`` (raise on bad input before any
    decoding), and get the features (cache or extraction)."""
    t0 = time.monotonic()
    model = _load(opts)
    ev = load_eval_set(opts.manifest or default_manifest(), test_manifest=opts.test_manifest,
                       split=opts.split)  # fmt: skip
    spec = _feature_spec(opts, model)
    if model.net is not None:
        resolve_layer(model.net, model.backbone, spec.layer)  # fail fast on a bad --layer
    if model.clip and ev.kind == "image":
        raise ValueError(f"{model.backbone} is a clip backbone: it cannot embed single images")
    if check is not None:
        check(ev)
    out = opts.out or default_result_path(kind, ev.name, model.tag, model.run_dir,
                                          model.baseline_of)  # fmt: skip
    cache_dir = None if opts.no_cache else (opts.cache or out.parent / "features")
    path = None
    if cache_dir is not None:
        name = f"{ev.name}-{model.tag}-{spec.layer}-{_cache_key(ev, model, spec, opts.split)}"
        path = cache_dir / safe_name(name + ".npz")
    feats = cached_features(
        path, [s.id for s in ev.samples], ev.labels, [s.split for s in ev.samples],
        lambda: extract_features(ev, model, spec, batch_size=opts.batch_size, device=opts.device),
    )  # fmt: skip
    return Prepared(ev, model, spec, feats, Path(out), t0)


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


def finish(
    prep: Prepared, kind: str, argv: Sequence[str], dataset: dict[str, Any],
    metrics: dict[str, float], extra: dict[str, Any], **labels: Any,
) -> int:  # fmt: skip
    """Write the result (``labels``: ``classes``, ``confusion`` where the command has them) and
    print one line per metric (fractions also as percentages)."""
    result = write_result(prep.out, kind, argv, prep.t0, dataset=dataset, model=prep.model.info,
                          layer=prep.spec.layer, metrics={k: float(v) for k, v in metrics.items()},
                          **labels, per_fold=[], extra=extra)  # fmt: skip
    m, d = result["model"], dataset
    print(f"{kind}: {m.get('spec', m.get('source'))} layer {result['layer']} on "
          f"{d['name']} ({d['num_train']} train / {d['num_test']} test)")  # fmt: skip
    for k, v in result["metrics"].items():
        pct = f"  ({100 * v:.2f}%)" if re.match(r"(accuracy|balanced_|R@|nDCG|mAP)", k) else ""
        print(f"  {k:<20} {v:.4f}{pct}")
    print(f"wrote {prep.out}")
    return 0


def split_rows(ev: EvalSet, **sides: Sequence[str]) -> list[np.ndarray]:
    """The row indices of each side (e.g. ``training=["train"]``), in manifest order; ValueError
    naming the splits present when a side has no row."""
    out = []
    for what, names in sides.items():
        out.append(ev.indices(names))
        if out[-1].size == 0:
            raise ValueError(
                f"no {what} rows: no row of {ev.manifests[0]} has split {','.join(names)} "
                f"(splits present: {', '.join(ev.split_names)})"
            )
    return out


def _train_test(
    ev: EvalSet, train_splits: Sequence[str], test_splits: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices; ValueError when a side is empty, they overlap or a row
    has no class."""
    train, test = split_rows(ev, training=train_splits, test=test_splits)
    if set(train.tolist()) & set(test.tolist()):
        raise ValueError("the training and test splits overlap")
    labels = ev.labels
    if (labels[train] < 0).any() or (labels[test] < 0).any():
        raise ValueError(
            "rows without a class (class_id -1, e.g. multi-label AudioSet rows): classification "
            "needs one class per row (retrieval takes label lists)"
        )
    return train, test


def _classify(
    features: FeatureOptions, kind: str, train_splits: Sequence[str], test_splits: Sequence[str]
) -> tuple[Prepared, np.ndarray, np.ndarray, int]:
    """The features of a classification command, its rows and its number of classes."""
    prep = prepare(features, kind, check=lambda ev: _train_test(ev, train_splits, test_splits))
    train, test = _train_test(prep.ev, train_splits, test_splits)
    y = prep.ev.labels
    num_classes = max(len(prep.ev.classes), int(y[train].max()) + 1, int(y[test].max()) + 1)
    return prep, train, test, num_classes


def _finish_classification(
    prep: Prepared, kind: str, argv: Sequence[str], split_names: tuple[list[str], list[str]],
    rows: tuple[np.ndarray, np.ndarray], pred: np.ndarray, metrics: dict[str, float],
    extra: dict[str, Any], num_classes: int,
) -> int:  # fmt: skip
    from avssl.eval import metrics as M

    (train, test), y = rows, prep.ev.labels
    cm = M.confusion_matrix(pred, y[test], num_classes)
    dataset = dataset_dict(prep, train, test, train_splits=split_names[0],
                           test_splits=split_names[1])  # fmt: skip
    classes = prep.ev.classes + [str(k) for k in range(len(prep.ev.classes), cm.shape[0])]
    return finish(prep, kind, argv, dataset, metrics, extra, classes=classes,
                  confusion=cm.tolist())  # fmt: skip


def run_linear(
    features: FeatureOptions, *, train_splits: list[str], test_splits: list[str],
    c_grid: list[float], val_fraction: float, max_iter: int, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval linear`` (module docstring); writes the result JSON, returns 0."""
    from avssl.eval import metrics as M

    prep, train, test, num_classes = _classify(features, "linear", train_splits, test_splits)
    x, y, seed = prep.features.feats, prep.ev.labels, features.seed
    res = M.logistic_probe(x[train], y[train], x[test], y[test], C_grid=c_grid,
                           val_fraction=val_fraction, seed=seed, max_iter=max_iter)  # fmt: skip
    pred = res["predictions"]
    metrics = {"accuracy": res["accuracy"], "balanced_accuracy": res["balanced_accuracy"],
               "C": res["C"]}  # fmt: skip
    extra = {"features": features_extra(prep), "protocol": "logistic regression (lbfgs, "
             "standardised), C on a stratified held-out part of the training split",
             "val_fraction": val_fraction, "num_val": res["num_val"],
             "C_grid": res["C_grid"], "val_accuracy": res["val_accuracy"],
             "convergence_warnings": res["convergence_warnings"],
             "refit_accuracy": M.accuracy(pred, y[test])}  # fmt: skip
    return _finish_classification(prep, "linear", argv, (train_splits, test_splits),
                                  (train, test), pred, metrics, extra, num_classes)  # fmt: skip


def run_knn(
    features: FeatureOptions, *, train_splits: list[str], test_splits: list[str], k: int,
    temperature: float, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval knn`` (module docstring); writes the result JSON, returns 0."""
    from avssl.eval import metrics as M

    prep, train, test, num_classes = _classify(features, "knn", train_splits, test_splits)
    x, y = prep.features.feats, prep.ev.labels
    t = None if temperature == 0 else temperature
    pred = M.knn_predict(x[train], y[train], x[test], k=k, temperature=t,
                         num_classes=num_classes)  # fmt: skip
    metrics = {"accuracy": M.accuracy(pred, y[test]),
               "balanced_accuracy": M.balanced_accuracy(pred, y[test])}  # fmt: skip
    extra = {"features": features_extra(prep), "k": k, "temperature": t,
             "protocol": "weighted kNN on cosine similarity (Wu et al. 2018)"}  # fmt: skip
    return _finish_classification(prep, "knn", argv, (train_splits, test_splits), (train, test),
                                  pred, metrics, extra, num_classes)  # fmt: skip
