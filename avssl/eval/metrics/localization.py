"""Sound-source localisation metrics (VGG-SS / Flickr-SoundNet style): cIoU, AUC, pointing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from avssl.checks import float_arg, int_arg
from avssl.eval.metrics.classification import _features


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

    Pixel ``(i, j)`` is inside a box when its centre ``(j + 0.5, i + 0.5)`` lies in
    ``[x1 * width, x2 * width] x [y1 * height, y2 * height]`` (closed), after clipping the
    coordinates to [0, 1] (as EZ-VSL). The reference EZ-VSL/LVS code truncates instead
    (``map[int(y1 * H):int(y2 * H), ...]``), which can differ by one row/column at a box edge.

    * ``soft=False``: ``boxes_norm`` is one (B, 4) box list; 1 on the union of the boxes (VGG-SS).
    * ``soft=True``: one box list per annotator; the mean of their binary masks, or with
      ``consensus=m`` ``min(count / m, 1)`` -- the Flickr-SoundNet consensus map of Senocak et al.
      as implemented in LVS / EZ-VSL (``m = 2``).
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
    if (a := _features(name, values)).size == 0:
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

    ``heatmap`` (h, w) is resized to ``gt``'s (H, W) (bilinear, ``align_corners=False``), then
    binarised:

    * ``"median"`` (default): ``pred = heatmap >= sort(heatmap.ravel())[H*W // 2]`` (the upper
      median), exactly the EZ-VSL evaluation (Mo & Morgado 2022). LVS (Chen et al. 2021) uses a
      strict ``>``; the two differ only on plateaus of the map. A constant heatmap selects every
      pixel.
    * a number ``t`` in [0, 1]: ``pred = norm >= t`` on the min-max normalised map (a constant
      heatmap normalises to all zeros).

    Then ``cIoU = sum(pred * gt) / (sum(gt) + sum(pred * (1 - gt)))`` with ``gt`` in [0, 1]: the
    reference code's ``sum(gt) + sum(pred * [gt == 0])`` for a binary ``gt``, this one for a soft
    (consensus) ``gt``. Raises ValueError if ``gt`` is all zero (cIoU undefined) or outside [0, 1].
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

    ``cIoU@0.5`` is the fraction of images with cIoU >= 0.5; ``AUC`` the trapezoid-rule area under
    the success rate (fraction with cIoU >= t) over ``thresholds`` (default 0, 0.05, ..., 1), as
    ``sklearn.metrics.auc`` in the LVS / EZ-VSL code.
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


def heatmap_peak(heatmap: ArrayLike, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(row, column)`` of the heatmap's maximum (the first in row-major order), after resizing
    it (as in :func:`ciou`) to ``size = (height, width)`` when given: the point
    :func:`pointing_game` scores."""
    hm = _map2d("heatmap", heatmap)
    if size is not None:
        if len(size) != 2:
            raise ValueError(f"size must be (height, width), got {size!r}")
        hm = _resize_bilinear(hm, (int_arg("height", size[0], 1), int_arg("width", size[1], 1)))
    i, j = np.unravel_index(int(np.argmax(hm)), hm.shape)
    return int(i), int(j)


def pointing_game(
    heatmap: ArrayLike, boxes_norm: ArrayLike, size: tuple[int, int] | None = None
) -> float:
    """1.0 if the heatmap's maximum (the first in row-major order) falls inside a ground-truth
    box (the pixel-centre rule of :func:`boxes_to_mask`), else 0.0. The heatmap is first resized
    (as in :func:`ciou`) to ``size = (height, width)`` when given. ValueError without boxes."""
    hm = _map2d("heatmap", heatmap)
    boxes = _box_array(boxes_norm)
    if boxes.shape[0] == 0:
        raise ValueError("pointing_game needs at least one box")
    i, j = heatmap_peak(hm, size)
    h, w = (hm.shape[0], hm.shape[1]) if size is None else (int(size[0]), int(size[1]))
    return float(_binary_box_mask(boxes, h, w)[i, j])
