"""``avssl-train`` and ``avssl-export`` (also ``python -m avssl.cli``).

avssl-train TASK [--config configs/X.yaml] [--set key=value ...] [--out RUN_DIR] [--resume]
avssl-train --list
torchrun --nproc_per_node=2 -m avssl.cli train TASK ...
avssl-export RUN_DIR [--out backbone.pt]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avssl.config import add_config_options
from avssl.errors import run_cli

_TRAIN_DESCRIPTION = (
    "Train a self-supervised pretext task. Defaults live in avssl/train_config.py (TrainConfig); "
    "a YAML file (--config) holds what differs, --set overrides single fields (dotted keys, e.g. "
    "--set optim.lr=0.001 --set data.manifest=prep/split1/shuffle_learn.jsonl). Without "
    "data.manifest the built-in set is used: the temporal tasks need 'avssl-prep synth' first; "
    "the audio-visual tasks (ave-net, l3-net, avol-net, av-sync; hyphens or underscores) build it "
    "on first use, have their own CPU-scale defaults and end with a localization check "
    "(localization.json, heatmaps/); ave-net's defaults are the main job (AVE-Net with a when "
    "stream and its distance scored per place, ~3.5 min on 2 cores), --config "
    "configs/ave_net_one_frame.yaml the paper's one-frame AVE-Net (docs/audio_visual.md). "
    "The image tasks (rotation, relative-position, colorization, "
    "exemplar, simclr, mae, multi-task) read an image manifest (default: the digits of "
    "'avssl-prep digits') or frames of any video manifest (docs/image_tasks.md). "
    "colorization-tracking reads the built-in set's videos (videos.jsonl) and its checkpoint "
    "drives avssl-track (docs/tracking.md). The run directory gets config.yaml (the resolved "
    "configuration), metrics.jsonl, tb/ (TensorBoard) and checkpoint.pt; --resume continues from "
    "the checkpoint exactly. Several processes: torchrun --nproc_per_node=N -m avssl.cli train "
    "TASK ..."
)


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avssl-train", description=_TRAIN_DESCRIPTION)
    p.add_argument("task", nargs="?", help="the pretext task (see --list)")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    add_config_options(
        p, "configuration file", "override one field, e.g. optim.lr=0.001 (repeatable)"
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="RUN_DIR",
        help="run directory (default runs/TASK); with --resume, the run to continue",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from RUN_DIR/checkpoint.pt (same config) if it exists",
    )
    return p


def train_main(argv: Sequence[str] | None = None) -> int:
    args = _train_parser().parse_args(argv)
    from avssl.tasks import TASKS

    if args.task:
        args.task = args.task.replace("-", "_")  # avssl-train ave-net == ave_net
    if args.list or not args.task:
        for name, t in TASKS.items():
            print(f"{name:16s} {t.description} (reads {t.manifest})")
        return 0 if args.list else 2
    if args.task not in TASKS:
        print(f"avssl-train: unknown task {args.task!r}; see --list", file=sys.stderr)
        return 2
    return run_cli("avssl-train", lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    """Build the built-in pairs on first use, train, then (pair tasks) check localization;
    prints the final metrics (JSON) on rank 0."""
    from avssl import dist
    from avssl.engine import EXIT_PREEMPTED
    from avssl.tasks import TASKS
    from avssl.train import default_manifest, heldout_manifest, load_train_config, train

    cfg = load_train_config(args.task, args.config, args.overrides, args.out)
    pair = TASKS[cfg.task].pair
    if pair and not cfg.data.manifest:  # the main job builds its data on first use
        _ensure_builtin_av(default_manifest(cfg.task).parent)
    metrics = train(cfg, resume=args.resume)
    run_dir = Path(cfg.run.out or f"runs/{cfg.task}")
    if pair and dist.is_main() and "stopped_at_step" not in metrics:
        loc = _localization(cfg, heldout_manifest(cfg), run_dir)
        if loc:  # beside the accuracy in metrics.jsonl, as the last record of the run
            rec = {"step": metrics.get("step"), "epoch": metrics.get("epoch"), **loc}
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        metrics.update(loc)
    if dist.is_main():  # the metrics (JSON) stay the last line, for scripts
        print(_where(run_dir), file=sys.stderr, flush=True)
        print(json.dumps(metrics), flush=True)
    return EXIT_PREEMPTED if "preempted" in metrics else 0


def _where(run_dir: Path) -> str:
    """The closing line: where the run went and what it holds."""
    names = ["config.yaml", "checkpoint.pt", "metrics.jsonl", "localization.json", "heatmaps/"]
    held = [n for n in names if (run_dir / n.rstrip("/")).exists()]
    return f"run in {run_dir}/: {', '.join(held)} (avssl-report {run_dir} makes a page)"


def _ensure_builtin_av(av_dir: Path) -> None:
    """What ``avssl-train ave-net`` with no manifest reads, where it is missing: the synth set
    (``av_dir``'s parent; ~1 min) and its pairs (``av_dir``), built by ``avssl-prep synth``."""
    if (av_dir / "avc_train.jsonl").is_file() and (av_dir / "localization_test.jsonl").is_file():
        return
    root = av_dir.parent
    print(f"building the built-in set in {root} (first use; about a minute)", file=sys.stderr)
    cmd = [sys.executable, "-m", "avssl_prep.cli", "synth", "--out", str(root), "--no-temporal",
           "--no-report"]  # fmt: skip
    if subprocess.run(cmd, stdout=sys.stderr.fileno()).returncode != 0:
        raise ValueError(
            f"building the built-in set in {root} failed (see above); run the same "
            "command again: it resumes"
        )


def _localization(cfg: Any, held: str | None, run_dir: Path) -> dict[str, Any]:
    """The pair tasks' closing check: localization on held-out trials with ground-truth boxes
    (avssl/eval/av.py), heatmap sheets in RUN/heatmaps, figures in RUN/localization.json."""
    from avssl.data.manifest import atomic_write_text
    from avssl.eval.av import load_av_model, localization_report

    lm = cfg.data.localization_manifest if cfg.data.localization_trials > 0 else ""
    if lm is None:
        cand = Path(held).parent / "localization_test.jsonl" if held else None
        lm = str(cand) if cand is not None and cand.is_file() else ""
    if not lm:
        return {}
    rep = localization_report(
        load_av_model(str(run_dir)), Path(lm), run_dir / "heatmaps",
        frame_size=cfg.data.localization_frame_size or None,
        max_trials=cfg.data.localization_trials,
    )  # fmt: skip
    atomic_write_text(run_dir / "localization.json", json.dumps(rep, indent=2) + "\n")
    m = rep["metrics"]
    print(
        f"localization on {int(m['trials'])} held-out trials: pointing game "
        f"{100 * m['pointing_matched']:.1f}% (chance {100 * m['chance_pointing']:.1f}%), "
        f"cIoU@0.5 {m['cIoU@0.5']:.3f}, AUC {m['AUC']:.3f}; said 'match' to "
        f"{100 * m['match_rate_matched']:.1f}% of true pairs, "
        f"{100 * m['match_rate_mismatched']:.1f}% with mismatched and "
        f"{100 * m['match_rate_silent']:.1f}% with silent sound; heatmaps in "
        f"{run_dir / 'heatmaps'}",
        file=sys.stderr,
    )
    return {f"loc_{k}": v for k, v in m.items()}


def export_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="avssl-export",
        description=(
            "Write a run's backbone as a plain state dict (tensors only). ResNet-18, R3D-18 "
            "and R(2+1)D-18 load into the torchvision model (strict=False; only fc.weight / "
            "fc.bias missing); CaffeNet variants load into avssl.models.build_backbone(name)."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=None, help="default RUN_DIR/backbone.pt")
    args = p.parse_args(argv)
    return run_cli("avssl-export", lambda: _export(args.run_dir, args.out))


def _export(run_dir: Path, out: Path | None) -> int:
    import torch

    from avssl.checkpoints import load_checkpoint, load_weights
    from avssl.data.manifest import atomic_output
    from avssl.models.backbones import build_backbone, export_backbone

    ckpt_path = run_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        print(f"avssl-export: {ckpt_path}: no checkpoint", file=sys.stderr)
        return 2
    ck = load_checkpoint(ckpt_path)
    # the backbone of a task model: encoder.net.* (frame encoders, the tracker) or net.* (AVNet)
    prefixes = ("encoder.net.", "net.")
    sd = {k.removeprefix(p): v for k, v in ck["model"].items() for p in prefixes if k.startswith(p)}
    net = build_backbone(ck["backbone"], **json.loads(ck.get("backbone_kwargs", "{}")))
    load_weights(net, sd, ckpt_path, what=f"{ck['backbone']} backbone")
    out = out or run_dir / "backbone.pt"
    with atomic_output(out) as tmp:
        torch.save(export_backbone(ck["backbone"], net), tmp)
    print(f"{out}: {ck['backbone']} backbone of the {ck['task']} run; load it with")
    print(_loading_snippet(ck["backbone"], ck.get("backbone_kwargs", "{}"), out))
    return 0


def _loading_snippet(backbone: str, kwargs_json: str, path: Path) -> str:
    """The Python lines that load an exported backbone (torchvision's model where there is one)."""
    from avssl.models.backbones import BACKBONES

    tv = getattr(BACKBONES.get(backbone), "torchvision", None)
    if tv:
        return (
            "    import torch, torchvision\n"
            f"    net = torchvision.models.get_model({tv!r}, weights=None)\n"
            f"    net.load_state_dict(torch.load({str(path)!r}), strict=False)  # fc stays new"
        )
    kw = ", ".join(f"{k}={v!r}" for k, v in json.loads(kwargs_json).items())
    return (
        "    import torch\n    from avssl.models.backbones import build_backbone\n"
        f"    net = build_backbone({backbone!r}{', ' + kw if kw else ''})\n"
        f"    net.load_state_dict(torch.load({str(path)!r}))"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "export": export_main}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    print("usage: python -m avssl.cli {train|export} ...", file=sys.stderr)
    return 2


def train_entry() -> int:
    return train_main()


def export_entry() -> int:
    return export_main()
