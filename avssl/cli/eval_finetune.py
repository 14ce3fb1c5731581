"""``avssl-eval finetune``: its arguments (the fine-tuning: :mod:`avssl.eval.finetune`);
``python -m avssl.cli.eval_finetune MODEL ...`` is the same command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avssl.cli import eval as cli_eval  # its shared helpers; it imports this module
from avssl.config import add_config_options
from avssl.errors import run_cli
from avssl.eval import finetune

_HELP = "fine-tune a backbone + linear classifier on labelled videos (UCF-101 protocol)"
_DESCRIPTION = (
    "Fine-tune MODEL (+ dropout + a new linear classifier) on the training videos and "
    "report clip accuracy (centre clip, centre crop) and video accuracy (softmax "
    "averaged over eval.num_clips clips x eval.num_crops crops), balanced accuracies "
    "and the confusion matrix on the test videos. Defaults: the UCF-101 protocol "
    "(FinetuneConfig in avssl/eval/finetune_task.py; configs/finetune_ucf101.yaml); "
    "configs/finetune_demo.yaml is the CPU-scale run on the built-in set."
)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a checkpoint.pt, random:BACKBONE (--like RUN_DIR: that run's "
        "network) or random:RUN_DIR",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        metavar="TRAIN.jsonl",
        help="training rows: avssl-prep ucf101's splitK/train.jsonl, the built-in "
        "set's manifest.jsonl (default: $AVSSL_DATA/synth/manifest.jsonl) or an "
        "image manifest",
    )
    p.add_argument(
        "--test",
        "--test-manifest",
        dest="test",
        type=Path,
        metavar="TEST.jsonl",
        help="test rows (splitK/test.jsonl); without it, the manifest's 'split' "
        "column decides (data.train_splits / data.test_split)",
    )
    add_config_options(
        p,
        "configuration file (e.g. configs/finetune_ucf101.yaml)",
        "override one field, e.g. optim.lr=0.001",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="work directory (checkpoint.pt, metrics.jsonl, config.yaml); default "
        "RUN_DIR/eval/finetune-DATASET/ for a run, RUN_DIR/eval/random/finetune-DATASET/ for "
        "random:RUN_DIR (or --like RUN_DIR), else evals/finetune-DATASET-MODELTAG/",
    )
    p.add_argument(
        "--json",
        dest="result",
        type=Path,
        metavar="FILE",
        help="result JSON; default: DIR/finetune-DATASET.json with --out, else the "
        "work directory's name + .json beside it (RUN_DIR/eval/finetune-DATASET.json)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint.pt (same settings) if it exists",
    )
    p.add_argument(
        "--model-kwargs",
        type=cli_eval._json_dict,
        metavar="JSON",
        help="backbone keyword arguments for random:, e.g. '{\"channels\": [16, 32]}'",
    )
    p.add_argument(
        "--like", metavar="RUN", help="random: with the backbone keyword arguments of this run"
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` to ``avssl-eval``'s sub-commands."""
    p = sub.add_parser("finetune", help=_HELP, description=_DESCRIPTION)
    _add_arguments(p)
    command = cli_eval._call(finetune.run_finetune)
    p.set_defaults(func=lambda args: run_cli("avssl-eval", lambda: command(args)))


def main(argv: list[str] | None = None) -> int:
    """``python -m avssl.cli.eval_finetune MODEL ...`` (the same as ``avssl-eval finetune``)."""
    desc = (finetune.__doc__ or "").split("\n")[0]
    p = argparse.ArgumentParser(prog="avssl-eval finetune", description=desc)
    _add_arguments(p)
    args = p.parse_args(argv)
    args.argv = ["finetune", *(sys.argv[1:] if argv is None else argv)]
    return run_cli("avssl-eval", lambda: cli_eval._call(finetune.run_finetune)(args))


if __name__ == "__main__":
    sys.exit(main())
