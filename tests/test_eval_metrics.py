"""Evaluation metrics (avssl/eval/metrics/): hand-computed cases, properties, protocol rules.

Expected values are worked out by hand in the comments (or re-derived here by a plain loop or an
independent scikit-learn call), never read back from the module. The linear-SVM tests prove the
ESC-50 fold rule from the per-fit trace: no fit or score made while choosing C for test fold f,
nor the final fit, touches a sample of fold f.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score, balanced_accuracy_score, ndcg_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from avssl.eval.metrics import (
    DEFAULT_C_GRID,
    accuracy,
    balanced_accuracy,
    boxes_to_mask,
    ciou,
    confusion_matrix,
    heatmap_peak,
    knn_predict,
    label_relevance,
    linear_svm_folds,
    localization_summary,
    logistic_probe,
    make_classifier,
    multilabel_relevance,
    pointing_game,
    retrieval_metrics,
)

FAST = settings(max_examples=60, deadline=None)


def blobs(
    n_per_class: int, n_classes: int, dim: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class c centred at 3 * e_c (c < dim), std ``spread``."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(max(n_classes, dim))[:n_classes, :dim]
    x = np.concatenate(
        [rng.normal(centres[c], spread, (n_per_class, dim)) for c in range(n_classes)]
    )
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x, y


# --------------------------------------------------------------------------- classification


def test_accuracy_by_hand():
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    assert accuracy(np.array([3]), np.array([3])) == 1.0


def test_balanced_accuracy_by_hand():
    # class 0: 2 of 3 right; class 1: 1 of 1 right -> (2/3 + 1) / 2 = 5/6
    assert balanced_accuracy([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(5 / 6)
    # class 2 is only predicted, never true: it has no recall and is not averaged in
    # class 0: 1/2, class 1: 1/1 -> 3/4
    assert balanced_accuracy([0, 2, 1], [0, 0, 1], num_classes=3) == pytest.approx(0.75)


def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 5, 200))
    assert balanced_accuracy(p, t) == pytest.approx(balanced_accuracy_score(t, p))


def test_confusion_matrix_by_hand():
    target = [0, 0, 1, 2, 2, 2]
    pred = [0, 1, 1, 2, 0, 2]
    # rows = true class, columns = predicted class
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    cm = confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm.sum(axis=1), [2, 1, 3])  # row sums = true class counts
    # an unused class keeps an all-zero row and column
    np.testing.assert_array_equal(confusion_matrix([0], [0], 2), [[1, 0], [0, 0]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: accuracy([0, 1], [0]), "lengths differ"),
        (lambda: accuracy([], []), "empty"),
        (lambda: accuracy([0.0, 1.0], [0, 1]), "integers"),
        (lambda: accuracy([[0, 1]], [[0, 1]]), "1-D"),
        (lambda: accuracy([-1, 0], [0, 0]), ">= 0"),
        (lambda: accuracy([True, False], [1, 0]), "integers"),
        (lambda: balanced_accuracy([0, 3], [0, 1], num_classes=3), "out of range"),
        (lambda: confusion_matrix([0, 3], [0, 1], 3), "out of range"),
        (lambda: confusion_matrix([0], [0], 0), "num_classes"),
    ],
)
def test_classification_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- k-NN


def knn_reference(tr, y, te, k, temperature, n_cls):
    """Plain per-sample loop: stable sort (ties by train index), vote, first max."""
    trn = tr / np.linalg.norm(tr, axis=1, keepdims=True)
    ten = te / np.linalg.norm(te, axis=1, keepdims=True)
    out = []
    for q in ten:
        s = trn @ q
        nn = np.argsort(-s, kind="stable")[:k]
        votes = np.zeros(n_cls)
        for i in nn:
            votes[y[i]] += 1.0 if temperature is None else math.exp(s[i] / temperature)
        out.append(int(np.argmax(votes)))
    return np.array(out)


def test_knn_obvious_clusters():
    # class 0 along +x, class 1 along +y; test points clearly on one side
    tr = np.array([[1.0, 0.0], [2.0, 0.1], [1.5, -0.1], [0.0, 1.0], [0.1, 2.0], [-0.1, 1.5]])
    y = np.array([0, 0, 0, 1, 1, 1])
    te = np.array([[3.0, 0.2], [0.2, 3.0], [5.0, -1.0]])
    for t in (0.07, None):
        np.testing.assert_array_equal(knn_predict(tr, y, te, k=3, temperature=t), [0, 1, 0])


def test_knn_temperature_changes_the_vote():
    # test point (1, 0): one class-0 neighbour at cosine 1, two class-1 neighbours at cosine 0.5
    tr = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, math.sqrt(3) / 2]])
    y = np.array([0, 1, 1])
    te = np.array([[1.0, 0.0]])
    # majority: 1 vote vs 2 votes -> class 1
    assert knn_predict(tr, y, te, k=3, temperature=None).tolist() == [1]
    # T = 0.07: exp(1/0.07) = e^14.3 vs 2 exp(0.5/0.07) = 2 e^7.1 -> class 0
    assert knn_predict(tr, y, te, k=3, temperature=0.07).tolist() == [0]
    # T = 10: exp(0.1) = 1.105 vs 2 exp(0.05) = 2.103 -> class 1 again
    assert knn_predict(tr, y, te, k=3, temperature=10.0).tolist() == [1]


def test_knn_ties():
    # equal vote totals -> lowest class id (both neighbours at cosine 0 from (1, 0))
    tr = np.array([[0.0, 1.0], [0.0, -1.0]])
    te = np.array([[1.0, 0.0]])
    assert knn_predict(tr, np.array([2, 1]), te, k=2, temperature=None).tolist() == [1]
    assert knn_predict(tr, np.array([2, 1]), te, k=2, temperature=0.07).tolist() == [1]
    # equal similarity at the k-th place -> lower training index is the neighbour
    dup = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert knn_predict(dup, np.array([1, 0]), te, k=1).tolist() == [1]
    assert knn_predict(dup, np.array([0, 1]), te, k=1).tolist() == [0]


def test_knn_k_clamped_and_cosine_scale_invariant():
    tr = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    te = np.array([[0.0, 1.0]])
    # k = 100 > 3 training samples: all three vote; majority is class 0
    assert knn_predict(tr, y, te, k=100, temperature=None).tolist() == [0]
    # cosine similarity: rescaling either side changes nothing
    rng = np.random.default_rng(1)
    a, b, q = rng.normal(size=(40, 6)), rng.integers(0, 3, 40), rng.normal(size=(10, 6))
    base = knn_predict(a, b, q, k=5)
    np.testing.assert_array_equal(knn_predict(7.0 * a, b, 0.01 * q, k=5), base)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("temperature", [0.07, 0.5, None])
def test_knn_matches_plain_loop(chunk_size, temperature):
    rng = np.random.default_rng(2)
    tr, te = rng.normal(size=(60, 5)), rng.normal(size=(25, 5))
    y = rng.integers(0, 4, 60)
    got = knn_predict(tr, y, te, k=5, temperature=temperature, chunk_size=chunk_size)
    np.testing.assert_array_equal(got, knn_reference(tr, y, te, 5, temperature, 4))
    assert got.dtype == np.int64


def test_knn_num_classes_and_empty_test():
    tr = np.eye(3)
    out = knn_predict(tr, np.array([0, 1, 2]), np.zeros((0, 3)), k=1, num_classes=5)
    assert out.shape == (0,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_feats": np.ones((2, 3))}, "dims differ"),
        ({"train_labels": np.array([0, 1])}, "train_labels has 2"),
        ({"k": 0}, "k must be"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"num_classes": 1}, "out of range"),
        ({"train_feats": np.array([[np.nan, 1.0]] * 3)}, "NaN"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_knn_rejects_bad_input(kwargs, match):
    args = {
        "train_feats": np.eye(3)[:, :2],
        "train_labels": np.array([0, 1, 1]),
        "test_feats": np.ones((2, 2)),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        knn_predict(**args)


# --------------------------------------------------------------------------- linear SVM (ESC-50)

SVM_GRID = (0.01, 1.0, 100.0)


@pytest.fixture(scope="module")
def svm_data():
    """3 overlapping classes, 5 folds of 8 samples per class (120 samples, 4 dims)."""
    x, y = blobs(40, 3, 4, spread=1.6, seed=3)
    folds = np.tile(np.arange(1, 6), 24)  # fold = 1 + (i mod 5): every fold holds every class
    return x, y, folds


def test_svm_trace_proves_no_leakage(svm_data):
    x, y, folds = svm_data
    trace: list[dict] = []
    res = linear_svm_folds(x, y, folds, C_grid=SVM_GRID, trace=trace)
    all_folds = {1, 2, 3, 4, 5}
    assert res["fold_ids"] == [1, 2, 3, 4, 5]
    for f in res["fold_ids"]:
        fits = [t for t in trace if t["test_fold"] == f]
        select = [t for t in fits if t["stage"] == "select"]
        final = [t for t in fits if t["stage"] == "final"]
        # |C_grid| x |training folds| inner fits, then one final fit
        assert len(select) == len(SVM_GRID) * 4 and len(final) == 1
        for t in select:
            v = t["val_fold"]
            # sample level: no training or scoring index of C selection lies in fold f
            assert not np.any(folds[t["train_index"]] == f)
            assert not np.any(folds[t["eval_index"]] == f)
            assert t["train_folds"] == all_folds - {f, v}
            assert t["eval_folds"] == {v}
            assert set(t["train_index"]).isdisjoint(t["eval_index"])
        # every training fold is held out once per C
        assert sorted(t["val_fold"] for t in select) == sorted(list(all_folds - {f}) * 3)
        (t,) = final
        assert not np.any(folds[t["train_index"]] == f)
        assert t["train_folds"] == all_folds - {f}
        np.testing.assert_array_equal(t["eval_index"], np.flatnonzero(folds == f))
        assert t["C"] == res["chosen_C"][res["fold_ids"].index(f)]
    # the only fits that ever score fold f's samples are fold f's final fit
    for t in trace:
        for f in t["eval_folds"]:
            assert t["stage"] == "select" or t["test_fold"] == f
    # every fit trains on a fold set that excludes its test fold
    assert all(t["test_fold"] not in t["train_folds"] for t in trace)


def test_svm_test_fold_labels_do_not_change_its_chosen_c(svm_data):
    x, y, folds = svm_data
    clean = linear_svm_folds(x, y, folds, C_grid=SVM_GRID)
    f = 3
    rng = np.random.default_rng(4)
    corrupt = y.copy()
    in_f = folds == f
    corrupt[in_f] = (y[in_f] + rng.integers(1, 3, in_f.sum())) % 3  # every fold-3 label wrong
    dirty = linear_svm_folds(x, corrupt, folds, C_grid=SVM_GRID)
    i = clean["fold_ids"].index(f)
    # C selection for fold 3 never saw fold 3: identical inner scores and choice
    assert dirty["inner_accuracy"][i] == clean["inner_accuracy"][i]
    assert dirty["chosen_C"][i] == clean["chosen_C"][i]
    # ... while the corruption is visible where it is allowed to be: fold 3's test score, and the
    # inner scores of other test folds (fold 3 is one of their training folds)
    assert dirty["fold_accuracy"][i] < clean["fold_accuracy"][i]
    others = [j for j in range(5) if j != i]
    assert any(dirty["inner_accuracy"][j] != clean["inner_accuracy"][j] for j in others)


def test_svm_matches_independent_protocol(svm_data):
    """Re-derive fold 1 by hand with scikit-learn: inner LOFO over folds 2..5, then refit."""
    x, y, folds = svm_data
    res = linear_svm_folds(x, y, folds, C_grid=SVM_GRID, seed=0)

    def fit_acc(train_mask, test_mask, c):
        model = make_pipeline(
            StandardScaler(), LinearSVC(C=c, dual="auto", max_iter=10000, random_state=0)
        )
        model.fit(x[train_mask], y[train_mask])
        return float(np.mean(model.predict(x[test_mask]) == y[test_mask]))

    inner = []
    for c in SVM_GRID:
        accs = [fit_acc((folds != 1) & (folds != v), folds == v, c) for v in (2, 3, 4, 5)]
        inner.append(float(np.mean(accs)))
    assert res["inner_accuracy"][0] == pytest.approx(inner, abs=1e-12)
    best = max(inner)
    expected_c = min(c for c, s in zip(SVM_GRID, inner, strict=True) if s >= best - 1e-12)
    assert res["chosen_C"][0] == expected_c
    assert res["fold_accuracy"][0] == fit_acc(folds != 1, folds == 1, expected_c)
    # the returned predictions are the final classifiers'
    for f, acc in zip(res["fold_ids"], res["fold_accuracy"], strict=True):
        assert np.mean(res["predictions"][folds == f] == y[folds == f]) == acc


def test_make_classifier_refits_the_protocol_model(svm_data):
    x, y, folds = svm_data
    res = linear_svm_folds(x, y, folds, C_grid=SVM_GRID)
    for f, c in zip(res["fold_ids"], res["chosen_C"], strict=True):
        clf = make_classifier("svm", c, True, 0, 10000).fit(x[folds != f], y[folds != f])
        np.testing.assert_array_equal(clf.predict(x[folds == f]), res["predictions"][folds == f])


def test_svm_summary_and_determinism(svm_data):
    x, y, folds = svm_data
    a = linear_svm_folds(x, y, folds, C_grid=SVM_GRID)
    b = linear_svm_folds(x, y, folds, C_grid=(100.0, 0.01, 1.0))  # grid order is irrelevant
    np.testing.assert_array_equal(a.pop("predictions"), b.pop("predictions"))
    assert a == b
    acc = np.array(a["fold_accuracy"])
    assert a["mean"] == pytest.approx(acc.mean())
    assert a["std"] == pytest.approx(np.sqrt(np.mean((acc - acc.mean()) ** 2)))  # ddof = 0
    assert a["C_grid"] == [0.01, 1.0, 100.0]
    assert all(c in SVM_GRID for c in a["chosen_C"])


def test_svm_separable_blobs_and_unsorted_fold_ids():
    x, y = blobs(12, 2, 3, spread=0.3, seed=5)
    folds = np.tile([7, 3, 11], 8)  # arbitrary fold ids
    res = linear_svm_folds(x, y, folds, C_grid=(1.0,), standardize=False)
    assert res["fold_ids"] == [3, 7, 11]
    assert res["fold_accuracy"] == [1.0, 1.0, 1.0]
    assert res["mean"] == 1.0 and res["std"] == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"folds": np.tile([1, 2], 6)}, "at least 3 distinct folds"),
        ({"folds": np.ones(12, dtype=int)}, "at least 3 distinct folds"),
        ({"labels": np.zeros(11, dtype=int)}, "lengths differ"),
        ({"folds": np.tile([1, 2, 3], 3)}, "lengths differ"),
        ({"C_grid": ()}, "C_grid is empty"),
        ({"C_grid": (1.0, -1.0)}, "C_grid"),
        ({"C_grid": (1.0, 1.0)}, "duplicates"),
        ({"features": np.full((12, 2), np.inf)}, "NaN or inf"),
        ({"labels": np.zeros(12, dtype=int)}, "single class"),
    ],
)
def test_svm_rejects_bad_input(kwargs, match):
    args = {
        "features": np.random.default_rng(0).normal(size=(12, 2)),
        "labels": np.tile([0, 1], 6),
        "folds": np.tile([1, 2, 3], 4),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        linear_svm_folds(**args)


def test_default_c_grid():
    assert DEFAULT_C_GRID == (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


# --------------------------------------------------------------------------- logistic probe


def test_logistic_probe_separable():
    x, y = blobs(20, 3, 3, spread=0.3, seed=6)
    xt, yt = blobs(10, 3, 3, spread=0.3, seed=7)
    res = logistic_probe(x, y, xt, yt, C_grid=(0.1, 1.0))
    assert res["accuracy"] == 1.0 and res["balanced_accuracy"] == 1.0
    assert res["num_val"] == 12  # round(20 * 0.2) = 4 per class
    assert res["C"] == 0.1  # both C reach val accuracy 1: the tie goes to the smaller C


def test_logistic_probe_test_labels_do_not_choose_c():
    x, y = blobs(25, 3, 4, spread=1.8, seed=8)
    xt, yt = blobs(15, 3, 4, spread=1.8, seed=9)
    a = logistic_probe(x, y, xt, yt)
    b = logistic_probe(x, y, xt, (yt + 1) % 3)
    assert a["C"] == b["C"] and a["val_accuracy"] == b["val_accuracy"]
    assert a["accuracy"] != b["accuracy"]
    # the reported accuracy is that of a plain refit with the chosen C on all training data
    from sklearn.linear_model import LogisticRegression

    model = make_pipeline(StandardScaler(), LogisticRegression(C=a["C"], max_iter=1000))
    pred = model.fit(x, y).predict(xt)
    assert a["accuracy"] == pytest.approx(np.mean(pred == yt))
    assert a["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, pred))
    np.testing.assert_array_equal(a["predictions"], pred)  # the final model's predictions


def test_logistic_probe_stratified_holdout_sizes():
    # class sizes 10, 10, 5 at val_fraction 0.2 -> 2 + 2 + 1 held out
    rng = np.random.default_rng(10)
    y = np.repeat([0, 1, 2], [10, 10, 5])
    x = rng.normal(size=(25, 3)) + y[:, None]
    res = logistic_probe(x, y, x[:4], y[:4], C_grid=(1.0,))
    assert res["num_val"] == 5
    # a one-sample class keeps its sample for training (held out: min(n_c - 1, round))
    y1 = np.array([0] * 10 + [1] * 10 + [2])
    x1 = rng.normal(size=(21, 3))
    assert logistic_probe(x1, y1, x1, y1, C_grid=(1.0,))["num_val"] == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.01}, "no validation samples"),
        ({"test_feats": np.ones((3, 5))}, "dims differ"),
        ({"test_labels": np.array([0])}, "test_labels has 1"),
        ({"train_labels": np.zeros(20, dtype=int)}, "single class"),
    ],
)
def test_logistic_probe_rejects_bad_input(kwargs, match):
    rng = np.random.default_rng(0)
    args = {
        "train_feats": rng.normal(size=(20, 2)),
        "train_labels": np.tile([0, 1], 10),
        "test_feats": rng.normal(size=(3, 2)),
        "test_labels": np.array([0, 1, 0]),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        logistic_probe(**args)


# --------------------------------------------------------------------------- retrieval

# Worked example (ks = 1, 3). Each row ranks items by decreasing sim:
#
# q0: sim .9 .7 .5 .1, rel 3 0 2 1 -> ranked rel 3, 0, 2, 1
#     DCG@3 = 3/log2(2) + 0/log2(3) + 2/log2(4) = 3 + 0 + 1 = 4
#     IDCG@3 (3, 2, 1) = 3 + 2/log2(3) + 1/2           nDCG@1 = 3/3 = 1
#     AP (relevant at ranks 1, 3, 4) = (1/1 + 2/3 + 3/4) / 3
# q1: sim .1 .2 .3 .4, rel 0 0 0 1 -> ranked rel 1, 0, 0, 0: nDCG@1 = nDCG@3 = 1, AP = 1
# q2: sim .4 .3 .2 .1, rel 0 0 1 1 -> ranked rel 0, 0, 1, 1
#     DCG@3 = 1/log2(4) = 1/2, IDCG@3 = 1 + 1/log2(3), nDCG@1 = 0; R@1 = 0, R@3 = 1
#     AP (relevant at ranks 3, 4) = (1/3 + 2/4) / 2
# q3: rel all 0 -> no relevant item: excluded from every mean, counted as num_excluded
WORKED_SIM = np.array(
    [[0.9, 0.7, 0.5, 0.1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.5, 0.6, 0.7, 0.8]]
)
WORKED_REL = np.array([[3, 0, 2, 1], [0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=float)


def test_retrieval_worked_example():
    m = retrieval_metrics(WORKED_SIM, WORKED_REL, ks=(1, 3))
    ndcg3 = [4 / (3 + 2 / math.log2(3) + 0.5), 1.0, 0.5 / (1 + 1 / math.log2(3))]
    ap = [(1 + 2 / 3 + 3 / 4) / 3, 1.0, (1 / 3 + 2 / 4) / 2]
    assert m["R@1"] == pytest.approx(2 / 3)
    assert m["R@3"] == pytest.approx(1.0)
    assert m["nDCG@1"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["nDCG@3"] == pytest.approx(sum(ndcg3) / 3)
    assert m["mAP"] == pytest.approx(sum(ap) / 3)
    assert (m["num_queries"], m["num_evaluated"], m["num_excluded"]) == (4, 3, 1)
    assert list(m) == ["R@1", "R@3", "nDCG@1", "nDCG@3", "mAP"] + [
        "num_queries",
        "num_evaluated",
        "num_excluded",
    ]


def test_retrieval_matches_sklearn_on_random_data():
    rng = np.random.default_rng(11)
    sim = rng.normal(size=(30, 50))  # continuous: no ties
    rel = rng.integers(0, 4, size=(30, 50)).astype(float)
    rel[rel < 2] = 0  # sparse graded relevance
    keep = rel.sum(1) > 0
    m = retrieval_metrics(sim, rel, ks=(5, 10))
    for k in (5, 10):
        assert m[f"nDCG@{k}"] == pytest.approx(ndcg_score(rel[keep], sim[keep], k=k))
    aps = [average_precision_score(rel[q] > 0, sim[q]) for q in np.flatnonzero(keep)]
    assert m["mAP"] == pytest.approx(np.mean(aps))


def test_retrieval_chunks_and_large_k():
    rng = np.random.default_rng(12)
    sim, rel = rng.normal(size=(17, 9)), (rng.random((17, 9)) < 0.2).astype(float)
    rel[0, 3] = 1.0
    full = retrieval_metrics(sim, rel, ks=(1, 9, 50))
    assert retrieval_metrics(sim, rel, ks=(1, 9, 50), chunk_size=1) == pytest.approx(full)
    assert retrieval_metrics(sim, rel, ks=(1, 9, 50), chunk_size=4) == pytest.approx(full)
    # k beyond the 9 items acts as k = 9: every evaluated query has a relevant item somewhere
    assert full["R@50"] == full["R@9"] == 1.0
    assert full["nDCG@50"] == full["nDCG@9"]


def test_retrieval_sim_ties_rank_lower_index_first():
    # all scores equal: the ranking is item order 0, 1, 2
    m = retrieval_metrics(np.zeros((1, 3)), np.array([[0.0, 1.0, 0.0]]), ks=(1, 2))
    assert m["R@1"] == 0.0 and m["R@2"] == 1.0 and m["mAP"] == 0.5


def test_retrieval_exclude_self_equals_dropping_the_diagonal():
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 3, 12)
    emb = rng.normal(size=(12, 4)) + labels[:, None]
    sim = emb @ emb.T
    rel = label_relevance(labels, labels)
    got = retrieval_metrics(sim, rel, ks=(1, 3), exclude_self=True)
    # by hand: query i against the 11 other items
    per_query = []
    for i in range(12):
        others = np.arange(12) != i
        if rel[i, others].sum() > 0:
            per_query.append(
                retrieval_metrics(sim[i : i + 1, others], rel[i : i + 1, others], (1, 3))
            )
    for key in ("R@1", "R@3", "nDCG@1", "nDCG@3", "mAP"):
        assert got[key] == pytest.approx(np.mean([p[key] for p in per_query]))
    assert got["num_evaluated"] == len(per_query)
    # without exclusion the query finds itself first (self-similarity is the row maximum here)
    self_first = sim + 100 * np.eye(12)
    assert retrieval_metrics(self_first, rel, ks=(1,))["R@1"] == 1.0


@FAST
@given(
    rel=st.lists(st.integers(0, 3), min_size=2, max_size=12).filter(lambda r: len(set(r)) > 1),
    k=st.integers(1, 12),
)
def test_ndcg_properties(rel, k):
    r = np.array([rel], dtype=float)
    perfect = retrieval_metrics(r, r, ks=(k,))  # sim = relevance: a perfect ranking
    assert perfect[f"nDCG@{k}"] == pytest.approx(1.0)
    assert perfect["mAP"] == pytest.approx(1.0) and perfect[f"R@{k}"] == 1.0
    reverse = retrieval_metrics(-r, r, ks=(k,))
    rng = np.random.default_rng(len(rel) * 13 + k)
    shuffled = retrieval_metrics(rng.normal(size=r.shape), r, ks=(k,))
    for m in (reverse, shuffled):
        assert 0.0 <= m[f"nDCG@{k}"] <= 1.0 + 1e-12
    # reversing the perfect ranking lowers full-length nDCG (relevances are not all equal)
    n = len(rel)
    assert retrieval_metrics(-r, r, ks=(n,))[f"nDCG@{n}"] < 1.0 - 1e-9


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 2))), "differs"),
        (lambda: retrieval_metrics(np.zeros((2, 3)), -np.ones((2, 3))), ">= 0"),
        (lambda: retrieval_metrics(np.zeros((2, 3)), np.ones((2, 3)), exclude_self=True), "square"),
        (lambda: retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 3))), "no query"),
        (lambda: retrieval_metrics(np.zeros((2, 3)), np.ones((2, 3)), ks=(0,)), "k must be"),
        (lambda: retrieval_metrics(np.zeros((2, 3)), np.ones((2, 3)), ks=()), "ks is empty"),
        (lambda: retrieval_metrics(np.full((1, 1), np.nan), np.ones((1, 1))), "NaN"),
        (lambda: retrieval_metrics(np.ones((1, 1)), np.ones((1, 1)), exclude_self=True), "nothing"),
    ],
)
def test_retrieval_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- relevance matrices


def test_label_relevance():
    np.testing.assert_array_equal(
        label_relevance([0, 1], [1, 0, 1]), [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    )
    assert label_relevance(np.array(["dog"]), np.array(["dog", "cat"])).tolist() == [[1.0, 0.0]]


def test_multilabel_jaccard_by_hand():
    q = [{"a", "b"}, {"a"}, set()]
    items = [{"b", "c"}, {"a"}, set()]
    expected = [
        [1 / 3, 1 / 2, 0.0],  # {a,b}&{b,c} = {b}, union {a,b,c}; {a,b} vs {a}: 1/2
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0],  # empty sets relate to nothing
    ]
    np.testing.assert_allclose(multilabel_relevance(q, items), expected)


# A toy ontology DAG (X has two parents, R1 and R2 are separate roots):
#   R1 -> A, B;  A -> A1, A2;  B -> B1;  A2 -> X;  B1 -> X;  R2 -> C
TOY_ONTOLOGY = [
    {"id": "R1", "name": "root 1", "child_ids": ["A", "B"]},
    {"id": "A", "name": "a", "child_ids": ["A1", "A2"]},
    {"id": "B", "name": "b", "child_ids": ["B1"]},
    {"id": "A1", "name": "a1", "child_ids": []},
    {"id": "A2", "name": "a2", "child_ids": ["X"]},
    {"id": "B1", "name": "b1", "child_ids": ["X"]},
    {"id": "X", "name": "x", "child_ids": []},
    {"id": "R2", "name": "root 2", "child_ids": ["C"]},
    {"id": "C", "name": "c", "child_ids": []},
]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("A1", "A1", 1.0),  # same label: d = 0
        ("A", "A1", 1 / 2),  # parent/child: d = 1
        ("A1", "A2", 1 / 3),  # siblings: d = 2 via A
        ("A1", "X", 1 / 4),  # X -> A2 -> A (2) + A1 -> A (1) = 3; via R1 it would be 5
        ("B", "X", 1 / 3),  # X -> B1 -> B (2): the second parent gives the shorter route
        ("A1", "B1", 1 / 5),  # A1 -> A -> R1 (2) + B1 -> B -> R1 (2) = 4
        ("X", "C", 0.0),  # no common ancestor (different roots)
    ],
)
def test_ontology_relevance_pairs(a, b, expected):
    rel = multilabel_relevance([{a}], [{b}], ontology=TOY_ONTOLOGY)
    assert rel[0, 0] == pytest.approx(expected)
    assert multilabel_relevance([{b}], [{a}], ontology=TOY_ONTOLOGY)[0, 0] == pytest.approx(
        expected
    )


def test_ontology_relevance_sets_take_the_best_pair(tmp_path):
    q = [{"A1", "C"}, set(), {"X"}]
    items = [{"X"}, {"C", "B1"}, {"A1"}, set()]
    expected = [
        [1 / 4, 1.0, 1.0, 0.0],  # {A1,C} vs {X}: max(1/4, 0); vs {C,B1}: C == C
        [0.0, 0.0, 0.0, 0.0],
        [1.0, 1 / 2, 1 / 4, 0.0],  # X vs B1: parent/child
    ]
    np.testing.assert_allclose(multilabel_relevance(q, items, ontology=TOY_ONTOLOGY), expected)
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps(TOY_ONTOLOGY))
    np.testing.assert_allclose(multilabel_relevance(q, items, ontology=path), expected)
    np.testing.assert_allclose(multilabel_relevance(q, items, ontology=str(path)), expected)


def test_audioset_ontology_relevance(shared_data):
    path = shared_data / "audioset" / "ontology.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    ids = {n["name"]: n["id"] for n in json.loads(path.read_text())}
    eg, ag, gtr = ids["Electric guitar"], ids["Acoustic guitar"], ids["Guitar"]
    violin, speech, choir = ids["Violin, fiddle"], ids["Speech"], ids["Choir"]
    # Electric guitar -> Guitar -> Plucked string instrument -> Musical instrument -> Music;
    # Violin, fiddle -> Bowed string instrument -> Musical instrument; Speech -> Human voice ->
    # Human sounds (another root); Choir has two parents, Singing and Musical instrument.
    cases = [
        (eg, gtr, 1 / 2),
        (eg, ag, 1 / 3),
        (eg, violin, 1 / 6),  # 3 + 2 edges up to Musical instrument
        (choir, violin, 1 / 4),  # Choir -> Musical instrument (1) + 2
        (gtr, speech, 0.0),
    ]
    rel = multilabel_relevance([{a} for a, _, _ in cases], [{b} for _, b, _ in cases], path)
    np.testing.assert_allclose(np.diag(rel), [e for _, _, e in cases])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: multilabel_relevance([{"A", "nope"}], [{"A"}], TOY_ONTOLOGY), "not in the"),
        (lambda: multilabel_relevance("ab", [{"a"}]), "not a string"),
        (lambda: multilabel_relevance(["ab"], [{"a"}]), "the string"),
        (lambda: multilabel_relevance([{"A"}], [{"A"}], [{"name": "x"}]), "without an 'id'"),
        (
            lambda: multilabel_relevance([{"A"}], [{"A"}], [{"id": "A", "child_ids": ["Z"]}]),
            "not a node",
        ),
    ],
)
def test_multilabel_relevance_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- localisation


def test_boxes_to_mask_by_hand():
    # 4x4 grid; box x in [2, 4], y in [1, 3] pixels -> centres x = 2.5, 3.5 and y = 1.5, 2.5
    m = boxes_to_mask([[0.5, 0.25, 1.0, 0.75]], 4, 4)
    expected = np.zeros((4, 4))
    expected[1:3, 2:4] = 1
    np.testing.assert_array_equal(m, expected)
    assert m.dtype == np.float64
    # a pixel is in when its centre is: x2 * W = 1.2 keeps centre 0.5, not 1.5;
    # x1 * W = 0.4 <= 0.5 keeps column 0
    np.testing.assert_array_equal(boxes_to_mask([[0.1, 0, 0.3, 1]], 2, 4)[0], [1, 0, 0, 0])
    # a box between pixel centres covers nothing; no boxes -> all zero
    assert boxes_to_mask([[0.3, 0.3, 0.35, 0.35]], 4, 4).sum() == 0
    assert boxes_to_mask(np.zeros((0, 4)), 3, 5).shape == (3, 5)
    # union of two boxes; one flat box is accepted; coordinates are clipped to [0, 1]
    two = boxes_to_mask([[0, 0, 0.25, 0.25], [0.75, 0.75, 1, 1]], 4, 4)
    assert two.sum() == 2 and two[0, 0] == 1 and two[3, 3] == 1
    np.testing.assert_array_equal(
        boxes_to_mask([0, 0, 0.25, 0.25], 4, 4), boxes_to_mask([[0, 0, 0.25, 0.25]], 4, 4)
    )
    np.testing.assert_array_equal(
        boxes_to_mask([[-0.1, -0.2, 0.5, 0.5]], 4, 4), boxes_to_mask([[0, 0, 0.5, 0.5]], 4, 4)
    )


def test_boxes_to_mask_soft():
    # three annotators on a 1x4 strip: columns marked by 1, 2, 3 and 0 annotators
    ann = [[[0, 0, 0.75, 1]], [[0.25, 0, 0.75, 1]], [[0.5, 0, 0.75, 1]]]
    np.testing.assert_allclose(boxes_to_mask(ann, 1, 4, soft=True)[0], [1 / 3, 2 / 3, 1, 0])
    # Flickr-SoundNet consensus: min(count / 2, 1)
    np.testing.assert_allclose(boxes_to_mask(ann, 1, 4, soft=True, consensus=2)[0], [0.5, 1, 1, 0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: boxes_to_mask([[0.5, 0, 0.2, 1]], 4, 4), "x1 <= x2"),
        (lambda: boxes_to_mask([[0, 0, 1]], 4, 4), r"\(B, 4\)"),
        (lambda: boxes_to_mask([[0, 0, np.nan, 1]], 4, 4), "NaN"),
        (lambda: boxes_to_mask([[0, 0, 1, 1]], 0, 4), "height"),
        (lambda: boxes_to_mask([[0, 0, 1, 1]], 4, 4, consensus=2), "soft=True"),
        (lambda: boxes_to_mask([], 4, 4, soft=True), "at least one annotator"),
        (lambda: boxes_to_mask([[[0, 0, 1, 1]]], 4, 4, soft=True, consensus=0), "consensus"),
    ],
)
def test_boxes_to_mask_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


GT_4x4 = boxes_to_mask([[0.5, 0.25, 1.0, 0.75]], 4, 4)  # rows 1-2, columns 2-3 (4 pixels)


def test_ciou_4x4_by_hand():
    hm = np.arange(16.0).reshape(4, 4)  # row-major 0..15
    # median rule: sorted[16 // 2] = 8 -> pred = values >= 8 = rows 2-3 (8 pixels)
    # pred * gt = row 2, columns 2-3 = 2 pixels; pred * (1 - gt) = 6
    # cIoU = 2 / (4 + 6) = 0.2
    assert ciou(hm, GT_4x4) == pytest.approx(0.2)
    # threshold 0.5 on (v - 0) / 15: v >= 7.5, the same 8 pixels
    assert ciou(hm, GT_4x4, threshold=0.5) == pytest.approx(0.2)
    # threshold 0.9: v >= 13.5 -> pixels (3, 2), (3, 3), both outside gt: 0 / (4 + 2)
    assert ciou(hm, GT_4x4, threshold=0.9) == 0.0
    # scaling / shifting the heatmap changes nothing
    assert ciou(3 * hm - 7, GT_4x4, threshold=0.5) == pytest.approx(0.2)


def test_ciou_properties():
    # pred == gt gives 1: a binary heatmap equal to gt with a fixed threshold ...
    assert ciou(GT_4x4, GT_4x4, threshold=0.5) == 1.0
    # ... and with the median rule when gt covers exactly half of the image
    half = boxes_to_mask([[0, 0, 0.5, 1]], 4, 4)
    assert ciou(half, half) == 1.0
    # an all-ones heatmap: the median rule selects every pixel -> sum(gt) / (H * W) = 4 / 16
    assert ciou(np.ones((4, 4)), GT_4x4) == pytest.approx(0.25)
    # ... a fixed threshold > 0 on a constant map (normalised to 0) selects nothing
    assert ciou(np.ones((4, 4)), GT_4x4, threshold=0.5) == 0.0
    rng = np.random.default_rng(14)
    for _ in range(20):
        v = ciou(rng.normal(size=(6, 5)), GT_4x4)  # resized to 4x4 first
        assert 0.0 <= v <= 1.0


def test_ciou_resizes_bilinearly():
    # 2x2 -> 4x4, align_corners=False: source coordinate (j + 0.5) / 2 - 0.5 = -.25, .25, .75,
    # 1.25, clamped to [0, 1] -> weights 0, .25, .75, 1 per axis; the map is their outer product
    # (heatmap 1 only at the bottom-right). Sorted values: seven 0s, .0625, then .1875 at index 8
    # -> pred = the 8 pixels >= .1875 (rows and columns 1-3 except (1, 1)).
    # gt = bottom-right quadrant (4 pixels), all predicted: cIoU = 4 / (4 + 4) = 0.5
    hm = np.array([[0.0, 0.0], [0.0, 1.0]])
    gt = boxes_to_mask([[0.5, 0.5, 1, 1]], 4, 4)
    assert ciou(hm, gt) == pytest.approx(0.5)


def test_ciou_soft_gt_by_hand():
    # 1x4: gt 1, .5, 0, 0; heatmap 4 3 2 1 -> median rule keeps values >= sorted[2] = 3
    # pred = 1 1 0 0; num = 1 + .5 = 1.5; den = sum(gt) 1.5 + sum(pred * (1 - gt)) .5 = 2
    assert ciou(np.array([[4.0, 3, 2, 1]]), np.array([[1.0, 0.5, 0, 0]])) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gt": np.zeros((4, 4))}, "all zero"),
        ({"gt": 2 * GT_4x4}, r"\[0, 1\]"),
        ({"threshold": "mean"}, "median"),
        ({"threshold": 1.5}, "threshold"),
        ({"heatmap": np.full((4, 4), np.nan)}, "NaN"),
        ({"heatmap": np.ones(16)}, "2-D"),
    ],
)
def test_ciou_rejects_bad_input(kwargs, match):
    args = {"heatmap": np.ones((4, 4)), "gt": GT_4x4} | kwargs
    with pytest.raises(ValueError, match=match):
        ciou(**args)


def test_localization_summary_by_hand():
    # cIoUs .1 .5 .9 on thresholds 0, .05, ..., 1: success rate 1 for t <= .1 (3 points),
    # 2/3 for .15..0.5 (8), 1/3 for .55..0.9 (8), 0 for .95, 1 (2). Trapezoid, step .05:
    # .05 * (sum of all 21 rates - (first + last) / 2) = .05 * (3 + 16/3 + 8/3 - .5) = .525
    s = localization_summary([0.1, 0.5, 0.9])
    assert s["cIoU@0.5"] == pytest.approx(2 / 3)
    assert s["AUC"] == pytest.approx(0.525)
    assert s["mean_cIoU"] == pytest.approx(0.5)
    assert s["count"] == 3
    # the same as sklearn.metrics.auc over 0.05 * i (the LVS / EZ-VSL computation)
    rng = np.random.default_rng(15)
    c = rng.random(50)
    x = [0.05 * i for i in range(21)]
    rates = [np.mean(c >= t) for t in x]
    assert localization_summary(c)["AUC"] == pytest.approx(sk_auc(x, rates))
    # perfect localisation: every rate is 1 -> AUC 1
    assert localization_summary([1.0, 1.0])["AUC"] == pytest.approx(1.0)
    assert localization_summary([0.3], thresholds=[0.0, 0.5])["AUC"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "args, match",
    [
        (([],), "non-empty"),
        (([1.2],), r"\[0, 1\]"),
        (([0.5], [0.5, 0.2]), "increasing"),
        (([0.5], [0.5]), "increasing"),
    ],
)
def test_localization_summary_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        localization_summary(*args)


def test_pointing_game():
    hm = np.zeros((4, 4))
    hm[1, 2] = 5.0
    assert pointing_game(hm, [[0.5, 0.25, 1.0, 0.75]]) == 1.0  # (1, 2) is in rows 1-2, cols 2-3
    assert pointing_game(hm, [[0.0, 0.0, 0.25, 0.25]]) == 0.0
    assert pointing_game(hm, [[0.0, 0.0, 0.25, 0.25], [0.5, 0.0, 0.75, 0.5]]) == 1.0  # any box
    # ties: the first maximum in row-major order, (0, 0)
    assert pointing_game(np.ones((4, 4)), [[0.0, 0.0, 0.25, 0.25]]) == 1.0
    assert pointing_game(np.ones((4, 4)), [[0.75, 0.75, 1, 1]]) == 0.0
    # resized 2x2 -> 4x4: the top-right source pixel becomes the maximum at (0, 3)
    small = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert pointing_game(small, [[0.75, 0.0, 1.0, 0.25]], size=(4, 4)) == 1.0
    assert pointing_game(small, [[0.0, 0.75, 0.25, 1.0]], size=(4, 4)) == 0.0
    with pytest.raises(ValueError, match="at least one box"):
        pointing_game(hm, np.zeros((0, 4)))
    # heatmap_peak: the point the pointing game scores (the pictures mark it)
    assert heatmap_peak(hm) == (1, 2) and heatmap_peak(small, (4, 4)) == (0, 3)
    assert heatmap_peak(np.ones((3, 3))) == (0, 0)
