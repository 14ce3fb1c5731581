"""Retrieval metrics: R@k, nDCG@k and mAP from a similarity matrix; relevance from labels."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from avssl.checks import int_arg
from avssl.eval.metrics.classification import _chunk_rows, _features


def _ranking_inputs(
    sim: ArrayLike, relevance: ArrayLike, ks: Sequence[int] | int, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """(sim, relevance, ascending ks, ranking length) checked for :func:`retrieval_metrics`."""
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
    return s_all, rel_all, k_list, n


def _add_ranked(
    sums: dict[str, float], ranked: np.ndarray, k_list: list[int], disc: np.ndarray
) -> None:
    """Add the R@k, nDCG@k and AP of rows ``ranked`` (relevance in rank order) to ``sums``."""
    n = ranked.shape[1]
    ideal = -np.sort(-ranked, axis=1)
    for k in k_list:
        kk = min(k, n)
        dcg = ranked[:, :kk] @ disc[:kk]
        idcg = ideal[:, :kk] @ disc[:kk]  # > 0: the top ideal relevance is > 0
        sums[f"nDCG@{k}"] += float(np.sum(dcg / idcg))
        sums[f"R@{k}"] += float(np.sum((ranked[:, :kk] > 0).any(axis=1)))
    hit = ranked > 0
    precision = np.cumsum(hit, axis=1) / np.arange(1, n + 1, dtype=np.float64)
    sums["mAP"] += float(np.sum((precision * hit).sum(axis=1) / hit.sum(axis=1)))


def retrieval_metrics(
    sim: ArrayLike,
    relevance: ArrayLike,
    ks: Sequence[int] | int = (1, 5, 10, 30),
    exclude_self: bool = False,
    *,
    chunk_size: int | None = None,
) -> dict[str, float | int]:
    """Ranking metrics of ``sim`` (num_queries, num_items) against graded ``relevance`` (>= 0).

    Each query ranks the items by decreasing ``sim`` (equal scores: lower item index first). With
    ``exclude_self`` (intra-modal retrieval; a square matrix) item ``i`` is removed from query
    ``i``'s ranking and ideal ranking. With ``rel_r`` the relevance at rank ``r`` (1-based) and
    ``n`` the ranking's length (``k`` beyond ``n`` acts as ``n``):

    * ``R@k`` -- fraction of queries with a relevant item (``rel > 0``) in the top k;
    * ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{r <= min(k, n)} rel_r / log2(r + 1)`` and
      ``IDCG@k`` the same sum over the relevances sorted in decreasing order;
    * ``mAP`` -- mean average precision over the full ranking, relevance binarised at ``> 0``.

    A query with no relevant item is excluded from every mean and counted as ``num_excluded``.
    Returns ``R@k`` and ``nDCG@k`` for each ``k``, ``mAP``, ``num_queries``, ``num_evaluated``
    and ``num_excluded``. Raises ValueError when no query has a relevant item.
    """
    s_all, rel_all, k_list, n = _ranking_inputs(sim, relevance, ks, exclude_self)
    n_q, n_items = s_all.shape
    disc = 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))
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
        _add_ranked(sums, ranked, k_list, disc)
    if evaluated == 0:
        raise ValueError("no query has a relevant item (relevance > 0): metrics are undefined")
    out: dict[str, float | int] = {key: total / evaluated for key, total in sums.items()}
    return out | {"num_queries": n_q, "num_evaluated": evaluated, "num_excluded": n_q - evaluated}


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

    With ``ontology`` (the AudioSet ``ontology.json`` node list, or a path to it; labels are node
    ids such as ``"/m/0342h"``): labels ``a, b`` have tree distance ``d = min over common
    ancestors c of (up(a, c) + up(b, c))``, ``up`` counting child->parent edges (the ontology is
    a DAG), and relevance ``1 / (1 + d)`` -- 1 for the same label, 1/2 for parent/child, 1/3 for
    siblings, 0 without a common ancestor (AudioSet has 7 roots). Two label sets: the maximum over
    their label pairs (0 if either is empty). Unknown label ids raise ValueError.

    This is the project brief's fallback for the ontology relevance of Arandjelović & Zisserman,
    *Objects that Sound* (ECCV 2018), whose definition could not be retrieved: compare nDCG numbers
    only with numbers computed by this same function.
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
