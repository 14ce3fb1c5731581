"""Classification metrics (accuracy, balanced accuracy, confusion matrix, weighted k-NN) and the
argument checks every metric shares: arrays in, validated NumPy arrays out."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from avssl.checks import float_arg, int_arg

# Elements of one (rows x columns) float64 work buffer in the chunked k-NN / retrieval loops
# (2**22 elements = 32 MiB); a few such buffers are alive at once.
_CHUNK_ELEMENTS = 2**22


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


def _chunk_rows(chunk_size: object, rows: int, cols: int) -> int:
    if chunk_size is not None:
        return int_arg("chunk_size", chunk_size, 1)
    return max(1, min(max(rows, 1), _CHUNK_ELEMENTS // max(cols, 1)))


def _train_test(
    train_feats: ArrayLike, train_labels: ArrayLike, test_feats: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training features and labels and test features, checked against each other."""
    tr = _features("train_feats", train_feats)
    te = _features("test_feats", test_feats)
    y = _labels("train_labels", train_labels)
    if y.shape[0] != tr.shape[0]:
        raise ValueError(f"train_labels has {y.shape[0]} entries for {tr.shape[0]} rows")
    if te.shape[1] != tr.shape[1]:
        raise ValueError(f"feature dims differ: train {tr.shape[1]}, test {te.shape[1]}")
    return tr, y, te


def accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of samples with ``pred[i] == target[i]`` (equal-length, non-empty 1-D integer
    arrays of class ids >= 0)."""
    p, t = _pred_target(pred, target)
    return float(np.mean(p == t))


def balanced_accuracy(pred: ArrayLike, target: ArrayLike, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``target``.

    A class that is only ever predicted has no recall and is left out, as in
    :func:`sklearn.metrics.balanced_accuracy_score`. ``num_classes``, if given, only validates
    that every label is ``< num_classes``.
    """
    p, t = _pred_target(pred, target)
    _num_classes_arg(num_classes, p, t)
    return float(np.mean([float(np.mean(p[t == c] == c)) for c in np.unique(t)]))


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

    Rows are L2-normalised and compared by cosine similarity ``s``. The ``k`` most similar
    training samples vote for their label with weight ``exp(s / temperature)`` (Wu et al. 2018,
    *Unsupervised Feature Learning via Non-Parametric Instance Discrimination*; they use k=200,
    T=0.07), or 1 when ``temperature`` is None; the class with the largest summed weight wins.
    Weights are ``exp((s - s_max) / T)`` per test sample (the same vote, no overflow).

    Ties: neighbours with equal similarity at the k-th place are taken in order of training index
    (lowest first); equal vote totals go to the lowest class id. ``k`` is clamped to the training
    set size. Test samples go in chunks of ``chunk_size`` rows (default: about 4M similarity
    entries), so 50k x 50k never needs the full similarity matrix in memory.
    """
    tr, y, te = _train_test(train_feats, train_labels, test_feats)
    if tr.shape[0] == 0:
        raise ValueError("train_feats is empty")
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
