"""Evaluation metrics for learnt audio / visual representations: pure functions, no I/O.

NumPy arrays in, plain Python floats / ints / dicts out (:func:`knn_predict` returns its
predictions as an int64 array). Every function is deterministic: the only randomness is the
explicit ``seed`` of the two probes (liblinear's coordinate-descent order and the probe's
train/validation split), and every tie has a stated rule.

Classification:

* :func:`accuracy`, :func:`balanced_accuracy`, :func:`confusion_matrix`.
* :func:`knn_predict` -- weighted k-NN on cosine similarity (Wu et al. 2018, *InstDisc*).
* :func:`linear_svm_folds` -- the ESC-50 protocol: leave-one-official-fold-out, with ``C``
  chosen by an inner leave-one-fold-out cross-validation over the training folds only.
* :func:`logistic_probe` -- multinomial logistic regression, ``C`` chosen on a held-out part of
  the training set.

Retrieval:

* :func:`retrieval_metrics` -- R@k, nDCG@k (graded relevance) and mAP from a similarity matrix.
* :func:`label_relevance`, :func:`multilabel_relevance` -- relevance matrices from labels (the
  latter optionally graded by distance in the AudioSet ontology).

Sound-source localisation (VGG-SS / Flickr-SoundNet style):

* :func:`boxes_to_mask`, :func:`ciou`, :func:`localization_summary`, :func:`pointing_game`.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from avssl.checks import float_arg, int_arg

__all__ = [
    "DEFAULT_C_GRID",
    "accuracy",
    "balanced_accuracy",
    "boxes_to_mask",
    "ciou",
    "confusion_matrix",
    "knn_predict",
    "label_relevance",
    "linear_svm_folds",
    "localization_summary",
    "logistic_probe",
    "multilabel_relevance",
    "pointing_game",
    "retrieval_metrics",
]

DEFAULT_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)

# Elements of one (rows x columns) float64 work buffer in the chunked k-NN / retrieval loops
# (2**22 elements = 32 MiB); a few such buffers are alive at once.
_CHUNK_ELEMENTS = 2**22

# Two mean scores closer than this are a tie (then the smaller C wins).
_TIE_TOL = 1e-12


# --------------------------------------------------------------------------- validation helpers


def _labels(name: str, values: ArrayLike, *, non_negative: bool = True) -> np.ndarray:
    """1-D int64 array of class labels (integer dtype required: 1.0 is not a class id)."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {a.shape}")
    if a.size == 0:
        a = a.astype(np.int64)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if non_negative and a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {int(a.min())}")
    return a


def _features(name: str, values: ArrayLike) -> np.ndarray:
    """2-D finite float64 array (rows = samples)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples, dim), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf")
    return a


def _pred_target(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _labels("pred", pred)
    t = _labels("target", target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target lengths differ: {p.size} vs {t.size}")
    if t.size == 0:
        raise ValueError("pred and target are empty")
    return p, t


def _num_classes_arg(num_classes: object, *arrays: np.ndarray) -> int:
    """``num_classes`` checked against the labels; None -> max label + 1."""
    top = max((int(a.max()) for a in arrays if a.size), default=-1)
    if num_classes is None:
        return top + 1
    n = int_arg("num_classes", num_classes, 1)
    if top >= n:
        raise ValueError(f"label {top} is out of range for num_classes={n}")
    return n


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
        if s > best + _TIE_TOL:
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


def _chunk_rows(chunk_size: object, rows: int, cols: int) -> int:
    if chunk_size is not None:
        return int_arg("chunk_size", chunk_size, 1)
    return max(1, min(max(rows, 1), _CHUNK_ELEMENTS // max(cols, 1)))


# --------------------------------------------------------------------------- classification


def accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of samples with ``pred[i] == target[i]``.

    ``pred`` and ``target`` are equal-length, non-empty 1-D integer arrays of class ids >= 0.
    """
    p, t = _pred_target(pred, target)
    return float(np.mean(p == t))


