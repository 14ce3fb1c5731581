"""The ESC-50 protocol's SVM grid, before and after issue 23, on the same real features.

    python benchmarks/esc50_svm.py --manifest PREP_DIR --cache DIR [--models random:audio_tiny,mfcc]

Features come from ``avssl-eval esc50 MODEL --cache DIR`` (run once with ``--c-grid 1`` when the
cache has no file for MODEL yet). Then, per model, in one process and alternating: the old
protocol (a copy of ``linear_svm_folds`` at HEAD before issue 23: LinearSVC per fit, every inner
fit made for both of its test folds) and :func:`avssl.eval.metrics.linear_svm_folds` (exact
primal Newton solver, warm starts along C, one fit per fold pair). Prints seconds, the chosen C
per fold and the fold accuracies of both.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

from avssl.eval.metrics import DEFAULT_C_GRID, linear_svm_folds


def old_linear_svm_folds(x, y, fo, grid=DEFAULT_C_GRID, standardize=True, seed=0, max_iter=10000):
    """The SVM protocol as it was before issue 23 (validation and trace left out)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    grid = sorted(float(c) for c in grid)

    def fit_score(train, evaluate, c):
        clf = LinearSVC(C=c, dual="auto", max_iter=max_iter, random_state=seed)
        model = make_pipeline(StandardScaler(), clf) if standardize else clf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x[train], y[train])
        return float(np.mean(model.predict(x[evaluate]) == y[evaluate]))

    fold_ids = [int(f) for f in np.unique(fo)]
    fold_acc, chosen = [], []
    for f in fold_ids:
        train_folds = [g for g in fold_ids if g != f]
        scores = []
        for c in grid:
            accs = [
                fit_score(
                    np.flatnonzero(np.isin(fo, [g for g in train_folds if g != v])),
                    np.flatnonzero(fo == v),
                    c,
                )
                for v in train_folds
            ]
            scores.append(float(np.mean(accs)))
        best_c, best = grid[0], scores[0]
        for c, s in zip(grid[1:], scores[1:], strict=True):
            if s > best + 1e-12:
                best_c, best = c, s
        fold_acc.append(fit_score(np.flatnonzero(fo != f), np.flatnonzero(fo == f), best_c))
        chosen.append(best_c)
    return {"chosen_C": chosen, "fold_accuracy": fold_acc, "mean": float(np.mean(fold_acc))}


def features(model: str, manifest: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tag = model.replace(":", "-")
    found = sorted(cache.glob(f"esc50-*-{tag}-*.npz"))
    if not found:
        out = cache / f"seed-{tag}.json"
        cmd = ["avssl-eval", "esc50", model, "--manifest", manifest, "--c-grid", "1"]
        subprocess.run([*cmd, "--cache", str(cache), "--out", str(out)], check=True)
        found = sorted(cache.glob(f"esc50-*-{tag}-*.npz"))
    with np.load(found[-1]) as z:
        folds = np.array([int(s) for s in z["split"]])
        return z["feats"].astype(np.float64), z["labels"].astype(np.int64), folds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="clips.jsonl of avssl-prep (or its folder)")
    p.add_argument("--cache", required=True, help="feature cache folder of avssl-eval esc50")
    p.add_argument("--models", default="random:audio_tiny,mfcc")
    p.add_argument("--rounds", type=int, default=1, help="old/new alternations per model")
    args = p.parse_args()
    for model in args.models.split(","):
        x, y, fo = features(model, args.manifest, Path(args.cache))
        print(f"{model}: {x.shape[0]} clips, {x.shape[1]}-d, {np.unique(y).size} classes")
        for _ in range(args.rounds):
            for name, run in (("old", old_linear_svm_folds), ("new", linear_svm_folds)):
                t0 = time.perf_counter()
                res = run(x, y, fo)
                acc = " ".join(f"{a:.4f}" for a in res["fold_accuracy"])
                print(f"  {name}  {time.perf_counter() - t0:7.1f} s  C {res['chosen_C']}  "
                      f"fold accuracy {acc}  mean {res['mean']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
