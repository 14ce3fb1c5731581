"""Linear probes: the ESC-50 protocol (:func:`linear_svm_folds`) and :func:`logistic_probe`."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from avssl.checks import float_arg, int_arg
from avssl.eval.metrics.classification import (
    _features,
    _labels,
    _train_test,
    accuracy,
    balanced_accuracy,
)
from avssl.eval.metrics.svm import SVMClassifier, fit_svm_path

DEFAULT_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def _c_grid(values: Iterable[object]) -> list[float]:
    try:
        grid = [float_arg("C_grid value", c, 0.0, lo_open=True) for c in values]
    except TypeError:
        raise ValueError(f"C_grid must be an iterable of numbers, got {values!r}") from None
    if not grid:
        raise ValueError("C_grid is empty")
    if len(set(grid)) != len(grid):
        raise ValueError(f"C_grid has duplicates: {grid}")
    return sorted(grid)


def _pick_c(grid: list[float], scores: list[float]) -> float:
    """The C with the highest score; ties (within 1e-12) go to the smaller C (grid ascending)."""
    best_c, best = grid[0], scores[0]
    for c, s in zip(grid[1:], scores[1:], strict=True):
        if s > best + 1e-12:
            best_c, best = c, s
    return best_c


@contextmanager
def _count_convergence(counter: list[int]) -> Iterator[None]:
    """Count scikit-learn ConvergenceWarnings into ``counter[0]``; other warnings pass through."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            counter[0] += 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def make_classifier(kind: str, c: float, standardize: bool, seed: int, max_iter: int) -> Any:
    """An unfitted classifier (``fit`` / ``predict``) as the probes fit it: ``"svm"`` for
    :func:`linear_svm_folds`, ``"logreg"`` for :func:`logistic_probe`."""
    if kind == "svm":
        return SVMClassifier(c, standardize, max_iter)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs: softmax (multinomial) over >= 3 classes; scikit-learn's default for lbfgs, so no
    # multi_class argument (deprecated in 1.5, removed later).
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf) if standardize else clf


def _check_two_classes(y: np.ndarray, what: str) -> None:
    if np.unique(y).size < 2:
        raise ValueError(f"{what} holds a single class ({int(y[0])}); a classifier needs two")


