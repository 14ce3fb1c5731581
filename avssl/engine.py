"""The one training engine: every pretext task (:mod:`avssl.train`) and fine-tuning
(:mod:`avssl.eval.finetune`) run through it; every random draw derives from ``(seed, epoch, step)``.
``state`` (built by the caller): :func:`train_one_epoch`.
Design notes: docs/design/models_tasks_eval.md, "avssl/engine.py".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avssl import dist
from avssl.data.transforms import AugmentConfig, augment
from avssl.models.backbones import unwrap_model

# Exit status of avssl-train stopped by a stop signal after writing its checkpoint: "preempted,
# resume me with --resume" (sysexits.h EX_TEMPFAIL), distinct from 0 (finished, or stopped by
# run.max_minutes after its final evaluation), 1 (an error) and 2 (bad arguments).
EXIT_PREEMPTED = 75
# The signals that make a run checkpoint at the end of the current step and stop: SIGTERM (a
# scheduler's kill, SLURM preemption, torchrun's shutdown) and SIGUSR1 (SLURM's advance warning,
# sbatch --signal=USR1@120).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)
TIMING_KEYS = ("samples_per_s", "data_wait")  # metrics.jsonl fields that vary run to run


def lr_at(step: int, total: int, cfg: Any) -> float:
    """The learning rate at ``step`` of ``total`` (``cfg`` an ``OptimConfig``; a pure function:
    resumes exactly)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return float(cfg.lr * (step + 1) / cfg.warmup_steps)
    if cfg.schedule == "step":
        return float(cfg.lr * (0.1 if step >= cfg.step_at * total else 1.0))
    if cfg.schedule == "cosine":
        return float(cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1))))
    return float(cfg.lr)


