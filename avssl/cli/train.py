"""``avssl-train`` and ``avssl-export`` (also ``python -m avssl.cli``).

avssl-train TASK [--config configs/X.yaml] [--set key=value ...] [--out RUN_DIR] [--resume]
avssl-train --list
torchrun --nproc_per_node=2 -m avssl.cli train TASK ...
avssl-export RUN_DIR [--out backbone.pt]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["export_entry", "main", "train_entry"]


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-train",
        description=(
            "Train a self-supervised pretext task. Defaults live in avssl/train.py "
            "(TrainConfig); a YAML file (--config) holds what differs, --set overrides single "
            "fields (dotted keys, e.g. --set optim.lr=0.001 --set data.manifest=prep/split1/"
            "shuffle_learn.jsonl). Without data.manifest the built-in set is used: the "
            "temporal tasks need 'avssl-prep synth' first; the audio-visual tasks (ave-net, "
            "l3-net, avol-net, av-sync; hyphens or underscores) build it on first use, have "
            "their own CPU-scale defaults and end with a localization check "
            "(localization.json, heatmaps/). The image tasks (rotation, relative-position, "
            "colorization, exemplar, simclr, mae, multi-task) read an image manifest (default: "
            "the digits of 'avssl-prep digits') or frames of any video manifest "
            "(docs/image_tasks.md). colorization-tracking reads the built-in set's videos "
            "(videos.jsonl) and its checkpoint drives avssl-track (docs/tracking.md). The run "
            "directory gets config.yaml (the resolved "
            "configuration), metrics.jsonl, tb/ (TensorBoard) and checkpoint.pt; --resume "
            "continues from the checkpoint exactly. Several processes: torchrun "
            "--nproc_per_node=N -m avssl.cli train TASK ..."
        ),
    )
    p.add_argument("task", nargs="?", help="the pretext task (see --list)")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    p.add_argument("--config", default=None, metavar="YAML", help="configuration file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. optim.lr=0.001 (repeatable)",
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
    from avssl.train import main_train

    try:
        return main_train(args.task, args.config, args.overrides, args.out, args.resume)
    except (FileNotFoundError, ValueError) as e:
        print(f"avssl-train: {e}", file=sys.stderr)
        return 2


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
    import torch

    from avssl.data.manifest import atomic_output
    from avssl.models.backbones import build_backbone, export_backbone

    ckpt_path = args.run_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        print(f"avssl-export: {ckpt_path}: no checkpoint", file=sys.stderr)
        return 2
    from avssl.checkpoints import load_checkpoint, load_weights

    try:
        ck = load_checkpoint(ckpt_path)
    except ValueError as e:
        print(f"avssl-export: {e}", file=sys.stderr)
        return 2
    prefixes = ("encoder.net.", "net.")
    sd = {}
    for k, v in ck["model"].items():
        for pre in prefixes:
            if k.startswith(pre):
                sd[k[len(pre) :]] = v
                break
    import json

    net = build_backbone(ck["backbone"], **json.loads(ck.get("backbone_kwargs", "{}")))
    try:
        load_weights(net, sd, ckpt_path, what=f"{ck['backbone']} backbone")
    except ValueError as e:
        print(f"avssl-export: {e}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / "backbone.pt"
    with atomic_output(out) as tmp:
        torch.save(export_backbone(ck["backbone"], net), tmp)
    print(f"{out}: {ck['backbone']} backbone of the {ck['task']} run")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return train_main(argv[1:])
    if argv and argv[0] == "export":
        return export_main(argv[1:])
    print("usage: python -m avssl.cli {train|export} ...", file=sys.stderr)
    return 2


def train_entry() -> int:
    return train_main()


def export_entry() -> int:
    return export_main()

