"""The one feature cache of the frozen-feature commands (``linear``, ``knn``, ``retrieval``,
``esc50``): atomic ``.npz`` files, used only when their ids are the rows asked for.
Design notes: docs/design/models_tasks_eval.md, "avssl/eval/feature_cache.py".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avssl.data.manifest import atomic_output


@dataclass
class Features:
    """Features of a set of rows and where they came from."""

    feats: np.ndarray  # (N, D) float32
    cache: Path | None
    hit: bool
    seconds: float


def cached_features(
    path: Path | None,
    ids: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    split: Sequence[str],
    compute: Callable[[], np.ndarray],
) -> Features:
    """The features of rows ``ids`` from the cache file ``path`` when it holds them, else
    ``compute()`` written there (``path=None``: no cache). Says on stdout which it was."""
    t0 = time.monotonic()
    id_arr = np.asarray(ids, dtype=np.str_)
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                feats, cached_ids = np.asarray(z["feats"], np.float32), z["ids"]
            if cached_ids.shape == id_arr.shape and bool((cached_ids == id_arr).all()):
                print(f"features: loaded from cache {path}")
                return Features(feats, path, True, time.monotonic() - t0)
        except (OSError, KeyError, ValueError):
            pass  # unreadable or stale: recompute and replace
    feats = np.asarray(compute(), np.float32)
    seconds = time.monotonic() - t0
    if path is not None:
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, feats=feats, labels=np.asarray(labels, np.int64), ids=id_arr,
                     split=np.asarray(split, dtype=np.str_))  # fmt: skip
    where = f", cached in {path}" if path is not None else ""
    print(f"features: {feats.shape[0]} x {feats.shape[1]} extracted in {seconds:.1f} s{where}")
    return Features(feats, path, False, seconds)