def make_optimizer(params: Any, cfg: Any) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW per ``cfg`` (an ``OptimConfig``) over parameters or groups (a
    group may carry ``lr_mult``: its share of the scheduled rate)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore the stop signals: a scheduler signals every process of the job
    (torchrun signals each worker's whole process group), and a worker killed by one would fail
    the main process's next batch before it could write its checkpoint. The main process decides
    when to stop; its workers end when it does. They start with the signals blocked (see
    :meth:`EpochLoader.batches`), so one that comes while a worker imports waits and is dropped
    here."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class EpochLoader:
    """One ``DataLoader`` for the whole run: its workers (``workers``) start once and keep their
    decoded-video caches from epoch to epoch. ``batches(epoch, indices)`` iterates the batches of
    those dataset rows; the keys ``(epoch, index)`` travel to the workers, so the random stream
    of every sample is fixed by (seed, epoch, index) whatever the worker count. ``pin_memory``
    "auto": page-locked batches when ``device`` is CUDA."""

    def __init__(
        self,
        ds: Any,
        batch_size: int,
        device: torch.device | None = None,
        *,
        workers: int = 0,
        prefetch_factor: int = 2,
        pin_memory: str = "auto",
    ) -> None:
        self.keys: list[tuple[int, int]] = []
        pin = pin_memory == "on" or (
            pin_memory == "auto" and device is not None and device.type == "cuda"
        )
        self.loader = torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size,
            sampler=self.keys,  # read afresh by every iter(): the current epoch's keys
            num_workers=workers,
            drop_last=False,
            persistent_workers=workers > 0,
            prefetch_factor=prefetch_factor if workers else None,
            pin_memory=pin and torch.cuda.is_available(),
            multiprocessing_context="spawn" if workers else None,
            worker_init_fn=_ignore_stop_signals if workers else None,
        )

    def batches(self, epoch: int, indices: list[int]) -> Any:
        self.keys[:] = [(epoch, i) for i in indices]
        if not self.loader.num_workers or not hasattr(signal, "pthread_sigmask"):
            return iter(self.loader)
        # the workers (started by the first iter) inherit this mask: a stop signal stays
        # pending until they ignore it, and here until the mask is restored
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return iter(self.loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def epoch_indices(
    n: int, epoch: int, seed: int, env: dist.DistEnv, steps: int, bs: int
) -> list[int]:
    """This rank's sample indices for ``epoch``: a permutation seeded by (seed, epoch), cycled to
    ``steps`` full batches per rank, rank r taking every world-size-th batch slice."""
    perm = np.random.default_rng([seed, epoch, 17]).permutation(n)
    need = steps * bs * env.world_size
    reps = int(math.ceil(need / max(n, 1)))
    full = np.concatenate([np.roll(perm, k * 7) for k in range(reps)])[:need]
    per = full.reshape(steps, env.world_size, bs)[:, env.rank, :]
    return per.reshape(-1).tolist()


def augment_frames(
    x: torch.Tensor, aug: AugmentConfig, views: bool, seed: int, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`augment` of ``(B, T, 3, H, W)`` frames (``generator`` None: the evaluation crop).
    With ``views`` the T frames are augmented as B * T one-frame clips, each its own crop, flip
    and jitter; held out, they get the same, from a fixed seed (``seed + 1``: identical views
    would make SimCLR's and Exemplar's held-out accuracy trivial)."""
    if not views:
        return augment(x, aug, train=generator is not None, generator=generator)
    b, t = x.shape[:2]
    if generator is None:
        generator = torch.Generator().manual_seed(seed + 1)
    out = augment(x.flatten(0, 1)[:, None], aug, train=True, generator=generator)
    return out.view(b, t, *out.shape[2:])


def model_inputs(
    batch: dict[str, torch.Tensor], frames: torch.Tensor, target: torch.Tensor, env: dist.DistEnv
) -> dict[str, torch.Tensor]:
    """The model's batch: augmented frames, target, and every other tensor of the examples (the
    sound of the pair tasks, the patch positions and mask draws of the image tasks, ...)."""
    out = {"frames": frames, "target": target}
    for key, value in batch.items():
        if key not in out and isinstance(value, torch.Tensor):
            out[key] = value.to(env.device, non_blocking=True)
    return out


def autocast(run: Any, env: dist.DistEnv) -> Any:
    """bf16 autocast on CUDA when ``run.amp``; nothing on the CPU."""
    if env.device.type == "cuda" and run.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    state: dict[str, Any],
    cfg: Any,
    env: dist.DistEnv,
    epoch: int,
    start_step: int,
    log: Any,
    stop: Any,
) -> int:
    """Train from ``start_step`` to the end of ``epoch``; returns the global step reached.

    ``state`` holds ``model``, ``opt``, ``train`` (the dataset), ``train_loader`` (an
    :class:`EpochLoader`), ``steps_per_epoch``, ``views``, ``seed_torch`` and ``sums`` (this epoch's
    loss x samples, hits, samples on this rank).
    """
    model, opt, ds = state["model"], state["opt"], state["train"]
    steps, bs = state["steps_per_epoch"], cfg.optim.batch_size
    total = steps * cfg.optim.epochs
    idx = epoch_indices(len(ds), epoch, cfg.seed, env, steps, bs)[start_step * bs :]
    model.train()
    step = epoch * steps + start_step
    batches = state["train_loader"].batches(epoch, idx)
    while True:
        t_ask = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - t_ask  # blocked on the loader: the input pipeline's share
        if batch is None:
            break
        g = torch.Generator().manual_seed(hash((cfg.seed, epoch, step, env.rank)) % 2**62)
        if state["seed_torch"]:  # dropout masks from (seed, epoch, step) too
            torch.manual_seed(hash((cfg.seed, epoch, step, env.rank, 1)) % 2**62)
        x = batch["frames"].to(env.device, non_blocking=True)
        frames = augment_frames(x, cfg.aug, state["views"], cfg.seed, g)
        target = batch["target"].to(env.device)
        lr = lr_at(step, total, cfg.optim)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        with autocast(cfg.run, env):
            loss, logs = model(model_inputs(batch, frames, target, env))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; stopping")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        vals = {"loss": loss.item()}
        if "logits" in logs:  # a task with classes (MAE has none): a model may bring its targets
            hits = logs["logits"].argmax(1) == logs.get("target", target)
            vals["acc"] = hits.float().mean().item()
            state["sums"] += [vals["loss"] * len(target), float(hits.sum()), len(target)]
        vals["lr"] = lr
        vals.update({k: float(v) for k, v in logs.get("scalars", {}).items()})  # multi-task
        log.step(step, total, vals, len(target) * env.world_size, waited)
        step += 1
        if stop(step, epoch):
            break
    return step


@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, str | None]]:
    """Catch :data:`STOP_SIGNALS` while the block runs: ``caught["signal"]`` names the first.
    Installed before the data loads, so a signal that comes then still stops at step one."""
    caught: dict[str, str | None] = {"signal": None}

    def on_stop_signal(signum: int, _frame: Any) -> None:
        caught["signal"] = caught["signal"] or signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_stop_signal) for s in STOP_SIGNALS}
    try:
        yield caught
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)


class Stopper:
    """After every step: checkpoint when due (``save(epoch, step_in_epoch)``, rank 0) and say
    whether to stop. A stop signal or the time limit (``run.max_minutes``) on any rank stops
    every rank after the same step (an all-reduced decision: a rank that stopped alone would
    leave the others hanging in the next all-reduce). ``run.crash_at_step``: SIGKILL right after
    that step's checkpoint (drills of --resume)."""

    def __init__(
        self,
        run: Any,
        env: dist.DistEnv,
        steps: int,
        caught: dict[str, str | None],
        save: Callable[[int, int], None],
    ) -> None:
        self.run, self.env, self.steps, self.caught, self.save = run, env, steps, caught, save
        self.t0 = time.monotonic()
        self.signal = False  # stopped by a signal (on some rank), not by the time limit

    def __call__(self, step: int, epoch: int) -> bool:
        in_epoch = step - epoch * self.steps
        limit = self.run.max_minutes
        over = limit is not None and time.monotonic() - self.t0 > 60 * limit
        flags = torch.tensor([self.caught["signal"] is not None, over], dtype=torch.int32)
        sig, over = (bool(v) for v in dist.all_reduce_max(flags.to(self.env.device)).tolist())
        self.signal = sig
        every = self.run.ckpt_every_steps
        if sig or over or (every and in_epoch % every == 0 and in_epoch < self.steps):
            if self.env.is_main:
                self.save(epoch, in_epoch)
        if self.run.crash_at_step is not None and step == self.run.crash_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return sig or over


def fit(
    state: dict[str, Any],
    cfg: Any,
    env: dist.DistEnv,
    start: tuple[int, int],
    log: Any,
    stop: Stopper,
    end_epoch: Callable[[int, int], tuple[dict[str, Any], str]],
) -> int | None:
    """Train from ``start`` (epoch, step in epoch) to the end. After every whole epoch,
    ``end_epoch(epoch, step)`` gives the record to log and the line to print, and rank 0 writes
    the checkpoint of the next epoch's start. Returns None when done, or the global step where a
    stop signal or the time limit stopped it (after the checkpoint; a signal: every rank waits
    until rank 0 has written it)."""
    start_epoch, start_step = start
    steps = state["steps_per_epoch"]
    for epoch in range(start_epoch, cfg.optim.epochs):
        step = train_one_epoch(state, cfg, env, epoch, start_step, log, stop)
        start_step = 0
        if step < (epoch + 1) * steps:  # stopped early
            if stop.signal:  # torchrun stops the other workers as soon as one exits with a
                dist.barrier()  # failure status: no rank leaves before the checkpoint is written
            return step
        record, line = end_epoch(epoch, step)
        state["sums"] = np.zeros(3)
        log.write(record)
        if env.is_main:
            stop.save(epoch + 1, 0)
            print(f"\nepoch {epoch + 1}/{cfg.optim.epochs}: {line}", file=sys.stderr)
    return None


def open_run(run_dir: Path, cfg: Any, env: dist.DistEnv) -> None:
    """Rank 0: remove the temporary files a kill mid-write left (top level only: RUN/eval belongs
    to avssl-eval, which may be running), then write the resolved ``config.yaml``."""
    if not env.is_main:
        return
    from avssl.config import dump_config

    if run_dir.is_dir():
        for tmp in run_dir.glob(".*.tmp*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")


def resume_from(ck: dict[str, Any], path: Path, state: dict[str, Any]) -> tuple[int, int]:
    """Load a checkpoint's model and optimizer into ``state``; its (epoch, step in epoch)."""
    from avssl.checkpoints import load_weights

    load_weights(unwrap_model(state["model"]), ck["model"], path, what="model")
    state["opt"].load_state_dict(ck["optimizer"])
    return int(ck["epoch"]), int(ck["step_in_epoch"])


def write_checkpoint(
    path: Path, state: dict[str, Any], epoch: int, step_in_epoch: int, **extra: Any
) -> None:
    """Model, optimizer, position and ``extra``: tensors and primitives only (loads with
    ``weights_only=True``), written atomically."""
    from avssl.data.manifest import atomic_output

    ckpt = {
        "model": unwrap_model(state["model"]).state_dict(),
        "optimizer": state["opt"].state_dict(),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        **extra,
    }
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def kwargs_json(kwargs: dict[str, Any]) -> str:
    """Backbone keyword arguments as the checkpoint keeps them (tuples as lists)."""
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})