def balanced_accuracy(pred: ArrayLike, target: ArrayLike, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``target``.

    ``recall_c = #{i : target[i] == c and pred[i] == c} / #{i : target[i] == c}``, averaged with
    equal weight over every class ``c`` that occurs in ``target`` (a class that is only ever
    predicted has no recall and is left out, as in :func:`sklearn.metrics.balanced_accuracy_score`).
    ``num_classes``, if given, only validates that every label is ``< num_classes``.
    """
    p, t = _pred_target(pred, target)
    _num_classes_arg(num_classes, p, t)
    classes = np.unique(t)
    recalls = [float(np.mean(p[t == c] == c)) for c in classes]
    return float(np.mean(recalls))


def confusion_matrix(pred: ArrayLike, target: ArrayLike, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; ``cm[t, p]`` = #samples of true class ``t``
    predicted as ``p`` (rows = true class, columns = predicted class)."""
    p, t = _pred_target(pred, target)
    n = int_arg("num_classes", num_classes, 1)
    _num_classes_arg(n, p, t)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by ``max(||row||, 1e-12)`` (as torch.nn.functional.normalize: a zero row
    stays zero, i.e. has cosine similarity 0 with everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def knn_predict(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    k: int = 20,
    temperature: float | None = 0.07,
    num_classes: int | None = None,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Weighted k-nearest-neighbour labels for ``test_feats`` (int64 array of length M).

    Rows of both feature matrices are L2-normalised and compared by cosine similarity
    ``s = <x, y>``. For each test sample the ``k`` most similar training samples vote for their
    label: with weight ``exp(s / temperature)`` (Wu et al. 2018, *Unsupervised Feature Learning
    via Non-Parametric Instance Discrimination*, weighted kNN; they use k=200, T=0.07), or with
    weight 1 (plain majority vote) when ``temperature`` is None. The prediction is the class with
    the largest summed weight.

    Ties: neighbours with equal similarity at the k-th place are taken in order of training index
    (lowest first); equal vote totals go to the lowest class id. ``k`` larger than the training
    set is clamped to its size. Weights are computed as ``exp((s - s_max) / T)`` per test sample,
    which scales all of that sample's votes by one factor and so leaves the vote unchanged while
    avoiding overflow.

    Test samples are processed in chunks of ``chunk_size`` rows (default: about 4M similarity
    entries per chunk), so 50k x 50k never needs the full similarity matrix in memory.
    """
    tr = _features("train_feats", train_feats)
    te = _features("test_feats", test_feats)
    y = _labels("train_labels", train_labels)
    if tr.shape[0] == 0:
        raise ValueError("train_feats is empty")
    if y.shape[0] != tr.shape[0]:
        raise ValueError(
            f"train_labels has {y.shape[0]} entries for {tr.shape[0]} train_feats rows"
        )
    if te.shape[1] != tr.shape[1]:
        raise ValueError(f"feature dims differ: train {tr.shape[1]}, test {te.shape[1]}")
    k = int_arg("k", k, 1)
    temp = None if temperature is None else float_arg("temperature", temperature, 0.0, lo_open=True)
    n_cls = _num_classes_arg(num_classes, y)

    n_train, n_test = tr.shape[0], te.shape[0]
    kk = min(k, n_train)
    tr = _l2_normalise(tr)
    te = _l2_normalise(te)
    step = _chunk_rows(chunk_size, n_test, n_train)
    out = np.empty(n_test, dtype=np.int64)
    for start in range(0, n_test, step):
        s = te[start : start + step] @ tr.T  # (c, N)
        c = s.shape[0]
        if kk == n_train:
            sel = np.ones_like(s, dtype=bool)
        else:
            kth = -np.partition(-s, kk - 1, axis=1)[:, kk - 1 : kk]  # k-th largest, (c, 1)
            greater = s > kth
            need = kk - greater.sum(axis=1, keepdims=True)
            equal = s == kth
            sel = greater | (equal & (np.cumsum(equal, axis=1) <= need))
        rows, cols = np.nonzero(sel)  # row-major: exactly kk per row, by training index
        idx = cols.reshape(c, kk)
        sims = s[rows, cols].reshape(c, kk)
        if temp is None:
            w = np.ones_like(sims)
        else:
            w = np.exp((sims - sims.max(axis=1, keepdims=True)) / temp)
        flat = (np.arange(c)[:, None] * n_cls + y[idx]).ravel()
        votes = np.bincount(flat, weights=w.ravel(), minlength=c * n_cls).reshape(c, n_cls)
        out[start : start + c] = votes.argmax(axis=1)  # first maximum = lowest class id
    return out


# --------------------------------------------------------------------------- linear probes


def _make_classifier(kind: str, c: float, standardize: bool, seed: int, max_iter: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind == "svm":
        clf: Any = LinearSVC(C=c, dual="auto", max_iter=max_iter, random_state=seed)
    else:
        # lbfgs: softmax (multinomial) over >= 3 classes; scikit-learn's default for lbfgs, so no
        # multi_class argument (deprecated in 1.5, removed later).
        clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf) if standardize else clf


def _check_two_classes(y: np.ndarray, what: str) -> None:
    if np.unique(y).size < 2:
        raise ValueError(f"{what} holds a single class ({int(y[0])}); a classifier needs two")


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
    The classifier is :class:`sklearn.svm.LinearSVC` (squared hinge, L2, one-vs-rest,
    ``dual="auto"``, ``random_state=seed``), preceded when ``standardize`` is set by a
    :class:`sklearn.preprocessing.StandardScaler` fitted on that fit's training samples only.

    ``trace``, if given, receives one dict per fit, in order: ``test_fold``, ``stage``
    (``"select"`` or ``"final"``), ``C``, ``val_fold`` (the inner held-out fold; None for the
    final fit), ``train_index`` / ``eval_index`` (the sample indices fitted on / scored on) and
    ``train_folds`` / ``eval_folds`` (frozensets of the fold ids of those samples, read back from
    ``folds[index]``), so that a test can prove where each fit's data came from.

    Returns ``fold_ids``, ``fold_accuracy`` (per test fold), ``chosen_C`` (per test fold),
    ``inner_accuracy`` (per test fold, one mean inner accuracy per ``C_grid`` value, ascending),
    ``C_grid`` (ascending), ``mean`` and ``std`` of the fold accuracies -- **population** std,
    ``ddof=0`` -- and ``convergence_warnings`` (how many liblinear fits hit ``max_iter``).

    Raises ValueError for fewer than 3 distinct folds (the inner cross-validation needs two
    training folds), mismatched lengths, non-finite features, an empty or non-positive
    ``C_grid``, or a training split with a single class.
    """
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
    grid = _c_grid(C_grid)
    seed = int_arg("seed", seed, 0)
    max_iter = int_arg("max_iter", max_iter, 1)
    warned = [0]

    def fit_score(
        train: np.ndarray, evaluate: np.ndarray, c: float, test_fold: int, val: int | None
    ) -> float:
        _check_two_classes(y[train], f"training split (folds {sorted(set(fo[train].tolist()))})")
        if trace is not None:
            trace.append(
                {
                    "test_fold": test_fold,
                    "stage": "select" if val is not None else "final",
                    "C": c,
                    "val_fold": val,
                    "train_index": train.copy(),
                    "eval_index": evaluate.copy(),
                    "train_folds": frozenset(int(f) for f in fo[train]),
                    "eval_folds": frozenset(int(f) for f in fo[evaluate]),
                }
            )
        model = _make_classifier("svm", c, standardize, seed, max_iter)
        with _count_convergence(warned):
            model.fit(x[train], y[train])
        return float(np.mean(model.predict(x[evaluate]) == y[evaluate]))

    fold_acc: list[float] = []
    chosen: list[float] = []
    inner: list[list[float]] = []
    for f in fold_ids:
        train_folds = [g for g in fold_ids if g != f]
        scores = []
        for c in grid:
            accs = [
                fit_score(
                    np.flatnonzero(np.isin(fo, [g for g in train_folds if g != v])),
                    np.flatnonzero(fo == v),
                    c,
                    f,
                    v,
                )
                for v in train_folds
            ]
            scores.append(float(np.mean(accs)))
        best = _pick_c(grid, scores)
        acc = fit_score(np.flatnonzero(fo != f), np.flatnonzero(fo == f), best, f, None)
        fold_acc.append(acc)
        chosen.append(best)
        inner.append(scores)
    return {
        "fold_ids": fold_ids,
        "fold_accuracy": fold_acc,
        "chosen_C": chosen,
        "inner_accuracy": inner,
        "C_grid": grid,
        "mean": float(np.mean(fold_acc)),
        "std": float(np.std(fold_acc, ddof=0)),
        "convergence_warnings": warned[0],
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
    fit = np.setdiff1d(np.arange(y.size), val)
    return fit, val


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

    1. The training set is split per class (stratified): ``round(n_c * val_fraction)`` samples of
       class ``c`` (at most ``n_c - 1``) are held out for validation, chosen by a permutation from
       ``numpy.random.default_rng(seed)``.
    2. For each ``C`` (ascending) a :class:`sklearn.linear_model.LogisticRegression` (lbfgs;
       multinomial softmax for >= 3 classes, the plain binary logistic model for 2) is fitted on
       the rest and scored (accuracy) on the held-out part; the best ``C`` wins, ties (within
       1e-12) going to the smaller ``C``.
    3. A model with that ``C`` is fitted on the whole training set and scored on the test set.

    The test set is used only in step 3. With ``standardize`` a StandardScaler is fitted on each
    fit's training samples only. Returns ``accuracy``, ``balanced_accuracy`` (mean recall over the
    classes present in ``test_labels``), ``C``, ``val_accuracy`` (one per ``C_grid`` value,
    ascending), ``C_grid``, ``num_val`` and ``convergence_warnings``.
    """
    xtr = _features("train_feats", train_feats)
    xte = _features("test_feats", test_feats)
    ytr = _labels("train_labels", train_labels)
    yte = _labels("test_labels", test_labels)
    if ytr.shape[0] != xtr.shape[0]:
        raise ValueError(f"train_labels has {ytr.shape[0]} entries for {xtr.shape[0]} rows")
    if yte.shape[0] != xte.shape[0]:
        raise ValueError(f"test_labels has {yte.shape[0]} entries for {xte.shape[0]} rows")
    if xte.shape[0] == 0:
        raise ValueError("test set is empty")
    if xte.shape[1] != xtr.shape[1]:
        raise ValueError(f"feature dims differ: train {xtr.shape[1]}, test {xte.shape[1]}")
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
        model = _make_classifier("logreg", c, standardize, seed, max_iter)
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
    }


# --------------------------------------------------------------------------- retrieval


def retrieval_metrics(
    sim: ArrayLike,
    relevance: ArrayLike,
    ks: Sequence[int] = (1, 5, 10, 30),
    exclude_self: bool = False,
    *,
    chunk_size: int | None = None,
) -> dict[str, float | int]:
    """Ranking metrics of ``sim`` (num_queries, num_items) against graded ``relevance`` (>= 0).

    Each query ranks the items by decreasing ``sim`` (equal scores: lower item index first). With
    ``exclude_self`` (intra-modal retrieval, query ``i`` is item ``i``; needs a square matrix)
    item ``i`` is removed from query ``i``'s ranking and from its ideal ranking. With ``rel_r``
    the relevance of the item at rank ``r`` (1-based) and ``n`` the ranking's length:

    * ``R@k`` -- fraction of queries with at least one relevant item (``rel > 0``) in the top k;
    * ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{r <= min(k, n)} rel_r / log2(r + 1)`` and
      ``IDCG@k`` the same sum over the query's relevances sorted in decreasing order;
    * ``mAP`` -- mean over queries of average precision with binary relevance ``rel > 0``:
      ``AP = (1 / #relevant) * sum over relevant ranks r of precision@r``, over the full ranking
      (for graded relevance this binarises at ``> 0``).

    A query with no relevant item has zero ideal DCG: it is excluded from every mean (its R@k,
    nDCG and AP are undefined) and counted as ``num_excluded``. ``k`` beyond ``n`` acts as ``n``.
    Returns ``R@k`` and ``nDCG@k`` for each ``k``, ``mAP``, ``num_queries``, ``num_evaluated``
    and ``num_excluded``. Raises ValueError when no query has a relevant item.
    """
    s_all = _features("sim", sim)
    try:
        rel_all = np.asarray(relevance, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("relevance must be a numeric array") from None
    if rel_all.shape != s_all.shape:
        raise ValueError(f"relevance shape {rel_all.shape} differs from sim shape {s_all.shape}")
    if not np.isfinite(rel_all).all() or (rel_all < 0).any():
        raise ValueError("relevance must be finite and >= 0")
    if isinstance(ks, int | np.integer):
        ks = (int(ks),)
    k_list = sorted({int_arg("k", k, 1) for k in ks})
    if not k_list:
        raise ValueError("ks is empty")
    n_q, n_items = s_all.shape
    if exclude_self and n_q != n_items:
        raise ValueError(f"exclude_self needs a square sim matrix, got {s_all.shape}")
    n = n_items - 1 if exclude_self else n_items
    if n_q == 0 or n < 1:
        raise ValueError(f"nothing to rank: sim has shape {s_all.shape}")

    disc = 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))
    ranks = np.arange(1, n + 1, dtype=np.float64)
    sums = {f"R@{k}": 0.0 for k in k_list} | {f"nDCG@{k}": 0.0 for k in k_list} | {"mAP": 0.0}
    evaluated = 0
    step = _chunk_rows(chunk_size, n_q, n_items)
    for start in range(0, n_q, step):
        s = s_all[start : start + step].copy()
        r = rel_all[start : start + step]
        if exclude_self:
            rows = np.arange(s.shape[0])
            s[rows, start + rows] = -np.inf  # sorts last; dropped below
        order = np.argsort(-s, axis=1, kind="stable")[:, :n]
        ranked = np.take_along_axis(r, order, axis=1)  # (c, n)
        valid = (ranked > 0).any(axis=1)
        if not valid.any():
            continue
        ranked = ranked[valid]
        evaluated += int(valid.sum())
        ideal = -np.sort(-ranked, axis=1)
        for k in k_list:
            kk = min(k, n)
            dcg = ranked[:, :kk] @ disc[:kk]
            idcg = ideal[:, :kk] @ disc[:kk]  # > 0: the top ideal relevance is > 0
            sums[f"nDCG@{k}"] += float(np.sum(dcg / idcg))
            sums[f"R@{k}"] += float(np.sum((ranked[:, :kk] > 0).any(axis=1)))
        hit = ranked > 0
        precision = np.cumsum(hit, axis=1) / ranks
        sums["mAP"] += float(np.sum((precision * hit).sum(axis=1) / hit.sum(axis=1)))
    if evaluated == 0:
        raise ValueError("no query has a relevant item (relevance > 0): metrics are undefined")
    out: dict[str, float | int] = {}
    for k in k_list:
        out[f"R@{k}"] = sums[f"R@{k}"] / evaluated
    for k in k_list:
        out[f"nDCG@{k}"] = sums[f"nDCG@{k}"] / evaluated
    out["mAP"] = sums["mAP"] / evaluated
    out["num_queries"] = n_q
    out["num_evaluated"] = evaluated
    out["num_excluded"] = n_q - evaluated
    return out


def label_relevance(query_labels: ArrayLike, item_labels: ArrayLike) -> np.ndarray:
    """Single-label relevance: ``rel[q, i] = 1.0`` if ``query_labels[q] == item_labels[i]``,
    else 0.0, as a float64 (num_queries, num_items) array."""
    q = np.asarray(query_labels)
    it = np.asarray(item_labels)
    if q.ndim != 1 or it.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shapes {q.shape} and {it.shape}")
    return (q[:, None] == it[None, :]).astype(np.float64)


def _label_sets(name: str, sets: Iterable[Iterable[str]]) -> list[frozenset[str]]:
    if isinstance(sets, str | bytes):
        raise ValueError(f"{name} must be a sequence of label collections, not a string")
    out = []
    for i, s in enumerate(sets):
        if isinstance(s, str | bytes):
            raise ValueError(f"{name}[{i}] must be a collection of labels, got the string {s!r}")
        out.append(frozenset(s))
    return out


def _ontology_parents(ontology: object) -> dict[str, list[str]]:
    """id -> parent ids, from the AudioSet ontology.json list (or a path to that file)."""
    if isinstance(ontology, str | Path):
        with open(ontology, encoding="utf-8") as fh:
            ontology = json.load(fh)
    if not isinstance(ontology, Sequence) or isinstance(ontology, str | bytes):
        raise ValueError("ontology must be the ontology.json list of nodes (or a path to it)")
    parents: dict[str, list[str]] = {}
    for node in ontology:
        if not isinstance(node, Mapping) or "id" not in node:
            raise ValueError(f"ontology node without an 'id': {node!r}")
        parents.setdefault(str(node["id"]), [])
    for node in ontology:
        for child in node.get("child_ids", []):
            if child not in parents:
                raise ValueError(f"ontology child {child!r} of {node['id']!r} is not a node")
            parents[child].append(str(node["id"]))
    return parents


def _up_distances(label: str, parents: Mapping[str, list[str]]) -> dict[str, int]:
    """Ancestor -> fewest child->parent edges from ``label`` (``label`` itself at 0), by BFS."""
    dist = {label: 0}
    queue = deque([label])
    while queue:
        node = queue.popleft()
        for p in parents[node]:
            if p not in dist:
                dist[p] = dist[node] + 1
                queue.append(p)
    return dist


def multilabel_relevance(
    query_label_sets: Iterable[Iterable[str]],
    item_label_sets: Iterable[Iterable[str]],
    ontology: Sequence[Mapping[str, Any]] | str | Path | None = None,
) -> np.ndarray:
    """Graded relevance (num_queries, num_items) in [0, 1] between multi-label samples.

    Without ``ontology``: the Jaccard overlap ``|A & B| / |A | B|`` of the two label sets (0 when
    both are empty). Labels are any hashable values.

    With ``ontology`` (the AudioSet ``ontology.json`` list of ``{"id", "name", "child_ids", ...}``
    nodes, or a path to it; labels are then node ids such as ``"/m/0342h"``): two labels ``a, b``
    have tree distance ``d(a, b) = min over common ancestors c of (up(a, c) + up(b, c))``, where
    ``up(x, c)`` is the fewest child->parent edges from ``x`` up to ``c`` (``x`` is its own
    ancestor at 0). The ontology is a DAG (a few nodes have two parents), so this takes the
    shortest route through any lowest common ancestor. Label relevance is ``1 / (1 + d)`` --
    1 for the same label, 1/2 for parent/child, 1/3 for siblings -- and 0 when the labels share
    no ancestor (AudioSet has 7 top-level categories and no common root, so e.g. a "Music" label
    and a "Human sounds" label are unrelated). The relevance of two label sets is the maximum
    over all label pairs (0 if either set is empty).

    Why this definition: the brief asks for the ontology-based relevance of Arandjelović &
    Zisserman, *Objects that Sound* (ECCV 2018). The paper's retrieval-evaluation passage could
    not be retrieved from the stored copies available while this was written (only the opening
    pages of the paper were reachable), so this is the fallback definition of the project brief,
    not a verified reproduction of the paper's; treat nDCG numbers computed with it as
    comparable only to numbers computed with this same function.

    Unknown label ids raise ValueError. Memory: the output is a dense float64 matrix.
    """
    qs = _label_sets("query_label_sets", query_label_sets)
    its = _label_sets("item_label_sets", item_label_sets)
    vocab = sorted(set().union(*qs, *its), key=repr)
    index = {lab: i for i, lab in enumerate(vocab)}
    n_lab = len(vocab)
    rel = np.zeros((len(qs), len(its)), dtype=np.float64)
    if n_lab == 0 or not qs or not its:
        return rel
    if ontology is None:
        qh = np.zeros((len(qs), n_lab))
        ih = np.zeros((len(its), n_lab))
        for r, s in enumerate(qs):
            qh[r, [index[lab] for lab in s]] = 1.0
        for r, s in enumerate(its):
            ih[r, [index[lab] for lab in s]] = 1.0
        inter = qh @ ih.T
        union = qh.sum(1)[:, None] + ih.sum(1)[None, :] - inter
        np.divide(inter, union, out=rel, where=union > 0)
        return rel

    parents = _ontology_parents(ontology)
    unknown = [lab for lab in vocab if lab not in parents]
    if unknown:
        raise ValueError(f"labels not in the ontology: {unknown[:10]}")
    ups = [_up_distances(lab, parents) for lab in vocab]
    lab_rel = np.zeros((n_lab, n_lab))
    for a in range(n_lab):
        for b in range(a, n_lab):
            common = ups[a].keys() & ups[b].keys()
            if common:
                d = min(ups[a][c] + ups[b][c] for c in common)
                lab_rel[a, b] = lab_rel[b, a] = 1.0 / (1.0 + d)
    # Items as padded label-index rows; index n_lab points at a 0 sentinel (padding / empty set).
    width = max((len(s) for s in its), default=0) or 1
    item_idx = np.full((len(its), width), n_lab, dtype=np.int64)
    for r, s in enumerate(its):
        item_idx[r, : len(s)] = sorted(index[lab] for lab in s)
    best_per_label = np.zeros(n_lab + 1)
    for r, s in enumerate(qs):
        if not s:
            continue
        best_per_label[:n_lab] = lab_rel[[index[lab] for lab in s]].max(axis=0)
        rel[r] = best_per_label[item_idx].max(axis=1)
    return rel


# --------------------------------------------------------------------------- localisation


def _box_array(boxes: Any) -> np.ndarray:
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("boxes must be numeric [x1, y1, x2, y2] rows") from None
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) as [x1, y1, x2, y2], got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("boxes hold NaN or inf")
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise ValueError("every box needs x1 <= x2 and y1 <= y2")
    return np.clip(b, 0.0, 1.0)


def _binary_box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    cx = np.arange(width) + 0.5
    cy = np.arange(height) + 0.5
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        inside_x = (cx >= x1 * width) & (cx <= x2 * width)
        inside_y = (cy >= y1 * height) & (cy <= y2 * height)
        mask |= inside_y[:, None] & inside_x[None, :]
    return mask


def boxes_to_mask(
    boxes_norm: ArrayLike | Sequence[ArrayLike],
    height: int,
    width: int,
    soft: bool = False,
    *,
    consensus: int | None = None,
) -> np.ndarray:
    """Ground-truth map (height, width), float64, from normalised ``[x1, y1, x2, y2]`` boxes.

    Pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` in pixel units and is inside a box when its
    centre ``(j + 0.5, i + 0.5)`` lies in ``[x1 * width, x2 * width] x [y1 * height, y2 * height]``
    (closed). Coordinates are clipped to [0, 1] first (VGG-SS has a few boxes slightly outside;
    EZ-VSL clips them the same way). The reference EZ-VSL/LVS code instead fills
    ``map[int(y1 * H):int(y2 * H), int(x1 * W):int(x2 * W)]`` (truncation), which can differ from
    the centre rule by one pixel row/column at a box edge.

    * ``soft=False``: ``boxes_norm`` is one (B, 4) box list; the map is 1 on the union of the
      boxes, 0 elsewhere (VGG-SS style; B = 0 gives an all-zero map).
    * ``soft=True``: ``boxes_norm`` is a list of box lists, one per annotator; the map is the mean
      of the annotators' binary masks (a pixel marked by 2 of 3 annotators gets 2/3). With
      ``consensus=m`` it is instead ``min(count / m, 1)`` -- the Flickr-SoundNet consensus map of
      Senocak et al. as implemented in LVS / EZ-VSL (``m = 2``: two agreeing annotators suffice).
    """
    height = int_arg("height", height, 1)
    width = int_arg("width", width, 1)
    if not soft:
        if consensus is not None:
            raise ValueError("consensus applies only with soft=True")
        return _binary_box_mask(_box_array(boxes_norm), height, width).astype(np.float64)
    if isinstance(boxes_norm, np.ndarray) and boxes_norm.ndim != 3:
        raise ValueError("soft=True takes one box list per annotator (a list of (B, 4) lists)")
    annotators = list(boxes_norm)  # type: ignore[arg-type]
    if not annotators:
        raise ValueError("soft=True needs at least one annotator's box list")
    count = np.zeros((height, width))
    for boxes in annotators:
        count += _binary_box_mask(_box_array(boxes), height, width)
    if consensus is None:
        return count / len(annotators)
    m = int_arg("consensus", consensus, 1)
    return np.minimum(count / m, 1.0)


def _map2d(name: str, values: ArrayLike) -> np.ndarray:
    a = _features(name, values)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    return a


def _resize_bilinear(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` in float64."""
    if heatmap.shape == shape:
        return heatmap
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float64))[None, None]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False)
    return out[0, 0].numpy().astype(np.float64)


def _binarise(hm: np.ndarray, threshold: str | float) -> np.ndarray:
    if isinstance(threshold, str):
        if threshold != "median":
            raise ValueError(f"threshold must be 'median' or a number in [0, 1], got {threshold!r}")
        flat = np.sort(hm, axis=None)
        return hm >= flat[flat.size // 2]
    t = float_arg("threshold", threshold, 0.0, 1.0)
    lo, hi = float(hm.min()), float(hm.max())
    norm = (hm - lo) / (hi - lo) if hi > lo else np.zeros_like(hm)
    return norm >= t


def ciou(heatmap: ArrayLike, gt: ArrayLike, threshold: str | float = "median") -> float:
    """Consensus IoU of a localisation heatmap against a ground-truth map (Senocak et al. 2018).

    ``heatmap`` (h, w) is first resized to ``gt``'s (H, W) when the shapes differ (bilinear,
    ``align_corners=False``, via :func:`torch.nn.functional.interpolate`), then binarised:

    * ``"median"`` (default): ``pred = heatmap >= v`` with ``v = sort(heatmap.ravel())[H*W // 2]``
      (the upper median), so about half the pixels are predicted. This is exactly the EZ-VSL
      (Mo & Morgado 2022) evaluation: ``thr = np.sort(pred.flatten())[int(H * W * 0.5)]`` then
      ``infer >= thr`` on the min-max normalised map (the normalisation is monotone, so it does
      not change the selected pixels). The LVS code (Chen et al. 2021) uses the same ``thr`` but
      a strict ``pred > thr`` (plus pixels already equal to 1, the maximum); the two differ only
      on pixels equal to ``thr``, i.e. on plateaus of the map.
    * a number ``t`` in [0, 1]: ``pred = norm >= t`` on the min-max normalised map
      ``norm = (h - min) / (max - min)``; a constant heatmap normalises to all zeros.

    With ``pred`` in {0, 1} and ``gt`` in [0, 1]::

        cIoU = sum(pred * gt) / (sum(gt) + sum(pred * (1 - gt)))

    For a binary ``gt`` this equals the reference code's ``sum(gt) + sum(pred * [gt == 0])``
    denominator; for a soft (consensus) ``gt`` the two differ and this one is used. A constant
    heatmap with the median rule selects every pixel, giving ``sum(gt) / (H * W)`` for binary gt.
    Raises ValueError if ``gt`` is all zero (cIoU undefined) or outside [0, 1].
    """
    g = _map2d("gt", gt)
    if (g < 0).any() or (g > 1).any():
        raise ValueError("gt values must lie in [0, 1]")
    gsum = float(g.sum())
    if gsum <= 0:
        raise ValueError("gt is all zero: cIoU is undefined")
    hm = _resize_bilinear(_map2d("heatmap", heatmap), (g.shape[0], g.shape[1]))
    pred = _binarise(hm, threshold).astype(np.float64)
    return float((pred * g).sum() / (gsum + (pred * (1.0 - g)).sum()))


def localization_summary(
    cious: ArrayLike, thresholds: ArrayLike | None = None
) -> dict[str, float | int]:
    """Summary of per-image cIoUs: ``cIoU@0.5``, ``AUC``, ``mean_cIoU`` and ``count``.

    ``cIoU@0.5`` is the fraction of images with cIoU >= 0.5. The success rate at ``t`` is the
    fraction with cIoU >= t; ``AUC`` is the trapezoid-rule area under the success rate over
    ``thresholds`` (default ``np.arange(0, 1.0001, 0.05)``: 0, 0.05, ..., 1, so x runs from 0 to
    1) -- as ``sklearn.metrics.auc`` over ``0.05 * i, i = 0..20`` in the LVS / EZ-VSL code.
    """
    c = np.asarray(cious, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"cious must be a non-empty 1-D array, got shape {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any() or (c > 1).any():
        raise ValueError("cious must be finite values in [0, 1]")
    x = np.arange(0, 1.0001, 0.05) if thresholds is None else np.asarray(thresholds, np.float64)
    if x.ndim != 1 or x.size < 2 or not np.isfinite(x).all() or (np.diff(x) <= 0).any():
        raise ValueError("thresholds must be a strictly increasing 1-D array of >= 2 numbers")
    rate = (c[None, :] >= x[:, None]).mean(axis=1)
    auc = float(np.sum(np.diff(x) * (rate[1:] + rate[:-1]) / 2.0))
    return {
        "cIoU@0.5": float(np.mean(c >= 0.5)),
        "AUC": auc,
        "mean_cIoU": float(np.mean(c)),
        "count": int(c.size),
    }


def pointing_game(
    heatmap: ArrayLike, boxes_norm: ArrayLike, size: tuple[int, int] | None = None
) -> float:
    """1.0 if the heatmap's maximum falls inside a ground-truth box, else 0.0.

    The heatmap is resized (bilinear, as in :func:`ciou`) to ``size = (height, width)`` when given
    and different; the maximum is the first in row-major order on ties; "inside" uses the
    pixel-centre rule of :func:`boxes_to_mask` on that grid. Raises ValueError without boxes.
    """
    hm = _map2d("heatmap", heatmap)
    if size is not None:
        if len(size) != 2:
            raise ValueError(f"size must be (height, width), got {size!r}")
        hm = _resize_bilinear(hm, (int_arg("height", size[0], 1), int_arg("width", size[1], 1)))
    boxes = _box_array(boxes_norm)
    if boxes.shape[0] == 0:
        raise ValueError("pointing_game needs at least one box")
    i, j = np.unravel_index(int(np.argmax(hm)), hm.shape)
    return float(_binary_box_mask(boxes, hm.shape[0], hm.shape[1])[i, j])
