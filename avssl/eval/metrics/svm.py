"""The linear SVM of the ESC-50 protocol: LinearSVC's objective solved exactly in the primal
(Keerthi & DeCoste's finite Newton method).
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/metrics/svm.py".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


def _exact_step(margin: np.ndarray, q: np.ndarray, wd: float, dd: float, c: float) -> float:
    """The minimiser s >= 0 of ``phi(s) = f(w + s d)`` (convex, piecewise quadratic).

    With ``m_i = 1 - t_i <w, x_i>`` and ``q_i = t_i <d, x_i>``, sample i is inside the margin
    while ``m_i - s q_i > 0``; ``phi'(s) = A + B s`` between consecutive crossings, with
    ``A = <w, d> - 2C sum(q m)`` and ``B = <d, d> + 2C sum(q^2)`` over the samples inside.
    """
    inside = (margin > 0) | ((margin == 0) & (q < 0))
    a = wd - 2 * c * float(q[inside] @ margin[inside])
    b = dd + 2 * c * float(q[inside] @ q[inside])
    moving = q != 0
    cross = np.full(margin.shape, np.inf)
    cross[moving] = margin[moving] / q[moving]
    later = np.flatnonzero(cross > 0)
    order = later[np.argsort(cross[later], kind="stable")]
    sign = np.where(inside[order], -1.0, 1.0)  # crossing: an inside sample leaves, else enters
    a_seg = a + np.concatenate(([0.0], np.cumsum(sign * -2 * c * q[order] * margin[order])))
    b_seg = b + np.concatenate(([0.0], np.cumsum(sign * 2 * c * q[order] ** 2)))
    ends = np.append(cross[order], np.inf)
    k = int(np.argmax(a_seg + b_seg * ends >= 0))  # first segment whose end has phi' >= 0
    return float(-a_seg[k] / b_seg[k])


def _newton(x: np.ndarray, t: np.ndarray, c: float, w: np.ndarray, max_iter: int) -> bool:
    """Minimise the objective for targets ``t`` in place of ``w``; False if ``max_iter`` ran out."""
    out = x @ w
    inside = t * out < 1
    for _ in range(max_iter):
        xa = x[inside]
        h = 2 * c * (xa.T @ xa)
        h[np.diag_indices_from(h)] += 1.0
        d = np.linalg.solve(h, 2 * c * (xa.T @ t[inside])) - w  # to the least-squares solution
        e = x @ d
        s = _exact_step(1 - t * out, t * e, float(w @ d), float(d @ d), c)
        w += s * d
        out += s * e
        now = t * out < 1
        if np.array_equal(now, inside) and abs(s - 1.0) < 1e-6:
            return True  # a full step to the least-squares solution of its own margin set
        inside = now
    return False


@dataclass
class LinearSVM:
    """One fitted model: ``coef`` (K, or 1 for two classes, by D+1; the last column is the
    intercept) over the features standardised as ``(x - mean) / scale``."""

    coef: np.ndarray
    classes: np.ndarray
    mean: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale @ self.coef[:, :-1].T + self.coef[:, -1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class of the largest decision value (the first on ties); two classes: the second
        class where the decision value is > 0 (as LinearSVC)."""
        dec = self.decision_function(x)
        if self.classes.size == 2:
            return self.classes[(dec[:, 0] > 0).astype(np.int64)]
        return self.classes[np.argmax(dec, axis=1)]


def fit_svm_path(
    x: np.ndarray, y: np.ndarray, grid: list[float], max_iter: int, standardize: bool = True
) -> list[LinearSVM]:
    """One model per C of the ascending ``grid``, each fit warm-started from the previous one.

    With ``standardize`` the features are first scaled by a
    :class:`sklearn.preprocessing.StandardScaler` fitted on ``x``. A fit that runs out of
    ``max_iter`` Newton steps (for some class) warns with a scikit-learn ``ConvergenceWarning``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    mean: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0
    if standardize:
        scaler = StandardScaler().fit(x)
        mean, scale = scaler.mean_, scaler.scale_
        x = scaler.transform(x)
    classes = np.unique(y)
    xt = np.hstack([x, np.ones((x.shape[0], 1))])
    targets = [np.where(y == k, 1.0, -1.0) for k in (classes[1:] if classes.size == 2 else classes)]
    coef = np.zeros((len(targets), xt.shape[1]))
    path = []
    with threadpool_limits(limits=1, user_api="blas"):  # (D+1)^2 systems: threads only wait
        for c in grid:
            if not all(
                [_newton(xt, t, c, w, max_iter) for t, w in zip(targets, coef, strict=True)]
            ):
                warnings.warn(
                    f"SVM C={c}: {max_iter} Newton steps ran out", ConvergenceWarning, stacklevel=2
                )
            path.append(LinearSVM(coef.copy(), classes, mean, scale))
    return path


class SVMClassifier:
    """``fit`` / ``predict`` for one C (the classifier of the ESC-50 protocol, for refits)."""

    def __init__(self, C: float = 1.0, standardize: bool = True, max_iter: int = 10000) -> None:
        self.C, self.standardize, self.max_iter = C, standardize, max_iter
        self.model: LinearSVM | None = None

    def fit(self, x: Any, y: Any) -> SVMClassifier:
        x, y = np.asarray(x, np.float64), np.asarray(y)
        self.model = fit_svm_path(x, y, [self.C], self.max_iter, self.standardize)[0]
        return self

    def predict(self, x: Any) -> np.ndarray:
        if self.model is None:
            raise ValueError("SVMClassifier.predict before fit")
        return self.model.predict(np.asarray(x, np.float64))