def wrap_model(model: nn.Module, run: Any, env: dist.DistEnv) -> nn.Module:
    """DDP across the processes of a torchrun launch, then ``torch.compile`` if asked."""
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )
    if run.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def _step_of(line: str) -> float:
    """The ``step`` of a metrics.jsonl line; +inf for a line that is not whole JSON."""
    try:
        return float(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, AttributeError):
        return math.inf


class Logger:
    """Progress line, metrics.jsonl and TensorBoard; silent on ranks other than 0."""

    def __init__(self, run_dir: Path, cfg: Any, env: dist.DistEnv, resume_step: int) -> None:
        self.env, self.cfg = env, cfg
        self.path = run_dir / "metrics.jsonl"
        self.t0, self.seen, self.tb = time.monotonic(), 0, None
        # throughput and data wait over the current log interval (timing fields of the records)
        self.t_mark, self.seen_mark, self.wait = self.t0, 0, 0.0
        self.eta_origin: tuple[float, int] | None = None  # (time, samples) the ETA counts from
        if not env.is_main:
            return
        if self.path.exists():  # keep the lines up to the checkpoint: a resumed log is whole
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if _step_of(ln) < resume_step  # (a line torn by a kill mid-append: dropped)
            ]
            from avssl.data.manifest import atomic_write_text

            atomic_write_text(self.path, "".join(k + "\n" for k in keep))
        if cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
            except ImportError:
                self.tb = None

    def write(self, rec: dict[str, Any]) -> None:
        if not self.env.is_main:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k != "step":
                    self.tb.add_scalar(k, v, rec["step"])

    def step(self, step: int, total: int, vals: dict[str, float], n: int, waited: float) -> None:
        """Record one step: ``n`` samples over all ranks, ``waited`` s blocked on the loader."""
        self.seen += n
        self.wait += waited
        if step % self.cfg.run.log_every and step != total - 1:
            return
        now = time.monotonic()
        span = max(now - self.t_mark, 1e-9)
        timing = {  # TIMING_KEYS: not reproducible, left out when runs are compared
            "samples_per_s": round((self.seen - self.seen_mark) / span, 2),
            "data_wait": round(min(self.wait / span, 1.0), 4),
        }
        self.t_mark, self.seen_mark, self.wait = now, self.seen, 0.0
        self.write({"step": step, **{k: round(v, 6) for k, v in vals.items()}, **timing})
        if self.env.is_main:
            el = now - self.t0
            rate = self.seen / el if el > 0 else 0.0
            # the ETA counts from the first logged step: the first steps pay the start-up (the
            # loader's first videos, one-off kernel setup) and would make it absurd
            if self.eta_origin is None:
                self.eta_origin = (now, self.seen)
            t_o, seen_o = self.eta_origin
            left = (total - step - 1) * self.cfg.optim.batch_size * self.env.world_size
            eta = "ETA -"
            if self.seen > seen_o:
                eta = f"ETA {left * (now - t_o) / (self.seen - seen_o):.0f} s"
            tty = sys.stderr.isatty()
            print(
                f"{chr(13) if tty else ''}step {step + 1}/{total} loss {vals['loss']:.4f} "
                + (f"acc {vals['acc']:.3f} " if "acc" in vals else "")
                + f"{rate:.0f} samples/s "
                f"data wait {100 * timing['data_wait']:.0f}% {eta} ",
                end="" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )
