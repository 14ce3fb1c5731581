"""``avssl-eval finetune``: fine-tune a backbone for clip classification (the UCF-101 protocol of
the temporal-order papers; docs/evaluation.md). The final network is evaluated once; a stopped
run writes no result (``--resume`` finishes it).
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/finetune.py".
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avssl import dist
from avssl.checkpoints import load_checkpoint
from avssl.data.dataset import ManifestDataset, load_probe_infos
from avssl.data.transforms import apply_params
from avssl.engine import (
    EpochLoader,
    Logger,
    Stopper,
    autocast,
    fit,
    kwargs_json,
    make_optimizer,
    open_run,
    resume_from,
    stop_signals,
    unwrap_model,
    wrap_model,
    write_checkpoint,
)
from avssl.eval.clips import average_softmax, crop_boxes, crop_params, eval_starts
from avssl.eval.finetune_data import (
    ClipExamples,
    ClipReader,
    FinetuneData,
    load_data,
)
from avssl.eval.finetune_task import FinetuneConfig, VideoClassifier, input_mode
from avssl.eval.image_sets import default_manifest
from avssl.eval.loading import ModelInfo, load_encoder, model_tag, run_dir_of
from avssl.eval.metrics import accuracy, balanced_accuracy, confusion_matrix
from avssl.eval.results import BASELINE_DIR, write_result


def _raw(model: nn.Module) -> VideoClassifier:  # the module under DDP / torch.compile
    m = unwrap_model(model)
    assert isinstance(m, VideoClassifier)
    return m


def _config_json(cfg: FinetuneConfig) -> str:
    from avssl.config import config_to_dict

    return json.dumps(config_to_dict(cfg), sort_keys=True)


def _comparable(config_json: str) -> dict[str, Any]:
    d = json.loads(config_json)
    return {k: v for k, v in d.items() if k != "run"}  # run options may change on resume


def save_checkpoint(path: Path, state: dict[str, Any], epoch: int, step_in_epoch: int) -> None:
    """Model, optimizer, position and epoch sums; tensors and primitives only, atomic."""
    info: ModelInfo = state["info"]
    write_checkpoint(
        path, state, epoch, step_in_epoch, epoch_sums=[float(v) for v in state["sums"]],
        config=state["config_json"], backbone=info.backbone,
        backbone_kwargs=kwargs_json(info.kwargs), task="finetune",
        source_model=json.dumps(info.to_dict()), classes=json.dumps(state["classes"]),
    )  # fmt: skip


def _resume(ckpt_path: Path, state: dict[str, Any], info: ModelInfo) -> tuple[int, int]:
    """Continue from a fine-tuning checkpoint of the same settings and source model."""
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
    start = resume_from(ck, ckpt_path, state)
    state["sums"] = np.array(ck["epoch_sums"], dtype=np.float64)
    return start


@torch.no_grad()
def evaluate(
    state: dict[str, Any], cfg: FinetuneConfig, env: dist.DistEnv
) -> tuple[np.ndarray, np.ndarray]:
    """``(video_probs, centre_logits)``, each ``(V, C)`` float64 over all test videos: the
    averaged softmax of every clip and crop, and the logits of the centre clip's centre crop."""
    model, test = _raw(state["model"]), state["test"]
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
            clips = apply_params(x, crop_params(b * kk, h, w, box), cfg.aug)
            with autocast(cfg.run, env):
                per_crop.append(model.classify(clips).float().view(b, kk, c))
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
    """The engine's ``state``: the classifier, per-group learning rates, clips, loaders."""
    from avssl.models.backbones import feature_dim_of

    mode, length = input_mode(info, cfg)
    torch.manual_seed(cfg.seed)
    frozen = cfg.head.backbone_lr_mult == 0
    model = VideoClassifier(
        net, feature_dim_of(net), data.num_classes, mode=mode, dropout=cfg.head.dropout,
        frozen=frozen,
    ).to(env.device)  # fmt: skip
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = [{"params": list(model.head.parameters()), "lr_mult": 1.0}]
    if not frozen:
        groups.insert(
            0, {"params": list(model.net.parameters()), "lr_mult": cfg.head.backbone_lr_mult}
        )
    hw = (cfg.data.frame_size, cfg.data.frame_width or cfg.data.frame_size)
    readers = [
        ClipReader(root, hw, infos=load_probe_infos(probe), cache_mb=cfg.data.cache_mb)
        for root, probe in ((data.train_root, data.train_probe), (data.test_root, data.test_probe))
    ]
    examples = ClipExamples(length, cfg.clip.stride, cfg.eval.num_clips)
    train = ManifestDataset(data.train, examples.train, readers[0], seed=cfg.seed)
    test = ManifestDataset(data.test, examples.test, readers[1], seed=cfg.seed + 1)
    workers = cfg.data.num_workers
    o, ranks = cfg.optim, env.world_size
    return {
        "model": model,
        "opt": make_optimizer(groups, o),
        "info": info,
        "mode": mode,
        "clip_length": length,
        "train": train,
        "test": test,
        "train_loader": EpochLoader(train, o.batch_size, env.device, workers=workers),
        "test_loader": EpochLoader(test, cfg.eval.batch_size, env.device, workers=workers),
        "steps_per_epoch": o.steps_per_epoch or max(1, len(train) // (o.batch_size * ranks)),
        "views": False,
        "seed_torch": True,  # dropout masks from (seed, epoch, step): resumes exactly
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
    or None when training stopped early (a stop signal on any rank, ``run.max_minutes``) with a
    checkpoint to ``--resume`` from, and on the other ranks.
    """
    cfg.validate()
    with stop_signals() as caught:
        env = dist.init_distributed(cfg.run.device)
        try:
            return _finetune(cfg, encoder[0], encoder[1], data, out_dir, env, resume, caught)
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
    caught: dict[str, str | None],
) -> dict[str, Any] | None:
    t_start = time.monotonic()
    ckpt_path = out_dir / "checkpoint.pt"
    state = _build(cfg, data, net, info, env)
    steps = state["steps_per_epoch"]
    start = _resume(ckpt_path, state, info) if resume and ckpt_path.is_file() else (0, 0)
    open_run(out_dir, cfg, env)
    state["model"] = wrap_model(state["model"], cfg.run, env)
    log = Logger(out_dir, cfg, env, start[0] * steps + start[1])
    stop = Stopper(
        cfg.run, env, steps, caught, lambda e, s: save_checkpoint(ckpt_path, state, e, s)
    )
    last: dict[str, float] = {}

    def end_epoch(epoch: int, step: int) -> tuple[dict[str, Any], str]:
        loss_sum, correct, n = state["sums"]
        last.update(train_loss=loss_sum / max(n, 1), train_acc=correct / max(n, 1))
        record = {"step": step - 1, "epoch": epoch, **{k: round(v, 6) for k, v in last.items()}}
        return record, f"train loss {last['train_loss']:.4f} acc {last['train_acc']:.4f}"

    stopped = fit(state, cfg, env, start, log, stop, end_epoch)
    if stopped is not None:
        dist.print0(
            f"\nstopped at step {stopped} with a checkpoint in {out_dir}; continue with --resume"
        )
        return None
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
    log.write({"step": cfg.optim.epochs * steps, "test": True,
               **{k: round(v, 6) for k, v in metrics.items()}})  # fmt: skip
    timing = {"train_seconds": round(train_s, 2), "eval_seconds": round(eval_s, 2)}
    return {
        "metrics": metrics,
        "confusion": confusion_matrix(video_pred, y, data.num_classes).tolist(),
        "model": state["info"].to_dict(),
        "extra": {**_extra(cfg, state, env, steps, timing, out_dir), **data.notes},
    }


def _extra(
    cfg: FinetuneConfig, state: dict[str, Any], env: dist.DistEnv, steps: int,
    timing: dict[str, float], out_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """The result's ``extra``: how the clips entered, the schedule, where and how long."""
    return {
        "input": state["mode"],
        "clip_length": state["clip_length"],
        "clip_stride": cfg.clip.stride,
        "steps": cfg.optim.epochs * steps,
        "steps_per_epoch": steps,
        "world_size": env.world_size,
        "device": str(env.device),
        **timing,
        "out_dir": str(out_dir),
        "protocol": (
            f"clip_acc: centre clip, centre crop; video_acc: softmax averaged over "
            f"{cfg.eval.num_clips} clips x {cfg.eval.num_crops} crops "
            f"({cfg.eval.crop_fraction:g} of the short side); final network, no selection"
        ),
        "config": json.loads(state["config_json"]),
    }


def default_paths(info: ModelInfo, dataset: str) -> tuple[Path, Path]:
    """``(work dir, result JSON)``: ``RUN_DIR/eval/finetune-<dataset>{/,.json}`` for a run
    directory, ``RUN_DIR/eval/random/finetune-<dataset>{/,.json}`` for its random-init baseline
    (``random:RUN``, ``--like RUN``), ``evals/finetune-<dataset>-<modeltag>{/,.json}`` otherwise."""
    baseline_of = run_dir_of(info.like) if info.source == "random" else None
    if info.source == "run":
        base = Path(info.spec) / "eval" / f"finetune-{dataset}"
    elif baseline_of is not None:
        base = baseline_of / "eval" / BASELINE_DIR / f"finetune-{dataset}"
    else:
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_tag(info))
        base = Path("evals") / f"finetune-{dataset}-{tag}"
    return base, base.with_name(base.name + ".json")


def run_finetune(
    model: str,
    manifest: Path | None = None,
    test: Path | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
    out: Path | None = None,
    result: Path | None = None,
    resume: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    like: str | None = None,
    argv: list[str] | None = None,
) -> int:
    """``avssl-eval finetune``: fine-tune ``model`` on ``manifest`` (default: the built-in set's),
    evaluate it on ``test`` (default: the manifest's test split), write the result JSON
    (``result``, default beside the work directory ``out``: :func:`default_paths`)."""
    from avssl.config import load_config

    t0 = time.monotonic()
    cfg = load_config(FinetuneConfig, config, overrides or [])
    cfg.validate()
    path = manifest or default_manifest()
    if manifest is None and not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run 'avssl-prep synth' or give --manifest")
    data = load_data(cfg, path, test)
    net, info = load_encoder(model, model_kwargs=model_kwargs, like=like, seed=cfg.seed)
    work, result_path = default_paths(info, data.name)
    if given := out or cfg.run.out:
        work, result_path = Path(given), Path(given) / f"finetune-{data.name}.json"
    cfg.run.out = str(work)
    res = finetune(cfg, (net, info), data, work, resume=resume)
    if res is None:
        return 0
    own_split = data.test_manifest is None
    dataset = {
        "name": data.name,
        "manifest": str(data.manifest),
        "test_manifest": None if own_split else str(data.test_manifest),
        "num_train": len(data.train),
        "num_test": len(data.test),
        "num_classes": data.num_classes,
        "train_splits": cfg.data.train_splits if own_split else None,
        "test_split": cfg.data.test_split if own_split else None,
    }
    # layer "out": the backbone's output feature, fine-tuned with everything below it
    result_path = result or result_path
    written = write_result(
        result_path,
        "finetune",
        argv or ["finetune", *sys.argv[1:]],
        t0,
        dataset=dataset,
        model=res["model"],
        layer="out",
        metrics=res["metrics"],
        classes=data.classes,
        confusion=res["confusion"],
        per_fold=[],
        extra=res["extra"],
    )
    print(
        f"finetune {model} on {data.name}: {len(data.train)} train / {len(data.test)} "
        f"test videos, {data.num_classes} classes ({written['seconds']:.0f} s)"
    )
    for k, v in res["metrics"].items():
        print(f"  {k:20s} {v:.4f}")
    print(f"wrote {result_path} (work directory {work})")
    return 0
