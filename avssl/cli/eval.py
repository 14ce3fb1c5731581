"""avssl-eval: evaluate a trained run, a checkpoint or a random-init baseline.

    avssl-eval linear    MODEL --manifest M   frozen features + logistic regression
    avssl-eval knn       MODEL --manifest M   frozen features + k-nearest-neighbour vote
    avssl-eval retrieval MODEL --manifest M   R@k, nDCG@k, mAP of one modality
    avssl-eval finetune  MODEL --manifest M   UCF-101-style fine-tuning: clip and video accuracy
    avssl-eval esc50     MODEL --manifest M   audio features + linear SVM over the official folds
    avssl-eval localization   RUN [--trials T]           heatmaps vs boxes: cIoU, AUC, pointing
    avssl-eval correspondence RUN --pairs P              audio-visual match accuracy
    avssl-eval cross-modal    RUN --images I --sounds S  audio <-> image retrieval
    avssl-eval tracking       MODEL [--manifest M]       label propagation: box IoU, AUC, J, F
                              [--davis D] [--vot D]      ... on real ground truth (DAVIS, VOT)

MODEL: a run directory, a checkpoint.pt, random:BACKBONE (the random-init baseline), or a
hand-crafted baseline where the command has one (pixels for images, mfcc for audio); for the
audio-visual commands RUN is an ave_net / l3_net / avol_net / av_sync run, or random:RUN.
Every command writes one result JSON (docs/evaluation.md) and prints its metrics.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# modules that register sub-commands, in the order of --help
_MODULES = (
    "avssl.eval.vision",
    "avssl.eval.retrieval",
    "avssl.eval.finetune",
    "avssl.eval.audio",
    "avssl.eval.av",
    "avssl.eval.tracking",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-eval",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="KIND", required=True)
    for name in _MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # the result's "command"
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as e:
        print(f"avssl-eval: {e}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())
