"""``avssl-eval retrieval``: ranking metrics of frozen features (protocol: docs/evaluation.md);
cross-modal retrieval (:func:`cross_modal`) is ``avssl-eval cross-modal``.
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/retrieval.py".
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from avssl.eval import metrics as M
from avssl.eval.vision import (
    FeatureOptions,
    dataset_dict,
    features_extra,
    finish,
    prepare,
    split_rows,
)

CROSS_MODAL_UNAVAILABLE = (
    "--cross-modal: cross-modal retrieval has its own command, 'avssl-eval cross-modal MODEL "
    "--images GALLERY.jsonl --sounds PAIRS.jsonl', for a two-tower audio-visual run "
    "(ave_net, l3_net, avol_net, av_sync); {model} was not evaluated"
)


def cosine_similarity(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``(n, m)`` float64 cosine similarities of the rows of ``a`` (n, d) and ``b`` (m, d).

    Rows are divided by ``max(norm, 1e-12)``, so a zero row has similarity 0 with everything.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (n, d) and (m, d) features, got {x.shape} and {y.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return x @ y.T


def retrieve(
    query_feats: ArrayLike,
    gallery_feats: ArrayLike,
    relevance: ArrayLike,
    ks: Sequence[int] = (1, 5, 10, 30),
    *,
    exclude_self: bool = False,
    show: Sequence[int] = (),
    show_k: int = 10,
) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Intra-modal retrieval by cosine similarity: ``retrieval_metrics`` and the top lists.

    Returns the metrics of :func:`avssl.eval.metrics.retrieval_metrics` and, for each query
    index ``q`` in ``show``, ``{"query": q, "items": [gallery indices], "scores": [...],
    "relevance": [...]}`` with the ``show_k`` best items in rank order (ties: lower index first;
    with ``exclude_self`` the query's own item is never listed).
    """
    sim = cosine_similarity(query_feats, gallery_feats)
    rel = np.asarray(relevance, dtype=np.float64)
    metrics = M.retrieval_metrics(sim, rel, ks, exclude_self=exclude_self)
    top: list[dict[str, Any]] = []
    for q in show:
        if not 0 <= q < sim.shape[0]:
            raise ValueError(f"show: query index {q} out of range 0..{sim.shape[0] - 1}")
        s = sim[q].copy()
        if exclude_self:
            s[q] = -np.inf
        order = np.argsort(-s, kind="stable")
        order = order[np.isfinite(s[order])][:show_k]
        top.append({"query": q, "items": order.tolist(),
                    "scores": [round(float(v), 6) for v in sim[q, order]],
                    "relevance": [float(v) for v in rel[q, order]]})  # fmt: skip
    return metrics, top


def cross_modal(
    image_feats: ArrayLike,
    audio_feats: ArrayLike,
    relevance: ArrayLike,
    ks: Sequence[int] = (1, 5, 10, 30),
) -> dict[str, dict[str, float | int]]:
    """Cross-modal retrieval in both directions ("Objects that Sound", Arandjelović & Zisserman
    2018): ``image->audio`` ranks the audio embeddings for each image, ``audio->image`` the image
    embeddings for each sound, by cosine similarity of the two towers' embeddings.

    ``relevance`` is ``(num_images, num_audio)``: ``relevance[i, a]`` how relevant sound ``a`` is
    to image ``i`` (e.g. :func:`avssl.eval.metrics.label_relevance` of their labels, or
    :func:`~avssl.eval.metrics.multilabel_relevance` with the ontology); the audio->image
    direction uses its transpose. A pair from the same clip is a normal gallery item (nothing is
    excluded: the modalities differ). Returns ``{"image->audio": metrics, "audio->image":
    metrics}``, each from :func:`avssl.eval.metrics.retrieval_metrics`.
    """
    sim = cosine_similarity(image_feats, audio_feats)
    rel = np.asarray(relevance, dtype=np.float64)
    if rel.shape != sim.shape:
        raise ValueError(
            f"relevance must be (num_images, num_audio) = {sim.shape}, got {rel.shape}"
        )
    return {
        "image->audio": M.retrieval_metrics(sim, rel, ks),
        "audio->image": M.retrieval_metrics(sim.T, rel.T, ks),
    }


def default_ontology() -> Path | None:
    """The AudioSet ontology of the shared data, if present (``$AVSSL_SHARED_DATA`` first)."""
    cands = []
    env = os.environ.get("AVSSL_SHARED_DATA")
    if env:
        cands.append(Path(env) / "audioset" / "ontology.json")
    cands.append(
        Path(__file__).resolve().parents[3] / "shared" / "data" / "audioset" / "ontology.json"
    )
    cands.append(Path("..") / "shared" / "data" / "audioset" / "ontology.json")
    return next((c for c in cands if c.is_file()), None)


