"""``avssl-eval tracking MODEL --davis DIR | --vot DIR``: tracking scored on real ground truth.

**DAVIS-2017 semi-supervised** (:func:`evaluate_davis`), as the official davis2017-evaluation
toolkit (``davis2017/{davis,evaluation,metrics}.py``) computes it:

* a sequence's ground truth is its mask PNGs, in name order; the first one is given to the
  tracker (its frame is where tracking starts), the first and the **last** are not scored, and
  frames without a mask file are skipped (not scored, still tracked through);
* objects are ids ``1..K`` with ``K`` the largest id of the first mask (a missing id is an
  object absent from every frame); ``255`` is void. The toolkit sets void pixels to 0 when it
  reads a mask, and the void mask it later builds compares a boolean array with 255, so void
  pixels count as **background** of every object (``void="background"``, the default);
  ``void="ignore"`` drops them from J and F instead (the intended DAVIS rule);
* per object and frame: **J** = ``|P & G| / |P | G|`` (1 when both are empty) and **F** = the
  F-measure of the boundary maps of ``seg2bmap``, a boundary pixel matching when the other
  boundary lies within a disk of radius ``ceil(0.008 * diagonal)`` (precision 1 / recall 0 for
  an empty prediction, 0 / 1 for an empty ground truth, 1 / 1 for both empty -- so an object
  absent from both scores J = F = 1 and one that left the frame but is still predicted J = F = 0);
* per object: mean (M), recall (share of frames > 0.5) and decay (first quarter minus last quarter)
  over its scored frames (``db_statistics``); per sequence the mean over its objects; overall
  the mean over **all objects** of all sequences, J&F = (J + F) / 2.

**Boxes, VOT style** (:func:`evaluate_vot`): ``groundtruth.txt`` holds a region per frame,
``x,y,w,h`` or ``x1,y1,...,x4,y4`` (a rotated box; any polygon of 3+ corners); ``nan`` /
empty / 1-number lines are frames without ground truth. The tracker is given frame 0's region
as the axis-aligned bounding box of its polygon; a later frame's predicted box (the bounding box
of the largest piece of the propagated mask, :func:`avssl.track.boxes_from_index`; none when the
object vanished: IoU 0) is scored by its IoU with the **axis-aligned bounding box of the true
polygon** (``iou``, OTB's convention, the one the success AUC uses) and with the polygon itself
(``iou_poly``, the polygon's convex hull intersected exactly). Scored: frames 1..T-1 that have
ground truth; the success AUC is OTB's mean success rate at IoU > 0, 0.05, ..., 1.

**Layouts** (:func:`find_davis`, :func:`find_vot`): ``--davis`` takes the DAVIS tree
(``JPEGImages/<res>/<seq>/*.jpg`` + ``Annotations/<res>/<seq>/*.png``; ``--imageset 2017/val``
reads the list ``ImageSets/2017/val.txt``, ``--sequences`` picks by name), one sequence folder, or
a folder of sequence folders, each holding ``masks/`` and its frames: ``frames/``, ``color/``,
``img/`` or ``JPEGImages/`` (numbered images), a video file, or the images in the folder itself. A
mask numbered ``n`` is the frame numbered ``n`` of a frame folder, frame ``n`` (0-based) of a video
file (1-based when the numbers run 1..T). A sequence whose first mask holds only 0 and 255 is
**binary**: every mask is thresholded at 128 into object 1 (no void). ``--vot`` takes a sequence
folder holding ``groundtruth.txt`` or a folder of them. Folders with fewer than 3 masks (only a
first-frame mask: nothing to score), without ``masks/`` or ``groundtruth.txt``, or without frames
are skipped with the reason printed.

Alongside every model the **copy-first** baseline (frame 0's mask / box for every frame) is
scored on the same frames.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.decode import VIDEO_SUFFIXES
from avssl.data.frame_folder import frame_number
from avssl.eval.tracking import box_iou, f_measure, region_similarity, success_auc

__all__ = [
    "BoxSequence",
    "MaskSequence",
    "davis_f",
    "db_statistics",
    "evaluate_davis",
    "evaluate_vot",
    "find_davis",
    "find_vot",
    "parse_groundtruth",
    "polygon_iou",
    "run_bench",
    "seg2bmap",
]

BOUND_TH = 0.008  # the toolkit's boundary tolerance, a share of the image diagonal
VOID = 255
_FRAME_DIRS = ("frames", "color", "img", "JPEGImages")


# ------------------------------------------------------------------------------ DAVIS metrics
def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The toolkit's (Martin's) boundary map: a pixel differing from its east, south or
    south-east neighbour; on the last row / column only the east / south one counts."""
    s = np.asarray(seg, bool)
    e, so, se = np.zeros_like(s), np.zeros_like(s), np.zeros_like(s)
    e[:, :-1] = s[:, 1:]
    so[:-1, :] = s[1:, :]
    se[:-1, :-1] = s[1:, 1:]
    b = (s ^ e) | (s ^ so) | (s ^ se)
    b[-1, :] = s[-1, :] ^ e[-1, :]
    b[:, -1] = s[:, -1] ^ so[:, -1]
    b[-1, -1] = False
    return b