def _fold_arrays(
    features: ArrayLike, labels: ArrayLike, folds: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    x = _features("features", features)
    y = _labels("labels", labels)
    fo = _labels("folds", folds, non_negative=False)
    if not (x.shape[0] == y.shape[0] == fo.shape[0]):
        raise ValueError(
            f"features, labels and folds lengths differ: {x.shape[0]}, {y.shape[0]}, {fo.shape[0]}"
        )
    fold_ids = [int(f) for f in np.unique(fo)]
    if len(fold_ids) < 3:
        raise ValueError(f"need at least 3 distinct folds, got {len(fold_ids)}: {fold_ids}")
    return x, y, fo, fold_ids


def _svm_path(
    x: np.ndarray, y: np.ndarray, fo: np.ndarray, train: np.ndarray, grid: list[float], **kw: Any
) -> list[Any]:
    _check_two_classes(y[train], f"training split (folds {sorted(set(fo[train].tolist()))})")
    return fit_svm_path(x[train], y[train], grid, **kw)


def _pair_accuracies(
    x: np.ndarray, y: np.ndarray, fo: np.ndarray, fold_ids: list[int], grid: list[float], **kw: Any
) -> dict[tuple[int, int], list[float]]:
    """``acc[(f, v)][j]``: accuracy on fold ``v`` of the ``grid[j]`` model fitted on every fold
    but ``f`` and ``v``. Those are the same data for ``(v, f)``: one path per pair serves both."""
    acc = {}
    for f, v in itertools.combinations(fold_ids, 2):
        path = _svm_path(x, y, fo, np.flatnonzero((fo != f) & (fo != v)), grid, **kw)
        for a, b in ((f, v), (v, f)):
            held = fo == b
            acc[(a, b)] = [float(np.mean(m.predict(x[held]) == y[held])) for m in path]
    return acc


def _trace(fo: np.ndarray, f: int, grid: list[float], best: float) -> list[dict[str, Any]]:
    """The fits of test fold ``f`` in protocol order: each C, each inner fold; then the final."""
    others = [int(g) for g in np.unique(fo) if g != f]
    cases = [(c, v, fo != f) for c in grid for v in others] + [(best, None, fo != f)]
    out = []
    for c, v, pool in cases:
        train = np.flatnonzero(pool & (fo != v)) if v is not None else np.flatnonzero(pool)
        evaluate = np.flatnonzero(fo == (v if v is not None else f))
        out.append(
            {"test_fold": f, "stage": "select" if v is not None else "final", "C": c,
             "val_fold": v, "train_index": train, "eval_index": evaluate,
             "train_folds": frozenset(int(g) for g in fo[train]),
             "eval_folds": frozenset(int(g) for g in fo[evaluate])}
        )  # fmt: skip
    return out


def linear_svm_folds(
    features: ArrayLike,
    labels: ArrayLike,
    folds: ArrayLike,
    C_grid: Iterable[float] = DEFAULT_C_GRID,
    standardize: bool = True,
    seed: int = 0,
    *,
    max_iter: int = 10000,
    trace: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Linear-SVM accuracy under the ESC-50 protocol: leave one official fold out.

    For every test fold ``f`` (in ascending fold-id order), with ``T = all folds - {f}``:

    1. **C selection, on T only.** For each ``C`` in ``C_grid`` and each ``v`` in ``T``, a
       classifier is fitted on the samples of ``T - {v}`` and scored (accuracy) on fold ``v``;
       the inner score of ``C`` is the unweighted mean of those ``|T|`` fold accuracies. The
       chosen ``C`` has the highest inner score; ties (within 1e-12) go to the smaller ``C``.
    2. **Final fit.** A classifier with the chosen ``C`` is fitted on all samples of ``T`` and
       scored on fold ``f``: that is the accuracy of fold ``f``.

    No sample of fold ``f`` is used for any fit or score of step 1, nor for the fit of step 2.
    The classifier is :class:`sklearn.svm.LinearSVC`'s model solved exactly in the primal
    (:mod:`avssl.eval.metrics.svm`, warm-started along the ascending ``C_grid``), after a
    StandardScaler fitted on that fit's training samples when ``standardize`` is set. The fit on
    ``T - {v}`` for test fold ``f`` is the fit on ``T' - {f}`` for test fold ``v``: made once,
    scored for both. The solver is deterministic; ``seed`` is only checked (>= 0).

    ``trace``, if given, receives one dict per fit of the protocol, in order: ``test_fold``,
    ``stage`` (``"select"`` / ``"final"``), ``C``, ``val_fold`` (None for the final fit),
    ``train_index`` / ``eval_index`` and the fold ids of those samples, ``train_folds`` /
    ``eval_folds`` (frozensets), so that a test can prove where each fit's data came from.

    Returns ``fold_ids``, ``fold_accuracy`` (per test fold), ``chosen_C`` (per test fold),
    ``inner_accuracy`` (per test fold, one mean inner accuracy per ``C_grid`` value, ascending),
    ``C_grid`` (ascending), ``mean`` and ``std`` of the fold accuracies -- **population** std,
    ``ddof=0`` --, ``convergence_warnings`` (how many fits ran out of ``max_iter`` Newton steps)
    and ``predictions`` (int64, every sample's class by its test fold's final classifier).

    Raises ValueError for fewer than 3 distinct folds (the inner cross-validation needs two
    training folds), mismatched lengths, non-finite features, an empty or non-positive
    ``C_grid``, or a training split with a single class.
    """
    x, y, fo, fold_ids = _fold_arrays(features, labels, folds)
    grid = _c_grid(C_grid)
    int_arg("seed", seed, 0)
    kw = {"max_iter": int_arg("max_iter", max_iter, 1), "standardize": standardize}
    warned = [0]
    with _count_convergence(warned):
        pair_acc = _pair_accuracies(x, y, fo, fold_ids, grid, **kw)
    fold_acc, chosen, inner = [], [], []
    pred = np.empty_like(y)
    for f in fold_ids:
        held = [pair_acc[(f, v)] for v in fold_ids if v != f]
        scores = [float(np.mean([a[j] for a in held])) for j in range(len(grid))]
        best = _pick_c(grid, scores)
        test = fo == f
        with _count_convergence(warned):
            (model,) = _svm_path(x, y, fo, np.flatnonzero(~test), [best], **kw)
        pred[test] = model.predict(x[test])
        fold_acc.append(float(np.mean(pred[test] == y[test])))
        chosen.append(best)
        inner.append(scores)
        if trace is not None:
            trace.extend(_trace(fo, f, grid, best))
    return {
        "fold_ids": fold_ids,
        "fold_accuracy": fold_acc,
        "chosen_C": chosen,
        "inner_accuracy": inner,
        "C_grid": grid,
        "mean": float(np.mean(fold_acc)),
        "std": float(np.std(fold_acc, ddof=0)),
        "convergence_warnings": warned[0],
        "predictions": pred,
    }


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit_index, val_index): per class, ``round(n_c * fraction)`` samples (at most ``n_c - 1``,
    so every class keeps a training sample) go to validation, chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    val_parts = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_val = min(members.size - 1, int(np.floor(members.size * fraction + 0.5)))
        val_parts.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val_parts))
    return np.setdiff1d(np.arange(y.size), val), val


def logistic_probe(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    test_labels: ArrayLike,
    C_grid: Iterable[float] = DEFAULT_C_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    standardize: bool = True,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Logistic-regression probe: ``C`` chosen on held-out training data, refit, test once.

    1. Per class, ``round(n_c * val_fraction)`` training samples (at most ``n_c - 1``) are held out
       for validation, chosen by a permutation from ``numpy.random.default_rng(seed)``.
    2. For each ``C`` a :class:`sklearn.linear_model.LogisticRegression` (lbfgs; softmax for >= 3
       classes) is fitted on the rest and scored on the held-out part; the best accuracy wins,
       ties (within 1e-12) going to the smaller ``C``.
    3. A model with that ``C`` is fitted on the whole training set and scored on the test set.

    With ``standardize`` a StandardScaler is fitted on each fit's training samples only. Returns
    ``accuracy``, ``balanced_accuracy``, ``C``, ``val_accuracy`` (per ascending ``C_grid`` value),
    ``C_grid``, ``num_val``, ``convergence_warnings`` and ``predictions`` (int64, for
    ``test_feats``).
    """
    xtr, ytr, xte = _train_test(train_feats, train_labels, test_feats)
    yte = _labels("test_labels", test_labels)
    if yte.shape[0] != xte.shape[0]:
        raise ValueError(f"test_labels has {yte.shape[0]} entries for {xte.shape[0]} rows")
    if xte.shape[0] == 0:
        raise ValueError("test set is empty")
    grid = _c_grid(C_grid)
    frac = float_arg("val_fraction", val_fraction, 0.0, 1.0, lo_open=True)
    if frac >= 1.0:
        raise ValueError(f"val_fraction must be < 1, got {val_fraction!r}")
    seed = int_arg("seed", seed, 0)
    max_iter = int_arg("max_iter", max_iter, 1)
    if ytr.size == 0:
        raise ValueError("training set is empty")
    _check_two_classes(ytr, "train_labels")
    fit_idx, val_idx = _stratified_holdout(ytr, frac, seed)
    if val_idx.size == 0:
        raise ValueError(
            f"no validation samples: val_fraction={frac} of {ytr.size} training samples rounds "
            "to 0 in every class"
        )
    _check_two_classes(ytr[fit_idx], "training part of the split")
    warned = [0]

    def fitted(idx: np.ndarray, c: float) -> Any:
        model = make_classifier("logreg", c, standardize, seed, max_iter)
        with _count_convergence(warned):
            model.fit(xtr[idx], ytr[idx])
        return model

    val_acc = [
        float(np.mean(fitted(fit_idx, c).predict(xtr[val_idx]) == ytr[val_idx])) for c in grid
    ]
    best = _pick_c(grid, val_acc)
    pred = fitted(np.arange(ytr.size), best).predict(xte).astype(np.int64)
    return {
        "accuracy": accuracy(pred, yte),
        "balanced_accuracy": balanced_accuracy(pred, yte),
        "C": best,
        "val_accuracy": val_acc,
        "C_grid": grid,
        "num_val": int(val_idx.size),
        "convergence_warnings": warned[0],
        "predictions": pred,
    }
