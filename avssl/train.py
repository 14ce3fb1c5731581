"""``avssl-train``'s library side: the run of a pretext task on the shared engine (:func:`build`,
:func:`train`; configuration: :mod:`avssl.train_config`).
Design notes: docs/design/models_tasks_eval.md, "avssl/train.py".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl import dist, engine
from avssl.checkpoints import load_checkpoint
from avssl.data.dataset import (
    HELDOUT_PREFIX,
    FrameReader,
    ManifestDataset,
    heldout_rows,
    load_probe_infos,
    split_by_video,
)
from avssl.data.manifest import prep_hint, read_manifest
from avssl.engine import EXIT_PREEMPTED  # avssl-train's exit status after a stop signal (docs)
from avssl.tasks import TASKS
from avssl.tasks.av import positives
from avssl.train_config import TrainConfig


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


def heldout_manifest(cfg: TrainConfig) -> str | None:
    """``data.val_manifest``, else for a pair task on the built-in set its ``avc_test.jsonl``."""
    if cfg.data.val_manifest or cfg.data.manifest or not TASKS[cfg.task].pair:
        return cfg.data.val_manifest
    return str(default_manifest(cfg.task).parent / "avc_test.jsonl")


def _rows(cfg: TrainConfig) -> tuple[list[dict], list[dict], Path, dict]:
    manifest = Path(cfg.data.manifest) if cfg.data.manifest else default_manifest(cfg.task)
    val_manifest = heldout_manifest(cfg)
    if not manifest.is_file():
        # the prep command that writes it, when a default or a shipped config names it
        hint = prep_hint(manifest)
        if not hint:
            hint = "; check data.manifest"
        elif TASKS[cfg.task].manifest == "images.jsonl":
            hint += ", or set data.manifest to an image manifest or any video manifest"
        raise FileNotFoundError(f"{manifest}: manifest not found{hint}")
    card = _card(manifest)[1]
    root = Path(cfg.data.root or card.get("root") or manifest.parent)
    rows = read_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    images = "path" in rows[0]  # an image manifest (avssl-prep digits | images)
    heldout_root = None
    if val_manifest:
        train_rows, val_rows = rows, read_manifest(val_manifest)
        val_root = Path(_card(Path(val_manifest))[1].get("root") or Path(val_manifest).parent)
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
    if TASKS[cfg.task].pair:
        train_rows, val_rows = positives(train_rows), positives(val_rows)
    if cfg.data.max_rows:
        train_rows = train_rows[: cfg.data.max_rows]
    if cfg.data.max_val_rows and len(val_rows) > cfg.data.max_val_rows:
        keep = np.linspace(0, len(val_rows) - 1, cfg.data.max_val_rows).round().astype(int)
        val_rows = [val_rows[i] for i in keep]
    where = {"manifest": str(manifest), "val_manifest": val_manifest, "heldout_root": heldout_root}
    return train_rows, val_rows, root, where


def _card(manifest: Path) -> tuple[Path, dict[str, Any]]:
    """The prep.json of a manifest (beside it, or one folder up: ucf101's OUT/splitK/x.jsonl) and
    its contents ({} when there is none)."""
    path = manifest.parent / "prep.json"
    path = path if path.is_file() else manifest.parent.parent / "prep.json"
    return path, json.loads(path.read_text()) if path.is_file() else {}


def _reader(cfg: TrainConfig, root: Path, where: dict[str, Any]) -> FrameReader:
    """The run's frame (and sound) reader: probes of the prep, the held-out set's own root."""
    card_path, card = _card(Path(where["manifest"]))
    infos = load_probe_infos(card_path.parent / "probe.jsonl")
    if where["heldout_root"] is not None:
        held_card = _card(Path(where["val_manifest"]))[0]
        infos.update(load_probe_infos(held_card.parent / "probe.jsonl", HELDOUT_PREFIX))
    cache_dir = card.get("cache_dir")
    if cache_dir and not Path(cache_dir).is_dir():  # a moved dataset: the card's folder
        cache_dir = str(card_path.parent)
    sample_rate = 0
    if TASKS[cfg.task].pair:  # the sound the audio front end wants
        from avssl.models.audio import build_frontend

        sample_rate = int(build_frontend(cfg.audio.frontend).sample_rate)
        cache_rate = card.get("config", {}).get("cache_sample_rate")
        if cache_rate != sample_rate and "cache_audio" in read_manifest(where["manifest"])[0]:
            raise ValueError(
                f"{where['manifest']}: the pair cache holds sound at {cache_rate} Hz but the "
                f"audio front end wants {sample_rate} Hz: set audio.frontend.sample_rate="
                f"{cache_rate}"
            )
    size = (cfg.data.frame_size, cfg.data.frame_size)
    return FrameReader(
        root, size, infos=infos, cache_mb=cfg.data.cache_mb, sample_rate=sample_rate,
        cache_dir=cache_dir, heldout_root=where["heldout_root"],
    )  # fmt: skip


def build(cfg: TrainConfig, env: dist.DistEnv) -> dict[str, Any]:
    """The engine's ``state`` of a run: rows, the task's examples and model, optimizer, loaders."""
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; available: {sorted(TASKS)}")
    task = TASKS[cfg.task]
    if cfg.data.time_reverse and task.reverse_row is None:
        raise ValueError(f"data.time_reverse: {cfg.task} changes its label when played backwards")
    if cfg.data.shuffle_labels and not task.fixed_targets:
        raise ValueError(f"data.shuffle_labels: {cfg.task} makes its targets per sample")
    train_rows, val_rows, root, where = _rows(cfg)
    reader = _reader(cfg, root, where)
    prep = task.prepare(cfg, train_rows, val_rows, reader)
    torch.manual_seed(cfg.seed)
    model = task.build_model(cfg.backbone, **prep.model_kwargs, **cfg.model.kwargs(cfg.backbone))
    model = model.to(env.device)
    if cfg.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ds = ManifestDataset(
        prep.train_rows,
        prep.make_train,
        reader,
        seed=cfg.seed,
        shuffle_labels=cfg.data.shuffle_labels,
        reverse_row=task.reverse_row,
        time_reverse=cfg.data.time_reverse,
    )
    val = ManifestDataset(prep.val_rows, prep.make_val, reader, seed=cfg.seed + 1)
    steps = cfg.optim.steps_per_epoch or max(1, len(ds) // (cfg.optim.batch_size * env.world_size))
    return {
        "task": task,
        "model": model,
        "opt": engine.make_optimizer(model.parameters(), cfg.optim),
        "train": ds,
        "val": val,
        "train_loader": _loader(ds, cfg, env),
        "val_loader": _loader(val, cfg, env),
        "steps_per_epoch": steps,
        "views": task.views,
        "seed_torch": False,
        "sums": np.zeros(3),
        "where": where,
        "reader": reader,
        "num_classes": prep.num_classes,  # of the held-out per-class accuracy (0: none)
    }


def _loader(ds: ManifestDataset, cfg: TrainConfig, env: dist.DistEnv) -> engine.EpochLoader:
    d = cfg.data
    return engine.EpochLoader(
        ds, cfg.optim.batch_size, env.device, workers=d.num_workers,
        prefetch_factor=d.prefetch_factor, pin_memory=d.pin_memory,
    )  # fmt: skip


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
        x = batch["frames"].to(env.device)
        frames = engine.augment_frames(x, cfg.aug, state["views"], cfg.seed, None)
        target = batch["target"].to(env.device)
        with engine.autocast(cfg.run, env):
            loss, logs = model(engine.model_inputs(batch, frames, target, env))
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


def save_checkpoint(
    path: Path, state: dict[str, Any], cfg: TrainConfig, epoch: int, step_in_epoch: int
) -> None:
    """Tensors and primitives only (loads with ``weights_only=True``), written atomically."""
    from avssl.config import config_to_dict

    raw = engine.unwrap_model(state["model"])
    encoder = getattr(raw, "encoder", raw)  # a FrameEncoder / AVNet knows its backbone kwargs
    backbone_kwargs = getattr(encoder, "backbone_kwargs", None) or cfg.model.kwargs(cfg.backbone)
    extra: dict[str, Any] = {
        "config": json.dumps(config_to_dict(cfg)),
        "backbone": cfg.backbone,
        "backbone_kwargs": engine.kwargs_json(backbone_kwargs),
        "task": cfg.task,
    }
    if hasattr(raw, "audio_net"):  # the audio tower, as avssl-eval esc50 | retrieval load it
        extra["audio_backbone"] = raw.audio_backbone_name
        extra["audio_backbone_kwargs"] = json.dumps(raw.audio_kwargs)
        extra["audio_frontend"] = json.dumps(raw.frontend_config)
    engine.write_checkpoint(path, state, epoch, step_in_epoch, **extra)


def train(cfg: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns the last evaluation metrics.

    A stop signal (:data:`avssl.engine.STOP_SIGNALS`) ends the run after the current step with a
    checkpoint on every rank's agreement; the metrics are then ``{"stopped_at_step",
    "preempted"}`` (the signal's name) and avssl-train exits with :data:`EXIT_PREEMPTED`."""
    with engine.stop_signals() as caught:
        env = dist.init_distributed(cfg.run.device)
        try:
            return _train(cfg, resume, caught, env)
        finally:
            dist.cleanup()


def _train(
    cfg: TrainConfig, resume: bool, caught: dict[str, str | None], env: dist.DistEnv
) -> dict[str, Any]:
    run_dir = Path(cfg.run.out or f"runs/{cfg.task}")
    ckpt_path = run_dir / "checkpoint.pt"
    state = build(cfg, env)
    start = (0, 0)
    engine.open_run(run_dir, cfg, env)
    if resume and ckpt_path.is_file():
        start = engine.resume_from(load_checkpoint(ckpt_path), ckpt_path, state)
    state["model"] = engine.wrap_model(state["model"], cfg.run, env)
    steps = state["steps_per_epoch"]
    log = engine.Logger(run_dir, cfg, env, start[0] * steps + start[1])
    stop = engine.Stopper(
        cfg.run, env, steps, caught, lambda e, s: save_checkpoint(ckpt_path, state, cfg, e, s)
    )
    metrics: dict[str, Any] = {}

    def end_epoch(epoch: int, step: int) -> tuple[dict[str, Any], str]:
        metrics.clear()
        metrics.update({"step": step - 1, "epoch": epoch, **evaluate(state, cfg, env)})
        line = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
        )
        return dict(metrics), line

    stopped = engine.fit(state, cfg, env, start, log, stop, end_epoch)
    if stopped is None:
        return metrics
    if not stop.signal:  # the time limit: evaluate what there is
        epoch = (stopped - 1) // steps
        metrics = {"step": stopped - 1, "epoch": epoch, **evaluate(state, cfg, env)}
        log.write(metrics)
        return metrics
    preempted = caught["signal"] or "signal on another rank"  # the checkpoint is written
    if env.is_main:
        print(
            f"\n{preempted}: checkpoint of step {stopped} in {ckpt_path}; continue with "
            f"--resume (exit status {EXIT_PREEMPTED})",
            file=sys.stderr,
        )
    return {"stopped_at_step": stopped, "preempted": preempted}


def load_train_config(
    task: str, config_path: str | None, overrides: list[str], out: str | None
) -> TrainConfig:
    """The run's configuration: TrainConfig < the task's defaults < the file < ``--set``."""
    from avssl.config import load_config

    cfg = load_config(
        TrainConfig, config_path, [f"task={task}", *overrides], base=TASKS[task].defaults
    )
    if out is not None:
        cfg.run.out = out
    return cfg