def _disk(r: int) -> np.ndarray:
    """``skimage.morphology.disk(r)``: the pixels with ``x^2 + y^2 <= r^2``."""
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def davis_f(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None,
            bound_th: float = BOUND_TH) -> float:  # fmt: skip
    """The toolkit's ``f_measure`` of one frame (module docstring): ``seg2bmap`` boundaries of
    the masks less the void pixels, matched within a disk of ``ceil(bound_th * diagonal)`` px."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if void is not None:
        p, g = p & ~np.asarray(void, bool), g & ~np.asarray(void, bool)
    r = int(bound_th if bound_th >= 1 else np.ceil(bound_th * np.hypot(*p.shape)))
    return f_measure(seg2bmap(p), seg2bmap(g), _disk(r))


def db_statistics(values: Any) -> tuple[float, float, float]:
    """The toolkit's per-object mean, recall (share > 0.5) and decay (mean of the first of 4
    bins minus the last; the bins overlap by one frame, as there)."""
    x = np.asarray(values, np.float64)
    ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(int)
    bins = [x[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return float(x.mean()), float((x > 0.5).mean()), float(bins[0].mean() - bins[3].mean())


# ------------------------------------------------------------------------------ box metrics
def parse_groundtruth(path: Path) -> list[np.ndarray | None]:
    """Regions of a VOT / OTB ``groundtruth.txt``: per line a polygon ``(N, 2)`` (pixels) or
    None (no ground truth in that frame)."""
    out: list[np.ndarray | None] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if text.startswith("m"):
            raise ValueError(f"{path}:{n}: a VOT mask region; only boxes and polygons are read")
        v = np.array([float(s) for s in re.split(r"[,\s]+", text) if s], np.float64)
        if len(v) == 4 and np.isfinite(v).all() and v[2] > 0 and v[3] > 0:
            x, y, w, h = v
            out.append(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]))
        elif len(v) >= 6 and len(v) % 2 == 0 and np.isfinite(v).all():
            out.append(v.reshape(-1, 2))
        elif len(v) in (0, 1) or not np.isfinite(v).all() or len(v) == 4:
            out.append(None)
        else:
            raise ValueError(f"{path}:{n}: {len(v)} numbers; want x,y,w,h or x1,y1,...,xn,yn")
    return out


def aabb(poly: Any) -> list[float]:
    """The axis-aligned bounding box ``[x1, y1, x2, y2]`` of a polygon ``(N, 2)``."""
    p = np.asarray(poly, np.float64)
    return [float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]


def polygon_iou(box: Any, poly: Any) -> float:
    """IoU of a box ``[x1, y1, x2, y2]`` with a polygon's convex hull (exact areas); 0 for
    None."""
    import cv2

    if box is None:
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in box)
    rect = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    hull = cv2.convexHull(np.asarray(poly, np.float32).reshape(-1, 2))
    inter, _ = cv2.intersectConvexConvex(rect, hull)
    union = (x2 - x1) * (y2 - y1) + float(cv2.contourArea(hull)) - float(inter)
    return float(inter) / union if union > 0 else 0.0


# ------------------------------------------------------------------------------ layouts
@dataclass
class MaskSequence:
    name: str
    video: Path  # a frame folder or a video file
    masks: list[tuple[int, Path]]  # (frame index, mask file) in frame order
    binary: bool  # 0/255 masks: one object


@dataclass
class BoxSequence:
    name: str
    video: Path
    regions: list[np.ndarray | None]  # per frame from 0: a polygon (N, 2) or None


def frames_of(folder: Path) -> Path | None:
    """The video of a sequence folder (module docstring), or None."""
    from avssl.data.frame_folder import looks_like_frame_folder

    for name in _FRAME_DIRS:
        if looks_like_frame_folder(folder / name):
            return folder / name
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return videos[0]
    return folder if looks_like_frame_folder(folder) else None


def read_mask(path: Path) -> np.ndarray:
    """A mask image's values ``(H, W)`` uint8: palette indices of a palette PNG, grey levels of
    a grey one (other modes are converted to grey)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "L"):
            return np.asarray(im, np.uint8)
        if im.mode == "1":
            return np.asarray(im, np.uint8) * 255
        return np.asarray(im.convert("L"), np.uint8)