def _relevance(
    samples: Sequence[Any], q: np.ndarray, g: np.ndarray, ontology: str | None
) -> tuple[np.ndarray, str]:
    """The relevance matrix of queries ``q`` x gallery ``g`` and how it was defined."""
    rows = [samples[i] for i in np.concatenate([q, g])]
    if any(s.labels is not None for s in rows):
        if any(s.labels is None for s in rows):
            raise ValueError("some rows have label lists ('labels') and some do not")
        qs = [samples[i].labels for i in q]
        gs = [samples[i].labels for i in g]
        if ontology is not None and ontology.lower() == "none":
            return M.multilabel_relevance(qs, gs), "jaccard of label sets"
        path = Path(ontology) if ontology is not None else default_ontology()
        if path is None or not path.is_file():
            where = f" ({path} not found)" if path is not None else ""
            raise FileNotFoundError(
                f"rows have label lists: relevance needs the AudioSet ontology{where}; give "
                "--ontology PATH/ontology.json, or --ontology none for the Jaccard overlap of "
                "the label sets"
            )
        return M.multilabel_relevance(qs, gs, ontology=path), f"ontology {path}"
    labels = np.array([s.label for s in rows])
    if (labels < 0).any():
        raise ValueError("rows without a class (class_id -1) and without label lists")
    return M.label_relevance(labels[: q.size], labels[q.size :]), "same class"


def _shown(samples: Sequence[Any], q: np.ndarray, n: int) -> list[int]:
    """Which ``n`` queries (positions in ``q``) to record: the first query of each class in
    manifest order, then the second of each, ... (a grid shows every class); without classes,
    the first ``n``."""
    labels = [samples[int(i)].label for i in q]
    seen: dict[int, int] = {}
    rank = []
    for lab in labels:
        rank.append(seen.get(lab, 0))
        seen[lab] = rank[-1] + 1
    order = sorted(range(len(labels)), key=lambda j: (rank[j], j))
    return order[: max(n, 0)]


def run_retrieval(
    features: FeatureOptions, *, queries: list[str], gallery: list[str], ks: list[int],
    exclude_self: bool | None, ontology: str | None, show: int, show_k: int,
    cross_modal: bool = False, argv: Sequence[str] = (),
) -> int:  # fmt: skip
    """``avssl-eval retrieval`` (module docstring); writes the result JSON, returns 0."""
    if cross_modal:
        raise ValueError(CROSS_MODAL_UNAVAILABLE.format(model=features.model))
    prep = prepare(
        features, "retrieval", check=lambda ev: split_rows(ev, query=queries, gallery=gallery)
    )
    ev = prep.ev
    q, g = split_rows(ev, query=queries, gallery=gallery)
    same = bool(np.array_equal(q, g))
    exclude = same if exclude_self is None else exclude_self
    if exclude and not same:
        raise ValueError("--exclude-self needs the same --queries and --gallery splits")
    rel, rel_kind = _relevance(ev.samples, q, g, ontology)
    x = prep.features.feats
    t0 = time.monotonic()
    res, top = retrieve(x[q], x[g], rel, ks, exclude_self=exclude,
                        show=_shown(ev.samples, q, show), show_k=show_k)  # fmt: skip
    counts = {k: int(res.pop(k)) for k in ("num_queries", "num_evaluated", "num_excluded")}
    for t in top:
        qs = ev.samples[int(q[t["query"]])]
        t["query_id"], t["query_label"] = qs.id, qs.class_name or qs.label
        t["ids"] = [ev.samples[int(g[i])].id for i in t.pop("items")]
        t["query"] = int(q[t["query"]])
    extra = {"features": features_extra(prep), "similarity": "cosine", "relevance": rel_kind,
             "exclude_self": exclude, **counts, "rank_seconds": round(time.monotonic() - t0, 3),
             "top": top}  # fmt: skip
    # the same examples in the form avssl-report draws as a grid of thumbnails
    extra["retrieval_examples"] = [
        {"query": t["query_id"], "neighbours": t["ids"],
         "relevant": [r > 0 for r in t["relevance"]]} for t in top
    ]  # fmt: skip
    extra["root"] = str(Path(ev.root).resolve())
    extra["id_kind"] = "image" if ev.kind == "image" else "video"
    dataset = dataset_dict(prep, g, q, queries=queries, gallery=gallery)
    labels = {"classes": ev.classes} if rel_kind == "same class" else {}
    return finish(prep, "retrieval", argv, dataset, res, extra, **labels)
