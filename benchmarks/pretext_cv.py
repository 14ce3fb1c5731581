"""Held-out pretext accuracy by k-fold cross-validation over videos, with a shuffled-label control.

    python -m benchmarks.pretext_cv TASK --manifest M.jsonl [--folds 4] [--config C.yaml]
                                    [--set key=value ...] [--out runs/cv]

For a small set of videos (the 14 real clips of ../shared/data), one held-out handful of videos
says little: whichever 3 videos land on the validation side decide the number. This trains
``avssl-train TASK`` k times, each time holding out one fold of whole videos
(``data.val_folds=k data.val_fold=i``: every video is held out exactly once), and again with
``data.shuffle_labels=true`` (training targets permuted across rows: if the pipeline leaked the
answer, e.g. through the frame order or the file, the control would still score). Prints a
markdown table (per fold: held-out videos and samples, balanced accuracy with true and with
shuffled labels) and the mean +- std over folds; writes ``OUT/TASK-cv.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from avssl.config import load_config
from avssl.data.dataset import split_by_video
from avssl.data.manifest import read_manifest
from avssl.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def run_fold(args: argparse.Namespace, fold: int, shuffled: bool) -> dict[str, Any]:
    tag = f"fold{fold}{'-shuffled' if shuffled else ''}"
    overrides = [
        f"task={args.task}",
        f"data.manifest={args.manifest}",
        f"data.val_folds={args.folds}",
        f"data.val_fold={fold}",
        "data.max_val_rows=null",
        f"data.shuffle_labels={'true' if shuffled else 'false'}",
        f"run.out={Path(args.out) / args.task / tag}",
        "run.tensorboard=false",
        *args.set,
    ]
    cfg = load_config(TrainConfig, args.config, overrides)
    t0 = time.monotonic()
    metrics = train(cfg)
    return {"fold": fold, "shuffled": shuffled, "wall_s": round(time.monotonic() - t0, 1),
            **metrics}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--config", default=None, help="default: configs/demo_TASK.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/cv")
    args = ap.parse_args()
    args.config = args.config or str(REPO / "configs" / f"demo_{args.task}.yaml")
    rows = read_manifest(args.manifest)
    seed = load_config(TrainConfig, args.config, [f"task={args.task}", *args.set]).seed
    held = [
        sorted({r["video"] for r in split_by_video(rows, 0.0, seed, folds=args.folds, fold=f)[1]})
        for f in range(args.folds)
    ]
    results = [run_fold(args, f, s) for f in range(args.folds) for s in (False, True)]
    by = {(r["fold"], r["shuffled"]): r for r in results}
    print(f"\n{args.task}: {args.folds}-fold cross-validation by video on {args.manifest}")
    print("| fold | held-out videos | samples | balanced acc | shuffled labels | wall |")
    print("|---|---|---|---|---|---|")
    for f in range(args.folds):
        t, s = by[(f, False)], by[(f, True)]
        print(
            f"| {f} | {', '.join(Path(v).stem for v in held[f])} | {t['val_samples']} | "
            f"{100 * t['val_balanced_acc']:.1f}% | {100 * s['val_balanced_acc']:.1f}% | "
            f"{t['wall_s']:.0f} s |"
        )
    summary = {}
    for shuffled in (False, True):
        accs = [by[(f, shuffled)]["val_balanced_acc"] for f in range(args.folds)]
        summary["shuffled" if shuffled else "true"] = {
            "mean": statistics.fmean(accs),
            "std": statistics.pstdev(accs),
        }
    print(
        f"mean +- std over folds: {100 * summary['true']['mean']:.1f} +- "
        f"{100 * summary['true']['std']:.1f}% (shuffled labels "
        f"{100 * summary['shuffled']['mean']:.1f} +- {100 * summary['shuffled']['std']:.1f}%)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.task}-cv.json").write_text(
        json.dumps(
            {"args": vars(args), "held_out": held, "runs": results, "summary": summary}, indent=1
        )  # fmt: skip
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