def _mask_frames(name: str, masks_dir: Path, video: Path) -> list[tuple[int, Path]]:
    """(frame index, file) of a sequence's mask PNGs (module docstring: the numbering)."""
    from avssl.data import decode
    from avssl.data.frame_folder import list_frames

    pngs = [p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"]
    files = sorted((n, p) for p in pngs if (n := frame_number(p.name)) is not None)
    if not files:
        return []
    if video.is_dir():
        pos = {n: i for i, n in enumerate(list_frames(video).numbers)}
        missing = [p.name for n, p in files if n not in pos]
        if missing:
            raise ValueError(f"{name}: masks {missing[:3]} have no frame of that number in {video}")
        return [(pos[n], p) for n, p in files]
    t = decode.probe(video).num_frames
    shift = 1 if files[0][0] >= 1 and files[-1][0] == t else 0
    out = [(n - shift, p) for n, p in files]
    if out[-1][0] >= t:
        raise ValueError(f"{name}: mask {files[-1][1].name} is past the video's {t} frames")
    return out


def read_imageset(root: Path, spec: str) -> list[str]:
    """Sequence names of a DAVIS ``ImageSets`` list: ``spec`` a path to a ``.txt``, ``YEAR/SET``
    (``root/ImageSets/YEAR/SET.txt``) or ``SET`` (the newest year holding ``SET.txt``)."""
    path = Path(spec)
    if not path.is_file():
        sets = root / "ImageSets"
        name = spec if spec.endswith(".txt") else spec + ".txt"
        cands = [sets / name] if "/" in spec else sorted(sets.glob(f"*/{name}"), reverse=True)
        cands += [sets / name]
        path = next((c for c in cands if c.is_file()), Path())
        if not path.is_file():
            raise FileNotFoundError(f"--imageset {spec}: no {name} under {sets}")
    names = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise ValueError(f"{path}: --imageset lists no sequence")
    return names


def _pick(cands: list[tuple[str, Path]], sequences: list[str] | None) -> list[tuple[str, Path]]:
    """The candidates named in ``sequences`` (all when None; run_bench names the unknown)."""
    return cands if not sequences else [c for c in cands if c[0] in sequences]


def find_davis(root: Path, resolution: str = "480p", sequences: list[str] | None = None,
               ) -> tuple[list[MaskSequence], list[tuple[str, str]]]:  # fmt: skip
    """Mask sequences under ``root`` and ``(name, reason)`` of the folders skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: --davis folder not found")
    cands: list[tuple[str, Path, Path | None]]  # name, masks dir, video
    if (root / "JPEGImages").is_dir():
        img, ann = root / "JPEGImages" / resolution, root / "Annotations" / resolution
        if not img.is_dir():
            raise FileNotFoundError(f"{img}: no frames at resolution {resolution!r}")
        cands = [(d.name, ann / d.name, d) for d in sorted(img.iterdir()) if d.is_dir()]
    else:
        dirs = [root] if (root / "masks").is_dir() else sorted(d for d in root.iterdir()
                                                              if d.is_dir())  # fmt: skip
        cands = [(d.name, d / "masks", frames_of(d)) for d in dirs]
    keep = {n for n, _ in _pick([(n, m) for n, m, _ in cands], sequences)}
    found, skipped = [], []
    for name, masks_dir, video in cands:
        if name not in keep:
            continue
        if not masks_dir.is_dir():
            why = f"no mask folder ({masks_dir})"
            if (masks_dir.parent / "groundtruth.txt").is_file():
                why += " (a box sequence: groundtruth.txt, use --vot)"
            skipped.append((name, why))
            continue
        if video is None:
            skipped.append((name, "no frames (frames/, color/, a video file or images)"))
            continue
        masks = _mask_frames(name, masks_dir, video)
        if len(masks) < 3:
            why = f"{len(masks)} mask file(s): only the given first-frame mask, no ground truth"
            skipped.append((name, why + " to score (the first and last are not scored)"))
            continue
        first = read_mask(masks[0][1])
        binary = bool(np.isin(first, (0, 255)).all())
        found.append(MaskSequence(name, video, masks, binary))
    return found, skipped


def find_vot(root: Path, sequences: list[str] | None = None,
             ) -> tuple[list[BoxSequence], list[tuple[str, str]]]:  # fmt: skip
    """Box sequences under ``root`` and ``(name, reason)`` of the folders skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: --vot folder not found")
    if (root / "groundtruth.txt").is_file():
        dirs = [root]
    else:
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
    keep = {n for n, _ in _pick([(d.name, d) for d in dirs], sequences)}
    found, skipped = [], []
    for d in dirs:
        if d.name not in keep:
            continue
        gt = d / "groundtruth.txt"
        if not gt.is_file():
            why = "no groundtruth.txt"
            skipped.append((d.name, why + (" (masks/: use --davis)" if (d / "masks").is_dir()
                                           else "")))  # fmt: skip
            continue
        video = frames_of(d)
        if video is None:
            skipped.append((d.name, "no frames (frames/, color/, a video file or images)"))
            continue
        found.append(BoxSequence(d.name, video, parse_groundtruth(gt)))
    return found, skipped


# ------------------------------------------------------------------------------ tracking
def _track(embedder: Any, video: Path, start: int, end: int, index0: np.ndarray, k: int,
           size: int | None, opts: Any) -> torch.Tensor:  # fmt: skip
    """Soft labels ``(end - start, K + 1, h, w)`` of frames ``start..end-1`` of ``video``
    tracked from ``index0`` (the frame ``start`` labels) with :func:`avssl.track.track_frames`."""
    from avssl.data import decode
    from avssl.track import model_size, real_size, track_frames

    info = decode.probe(video)
    if index0.shape != (info.height, info.width):
        raise ValueError(f"{video}: {info.width}x{info.height} frames but a "
                         f"{index0.shape[1]}x{index0.shape[0]} first label map")  # fmt: skip
    h, w = model_size(info.height, info.width, real_size(size, info.height, info.width),
                      embedder.stride)  # fmt: skip
    frames = []
    for i, frame in decode.iter_frames(video, size=(h, w), info=info):
        if i >= end:
            break
        if i >= start:
            frames.append(frame)
    if len(frames) != end - start:
        raise ValueError(f"{video}: {len(frames)} frames from {start}, {end - start} wanted")
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return track_frames(embedder, x, index0, k, opts)


def _object_ids(values: np.ndarray, binary: bool) -> np.ndarray:
    """Mask values -> ids (0 background, 1..K objects, VOID): binary masks threshold at 128."""
    return (values >= 128).astype(np.uint8) if binary else values


def evaluate_davis(embedder: Any, seq: MaskSequence, *, size: int | None, opts: Any,
                   void: str = "background", picture: Path | None = None,
                   ) -> dict[str, Any]:  # fmt: skip
    """J and F per object and scored frame of one sequence, for the tracker and copy-first,
    and their per-object statistics (module docstring); ``picture``: write its sheet there
    (:mod:`avssl.eval.tracking_pictures`)."""
    from avssl.eval.tracking_pictures import Panel, pick_frames
    from avssl.track import labels_to_index

    if void not in ("background", "ignore"):
        raise ValueError(f"void must be background or ignore, not {void!r}")
    start, first_path = seq.masks[0]
    ids0 = _object_ids(read_mask(first_path), seq.binary)
    k = int(ids0[ids0 != VOID].max(initial=0))
    if k == 0:
        raise ValueError(f"{seq.name}: the first mask {first_path.name} holds no object")
    index0 = np.where(ids0 == VOID, 0, ids0).astype(np.int64)
    scored = seq.masks[1:-1]
    labels = _track(embedder, seq.video, start, scored[-1][0] + 1, index0, k, size, opts)
    hw = index0.shape
    res = {who: {"J": np.zeros((k, len(scored))), "F": np.zeros((k, len(scored)))}
           for who in ("tracker", "copy_first")}  # fmt: skip
    shown = set(pick_frames([i for i, _ in scored], PANELS - 1)) if picture else set()
    panels = [Panel(start, index0, index0, f"frame {start}: given")] if picture else []
    for n, (i, path) in enumerate(scored):
        gt = _object_ids(read_mask(path), seq.binary)
        if gt.shape != hw:
            raise ValueError(f"{seq.name}: mask {path.name} is {gt.shape[::-1]}, not {hw[::-1]}")
        vm = gt == VOID
        gt = np.where(vm, 0, gt)
        v = vm if void == "ignore" and vm.any() else None
        pred = labels_to_index(labels[i - start], hw)
        for who, p in (("tracker", pred), ("copy_first", index0)):
            for j in range(k):
                pj, gj = p == j + 1, gt == j + 1
                res[who]["J"][j, n] = region_similarity(pj, gj, v)
                res[who]["F"][j, n] = davis_f(pj, gj, v)
        if i in shown:
            panels.append(
                Panel(i, pred, gt, f"frame {i}: J {res['tracker']['J'][:, n].mean():.2f}")
            )
    out: dict[str, Any] = {"sequence": seq.name, "video": str(seq.video), "objects": k,
                           "frames_scored": len(scored), "binary_masks": seq.binary}  # fmt: skip
    for who, r in res.items():
        objs = []
        for j in range(k):
            jm, jr, jd = db_statistics(r["J"][j])
            fm, fr, fd = db_statistics(r["F"][j])
            objs.append({"J": jm, "J_recall": jr, "J_decay": jd, "F": fm, "F_recall": fr,
                         "F_decay": fd, "J_per_frame": [round(x, 5) for x in r["J"][j]],
                         "F_per_frame": [round(x, 5) for x in r["F"][j]]})  # fmt: skip
        jj, ff = np.mean([o["J"] for o in objs]), np.mean([o["F"] for o in objs])
        out[who] = {"J": float(jj), "F": float(ff), "J&F": float((jj + ff) / 2), "objects": objs}
    if picture is not None:
        score = f"J&F {out['tracker']['J&F']:.3f} (copy-first {out['copy_first']['J&F']:.3f})"
        _sheet(seq, panels, [f"{j}" for j in range(1, k + 1)], embedder, score, picture)
    return out


PANELS = 5  # panels of a sequence's picture: the given frame and 4 spread over the scored ones


def _sheet(seq: Any, panels: list[Any], names: list[str], embedder: Any, score: str,
           path: Path) -> None:  # fmt: skip
    from avssl.eval.tracking_pictures import write_sheet

    title = (f"{seq.name} | {embedder.spec} | {score} | fill: tracked, white outline: "
             "ground truth")  # fmt: skip
    write_sheet(seq.video, panels, names, title, path)


def davis_summary(seqs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The toolkit's global means: over all objects of all sequences."""
    out = {}
    for who in ("tracker", "copy_first"):
        objs = [o for s in seqs for o in s[who]["objects"]]
        m = {key: float(np.mean([o[key] for o in objs]))
             for key in ("J", "J_recall", "J_decay", "F", "F_recall", "F_decay")}  # fmt: skip
        out[who] = {"J&F": (m["J"] + m["F"]) / 2, **m, "objects": float(len(objs))}
    return out


def evaluate_vot(embedder: Any, seq: BoxSequence, *, size: int | None, opts: Any,
                 picture: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Per-frame IoU of the tracked box (and of copy-first) with the true region of frames
    1..T-1 that have one; mean IoU, success@0.5 and success AUC (module docstring);
    ``picture``: write its sheet there."""
    from avssl.data import decode
    from avssl.eval.tracking_pictures import Panel, pick_frames
    from avssl.track import boxes_from_index, boxes_to_index, labels_to_index

    info = decode.probe(seq.video)
    hh, ww = info.height, info.width
    if len(seq.regions) > info.num_frames:
        raise ValueError(f"{seq.name}: {len(seq.regions)} ground-truth lines for "
                         f"{info.num_frames} frames")  # fmt: skip
    if seq.regions[0] is None:
        raise ValueError(f"{seq.name}: the first frame has no ground-truth region")
    b = aabb(seq.regions[0])
    box0 = [max(0.0, b[0]), max(0.0, b[1]), min(float(ww), b[2]), min(float(hh), b[3])]
    index0 = boxes_to_index(np.array([box0]), hh, ww)
    if not index0.any():
        raise ValueError(f"{seq.name}: the first box {b} covers no pixel centre")
    t = len(seq.regions)
    labels = _track(embedder, seq.video, 0, t, index0, 1, size, opts)
    rec: dict[str, list[Any]] = {"frame": [], "iou": [], "iou_poly": [], "iou_copy": [],
                                 "iou_poly_copy": [], "box": []}  # fmt: skip
    shown = set(pick_frames([i for i in range(1, t) if seq.regions[i] is not None],
                            PANELS - 1)) if picture else set()  # fmt: skip
    panels = [Panel(0, index0, None, "frame 0: given", box0, seq.regions[0])] if picture else []
    for i in range(1, t):
        region = seq.regions[i]
        if region is None:
            continue
        index = labels_to_index(labels[i], (hh, ww))
        pred = boxes_from_index(index, 1)[0]
        rec["frame"].append(i)
        rec["box"].append(None if pred is None else [round(v, 2) for v in pred])
        rec["iou"].append(box_iou(pred, aabb(region)))
        rec["iou_poly"].append(polygon_iou(pred, region))
        rec["iou_copy"].append(box_iou(box0, aabb(region)))
        rec["iou_poly_copy"].append(polygon_iou(box0, region))
        if i in shown:
            cap = f"frame {i}: IoU {rec['iou'][-1]:.2f}"
            panels.append(Panel(i, index, None, cap, pred, region))
    if not rec["frame"]:
        raise ValueError(f"{seq.name}: no frame after the first has ground truth")
    out: dict[str, Any] = {"sequence": seq.name, "video": str(seq.video),
                           "frames_scored": len(rec["frame"])}  # fmt: skip
    for who, sfx in (("tracker", ""), ("copy_first", "_copy")):
        iou, ip = np.asarray(rec["iou" + sfx]), np.asarray(rec["iou_poly" + sfx])
        out[who] = {"mIoU": float(iou.mean()), "success@0.5": float((iou > 0.5).mean()),
                    "AUC": success_auc(iou), "mIoU_poly": float(ip.mean()),
                    "AUC_poly": success_auc(ip)}  # fmt: skip
    out["per_frame"] = {key: [round(x, 5) if isinstance(x, float) else x for x in v]
                        for key, v in rec.items()}  # fmt: skip
    if picture is not None:
        score = f"AUC {out['tracker']['AUC']:.3f} (copy-first {out['copy_first']['AUC']:.3f})"
        _sheet(seq, panels, ["1"], embedder, score, picture)
    return out


def vot_summary(seqs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Means over sequences (OTB averages each sequence's success AUC)."""
    return {who: {key: float(np.mean([s[who][key] for s in seqs])) for key in seqs[0][who]}
            for who in ("tracker", "copy_first")}  # fmt: skip


# ------------------------------------------------------------------------------ CLI
def _table(title: str, rows: list[tuple[str, str, Any, Any]], keys: tuple[str, ...],
           heads: tuple[str, ...]) -> None:  # fmt: skip
    """Rows of ``(name, count text, tracker metrics, copy-first metrics)``."""
    print(f"  {title:<38}{'tracker':^24}{'copy first':^24}")
    print(f"  {'sequence':<26}{'':>12}" + "".join(f"{h:>8}" for h in heads) * 2)
    for name, count, a, b in rows:
        vals = "".join(f"{d[x]:>8.4f}" for d in (a, b) for x in keys)
        print(f"  {name:<26}{count:>12}{vals}")


def _print_tables(davis: list[dict[str, Any]], vot: list[dict[str, Any]],
                  metrics: dict[str, Any]) -> None:  # fmt: skip
    if davis:
        m = metrics["davis"]
        rows = [(s["sequence"], f"{s['objects']} obj {s['frames_scored']} fr", s["tracker"],
                 s["copy_first"]) for s in davis]  # fmt: skip
        rows.append(("all (mean over objects)", f"{int(m['tracker']['objects'])} obj",
                     m["tracker"], m["copy_first"]))  # fmt: skip
        _table("DAVIS-2017 semi-supervised", rows, ("J", "F", "J&F"), ("J", "F", "J&F"))
    if vot:
        rows = [(s["sequence"], f"{s['frames_scored']} fr", s["tracker"], s["copy_first"])
                for s in vot]  # fmt: skip
        if len(vot) > 1:
            m = metrics["vot"]
            rows.append(("all (mean over sequences)", "", m["tracker"], m["copy_first"]))
        _table("boxes (VOT ground truth)", rows, ("mIoU", "AUC", "success@0.5"),
               ("mIoU", "AUC", "S@0.5"))  # fmt: skip


def run_bench(args: argparse.Namespace, out: Path) -> int:
    """``avssl-eval tracking MODEL --davis DIR --vot DIR``: evaluate, print, write
    ``OUT/tracking_bench.json``."""
    from avssl.data.manifest import atomic_write_text
    from avssl.track import REAL_SIZE, PropagationOptions, load_embedder

    t0 = time.monotonic()
    opts = PropagationOptions(args.context, args.radius if args.radius > 0 else None, args.topk,
                              args.temperature)  # fmt: skip
    names = [s for s in (args.sequences or "").split(",") if s] or None
    dnames = names
    if getattr(args, "imageset", None):  # the DAVIS side only: --vot keeps --sequences
        if not args.davis:
            raise ValueError("--imageset needs --davis (a DAVIS tree with ImageSets/)")
        listed = read_imageset(Path(args.davis), args.imageset)
        dnames = [n for n in names if n in listed] if names else listed
        if not dnames:
            raise ValueError(f"--sequences: none of them is in --imageset {args.imageset}")
    dseqs, skipped = (
        find_davis(Path(args.davis), args.resolution, dnames) if args.davis else ([], [])
    )
    vseqs, vskip = find_vot(Path(args.vot), names) if args.vot else ([], [])
    found = {s.name for s in dseqs} | {b.name for b in vseqs}
    unknown = sorted(
        (set(names or ()) | set(dnames or ())) - found - {n for n, _ in skipped + vskip}
    )
    if unknown:
        raise ValueError(f"--sequences: no sequence {unknown} under --davis / --vot")
    reasons: dict[str, str] = {}  # one reason per folder; none for one the other flag scores
    for n, w in skipped + vskip:
        if n not in found:
            reasons.setdefault(n, w)
    skipped = list(reasons.items())
    for name, why in skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    if not dseqs and not vseqs:
        raise ValueError("no sequence with ground truth to score (see the skipped reasons)")
    embedder = load_embedder(args.model)
    size = args.size  # None: avssl.track.real_size per sequence
    davis, vot = [], []
    names_all = [q.name for q in dseqs] + [q.name for q in vseqs]
    pictured = names_all[: max(0, getattr(args, "pictures", 0) or 0)]

    def picture(name: str) -> Path | None:  # sheets of the first --pictures sequences
        return out / "pictures" / f"{name}.png" if name in pictured else None

    for s in dseqs:
        davis.append(evaluate_davis(embedder, s, size=size, opts=opts, void=args.void,
                                    picture=picture(s.name)))  # fmt: skip
        print(f"  {s.name}: J&F {davis[-1]['tracker']['J&F']:.4f}", file=sys.stderr)
    for b in vseqs:
        vot.append(evaluate_vot(embedder, b, size=size, opts=opts,
                                picture=picture(b.name)))  # fmt: skip
        print(f"  {b.name}: AUC {vot[-1]['tracker']['AUC']:.4f}", file=sys.stderr)
    metrics: dict[str, Any] = {}
    if davis:
        metrics["davis"] = davis_summary(davis)
    if vot:
        metrics["vot"] = vot_summary(vot)
    result = {"format": "avssl-eval", "version": 1, "kind": "tracking-bench",
              "model": {"spec": args.model, "kind": embedder.kind, **embedder.info},
              "dataset": {"davis": args.davis, "vot": args.vot, "resolution": args.resolution,
                          "void": args.void, "sequences": [s["sequence"] for s in davis + vot],
                          "skipped": [{"sequence": n, "reason": w} for n, w in skipped]},
              "metrics": metrics,
              "extra": {"size": size or f"{REAL_SIZE} or the video's short side", "settings": {
                  "context": opts.context, "radius": opts.radius, "topk": opts.topk,
                  "temperature": opts.temperature or embedder.temperature,
                  "similarity": embedder.similarity, "stride": embedder.stride},
                  "davis_sequences": davis, "vot_sequences": vot},
              "command": "avssl-eval " + " ".join(getattr(args, "argv", [])),
              "seconds": time.monotonic() - t0}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tracking_bench.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    shown = size or f"{REAL_SIZE} (or the short side)"
    print(f"tracking: {args.model} on {len(davis)} mask and {len(vot)} box sequence(s), input "
          f"{shown} px, {result['seconds']:.0f} s")  # fmt: skip
    _print_tables(davis, vot, metrics)
    print(f"wrote {path}")
    return 0
