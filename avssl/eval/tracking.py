"""``avssl-eval tracking``: label propagation scored on the built-in set's ground truth (boxes:
IoU and success AUC; masks: DAVIS J and F; with the copy-first baseline). docs/tracking.md,
"Evaluation"; design notes: docs/design/prep_tracking_cli.md, "avssl/eval/tracking.py".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.manifest import read_manifest, resolve_under

THRESHOLDS = np.linspace(0.0, 1.0, 21)  # 0, 0.05, ..., 1 (OTB's success plot)
MASK_TOLERANCE = 60.0  # RGB distance to the class colour (see the design notes)


def box_iou(a: Any, b: Any) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes (continuous coordinates); 0 when either is None
    or empty."""
    if a is None or b is None:
        return 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def success_curve(ious: Any, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Share of ``ious`` above each threshold (strictly, as OTB: IoU > theta)."""
    x = np.asarray(ious, np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("success_curve: no IoUs")
    return (x[None, :] > np.asarray(thresholds)[:, None]).mean(1)


def success_auc(ious: Any, thresholds: np.ndarray = THRESHOLDS) -> float:
    """OTB's area under the success plot: the mean success rate over ``thresholds``."""
    return float(success_curve(ious, thresholds).mean())


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """DAVIS J (the toolkit's ``db_eval_iou``): ``|pred & gt| / |pred | gt|`` over the pixels not
    in ``void``; 1 when the union is empty."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    keep = np.ones_like(p) if void is None else ~np.asarray(void, bool)
    union = int(((p | g) & keep).sum())
    return 1.0 if union == 0 else float(((p & g) & keep).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image border counts as outside)."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def f_measure(bp: np.ndarray, bg: np.ndarray, disc: np.ndarray) -> float:
    """F of two boundary maps: precision and recall of their pixels, a pixel matching when the
    other boundary lies within ``disc`` (a dilation kernel); their harmonic mean. 1 when both are
    empty, 0 when one is."""
    import cv2

    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 or n_g == 0:
        return 1.0 if n_p == n_g else 0.0
    near_g = cv2.dilate(bg.astype(np.uint8), disc) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), disc) > 0
    precision = float((bp & near_g).sum() / n_p)
    recall = float((bg & near_p).sum() / n_g)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS-style F of the synth evaluation: boundaries are the inner 4-neighbour edge (the
    real-data benchmark, avssl.eval.tracking_bench, uses the toolkit's ``seg2bmap``), matched
    within ``ceil(bound_th * diagonal)`` pixels (an elliptic disc)."""
    import cv2

    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    r = int(np.ceil(bound_th * np.hypot(*p.shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return f_measure(_boundary(p), _boundary(g), disc)


def colour_masks(frame: np.ndarray, boxes: np.ndarray, colours: np.ndarray,
                 tol: float = MASK_TOLERANCE) -> np.ndarray:  # fmt: skip
    """The synth's object masks ``(K, H, W)`` bool from an RGB frame ``(H, W, 3)``: pixels whose
    centres lie in object k's box ``boxes[k]`` (pixels) and whose colour is within ``tol`` of
    ``colours[k]``."""
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros((len(boxes), h, w), bool)
    rgb = frame.astype(np.float32)
    for k, (box, col) in enumerate(zip(boxes, colours, strict=True)):
        x1, y1, x2, y2 = box
        inside = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
        out[k] = inside & (np.linalg.norm(rgb - np.asarray(col, np.float32), axis=-1) < tol)
    return out


def _clip_tracks(embedder: Any, video: Path, truth: dict[str, Any], size: int,
                 opts: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Per-object records of one clip (IoU, J, F per frame for the tracker and the copy
    baseline; moving flags) and what a picture of it needs."""
    import cv2

    from avssl.data import decode
    from avssl.eval.propagation import (
        boxes_from_index,
        boxes_to_index,
        labels_to_index,
        model_size,
        track_features,
    )

    full = np.stack([f for _, f in decode.iter_frames(video)])  # (T, H, W, 3)
    t, hh, ww = full.shape[:3]
    objs = truth["objects"]
    k = len(objs)
    gt_boxes = np.array([o["boxes_px"] for o in objs], np.float64).transpose(1, 0, 2)  # (T, K, 4)
    if gt_boxes.shape[0] != t:
        raise ValueError(f"{video}: {t} frames but {gt_boxes.shape[0]} boxes per object")
    moving = np.array([o["moving"] for o in objs], bool)  # (K, T)
    colours = np.array([o["rgb"] for o in objs], np.float64)
    masks = np.stack([colour_masks(full[i], gt_boxes[i], colours) for i in range(t)])  # T,K,H,W
    h, w = model_size(hh, ww, size, embedder.stride)
    small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in full])
    feats = embedder.embed(torch.from_numpy(small).permute(0, 3, 1, 2).contiguous())
    box_index0 = boxes_to_index(gt_boxes[0], hh, ww)
    lab_box = track_features(embedder, feats, box_index0, k, opts)
    mask_index0 = np.zeros((hh, ww), np.int64)
    for j in range(k):
        mask_index0[masks[0, j]] = j + 1
    lab_mask = track_features(embedder, feats, mask_index0, k, opts)

    recs = [{"object": o.get("class_name", str(j)), "iou": [], "iou_copy": [], "J": [],
             "J_copy": [], "F": [], "F_copy": [], "moving": moving[j, 1:].tolist()}
            for j, o in enumerate(objs)]  # fmt: skip
    pred_boxes = [[gt_boxes[0, j].tolist() for j in range(k)]]
    pred_index = [box_index0]
    for i in range(1, t):
        idx_b = labels_to_index(lab_box[i], (hh, ww))
        idx_m = labels_to_index(lab_mask[i], (hh, ww))
        boxes = boxes_from_index(idx_b, k)
        pred_boxes.append(boxes)
        pred_index.append(idx_b)
        for j, r in enumerate(recs):
            r["iou"].append(box_iou(boxes[j], gt_boxes[i, j]))
            r["iou_copy"].append(box_iou(gt_boxes[0, j], gt_boxes[i, j]))
            pm, gm = idx_m == j + 1, masks[i, j]
            r["J"].append(region_similarity(pm, gm))
            r["J_copy"].append(region_similarity(masks[0, j], gm))
            r["F"].append(boundary_f(pm, gm))
            r["F_copy"].append(boundary_f(masks[0, j], gm))
    picture = {"frames": full, "gt": gt_boxes, "pred": pred_boxes, "index": pred_index,
               "names": [str(r["object"]) for r in recs]}  # fmt: skip
    return recs, picture


def summarize(tracks: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-track means (all frames, moving frames), then means over tracks, for the tracker and
    for the copy-first baseline."""
    out: dict[str, dict[str, float]] = {}
    for who, suffix in (("tracker", ""), ("copy_first", "_copy")):
        m: dict[str, list[float]] = {}
        for tr in tracks:
            iou = np.asarray(tr["iou" + suffix])
            jj, ff = np.asarray(tr["J" + suffix]), np.asarray(tr["F" + suffix])
            mov = np.asarray(tr["moving"], bool)
            one = {
                "box_mIoU": float(iou.mean()),
                "box_success@0.5": float((iou > 0.5).mean()),
                "box_AUC": success_auc(iou),
                "J": float(jj.mean()),
                "F": float(ff.mean()),
            }
            if mov.any():  # a track without moving frames counts only in the all-frames means
                one |= {
                    "box_mIoU_moving": float(iou[mov].mean()),
                    "box_AUC_moving": success_auc(iou[mov]),
                    "J_moving": float(jj[mov].mean()),
                    "F_moving": float(ff[mov].mean()),
                }
            for key, value in one.items():
                m.setdefault(key, []).append(value)
        res = {key: float(np.mean(v)) for key, v in m.items()}
        res["J&F"] = (res["J"] + res["F"]) / 2
        out[who] = res
    return out


def _sheet(pic: dict[str, Any], path: Path, n: int = 6, scale: int = 2) -> None:
    """A strip of ``n`` frames spread over the clip: the tracked masks tinted, the tracked box
    in the object's colour, the true box in white."""
    import cv2

    from avssl.eval.tracking_pictures import overlay_labels

    t = len(pic["frames"])
    cols = []
    for i in np.linspace(0, t - 1, n).round().astype(int):
        frame = cv2.resize(pic["frames"][i], None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_NEAREST)  # fmt: skip
        index = cv2.resize(pic["index"][i].astype(np.uint8), None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_NEAREST)  # fmt: skip
        img = overlay_labels(frame, index, pic["pred"][i], pic["names"], scale=scale)
        for box in pic["gt"][i]:
            x1, y1, x2, y2 = (round(v * scale) for v in box)
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 255), 1)
        cv2.putText(img, f"t={i}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
        cols.append(img)
    ok, png = cv2.imencode(".png", np.concatenate(cols, axis=1)[..., ::-1])
    if ok:
        path.write_bytes(png.tobytes())


def evaluate_tracking(
    spec: str,
    manifest: Path,
    *,
    split: str = "test",
    size: int | None = None,
    opts: Any = None,
    max_clips: int | None = None,
    pictures: int = 4,
    out: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Track every object of the ``split`` clips of a synth ``manifest`` (design notes);
    returns ``{"metrics": {"tracker": ..., "copy_first": ...}, "clips": [...], ...}``."""
    import sys

    from avssl.eval.propagation import PropagationOptions, load_embedder

    t0 = time.monotonic()
    opts = opts or PropagationOptions()
    rows = [r for r in read_manifest(manifest) if r.get("split") == split]
    if not rows or "boxes" not in rows[0]:
        raise ValueError(f"{manifest}: no {split!r} rows with 'boxes' (a synth manifest.jsonl "
                         "of avssl-prep synth)")  # fmt: skip
    if max_clips and len(rows) > max_clips:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, max_clips).round().astype(int)]
    embedder = load_embedder(spec)
    size = size or embedder.size
    tracks: list[dict[str, Any]] = []
    clips = []
    pics: list[str] = []
    for n, row in enumerate(rows):
        where = f"{manifest}: row of clip {row.get('clip_id')}"
        truth = json.loads(resolve_under(manifest.parent, row["boxes"], where=where).read_text())
        clip = resolve_under(manifest.parent, row["file"], where=where)
        recs, pic = _clip_tracks(embedder, clip, truth, size, opts)
        for r in recs:
            r["clip"] = row["clip_id"]
        tracks += recs
        clips.append({
            "clip": row["clip_id"], "objects": len(recs),
            "box_mIoU": float(np.mean([np.mean(r["iou"]) for r in recs])),
            "copy_box_mIoU": float(np.mean([np.mean(r["iou_copy"]) for r in recs])),
        })  # fmt: skip
        if out is not None and n < pictures:
            (out / "pictures").mkdir(parents=True, exist_ok=True)
            path = out / "pictures" / f"{row['clip_id']}.png"
            _sheet(pic, path)
            pics.append(str(path))
        if progress:
            el = time.monotonic() - t0
            eta = el / (n + 1) * (len(rows) - n - 1)
            print(f"\r{n + 1}/{len(rows)} clips, {el:.0f} s, ETA {eta:.0f} s", end="",
                  file=sys.stderr, flush=True)  # fmt: skip
    if progress:
        print(file=sys.stderr)
    return {
        "metrics": summarize(tracks),
        "clips": clips,
        "tracks": len(tracks),
        "size": size,
        "settings": {**opts.settings(embedder), "similarity": embedder.similarity,
                     "stride": embedder.stride},
        "embedder": {"spec": spec, "kind": embedder.kind, **embedder.info},
        "pictures": pics,
        "seconds": time.monotonic() - t0,
    }  # fmt: skip
