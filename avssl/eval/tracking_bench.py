"""``avssl-eval tracking MODEL --davis DIR | --vot DIR``: tracking scored on real ground truth.
docs/tracking.md, "Real ground truth"; design notes: docs/design/prep_tracking_cli.md,
"avssl/eval/tracking_bench.py".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avssl.data.decode import VIDEO_SUFFIXES
from avssl.data.frame_folder import frame_number
from avssl.eval.tracking import box_iou, f_measure, region_similarity, success_auc

BOUND_TH = 0.008  # the toolkit's boundary tolerance, a share of the image diagonal
VOID = 255
_FRAME_DIRS = ("frames", "color", "img", "JPEGImages")
_NO_FRAMES = "no frames (frames/, color/, a video file or images)"
PANELS = 5  # panels of a sequence's picture: the given frame and 4 spread over the scored ones
LEGEND = "fill: tracked, white outline: ground truth"


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
    """The toolkit's ``f_measure`` of one frame: ``seg2bmap`` boundaries of the masks less the void
    pixels, matched within a disk of ``ceil(bound_th * diagonal)`` px; 1 when both are empty, 0
    when one is (an object that left the frame but is still predicted scores 0)."""
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
    """The video of a sequence folder (``frames/``, ``color/``, ``img/``, ``JPEGImages/``, a video
    file or the images in the folder itself), or None."""
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
    """(frame index, file) of a sequence's mask PNGs: mask ``n`` is the frame numbered ``n`` of a
    frame folder, frame ``n`` of a video file (0-based; 1-based when the numbers run 1..T)."""
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


def find_davis(root: Path, resolution: str = "480p", sequences: list[str] | None = None,
               ) -> tuple[list[MaskSequence], list[tuple[str, str]]]:  # fmt: skip
    """Mask sequences under ``root`` (the DAVIS tree, one sequence folder or a folder of them,
    each holding ``masks/`` and frames) and ``(name, reason)`` of the folders skipped. A sequence
    whose first mask holds only 0 and 255 is binary (thresholded at 128 into object 1)."""
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
    found, skipped = [], []
    for name, masks_dir, video in cands:
        if sequences and name not in sequences:  # avssl.cli.eval_tracking names the unknown
            continue
        if not masks_dir.is_dir():
            why = f"no mask folder ({masks_dir})"
            if (masks_dir.parent / "groundtruth.txt").is_file():
                why += " (a box sequence: groundtruth.txt, use --vot)"
            skipped.append((name, why))
            continue
        if video is None:
            skipped.append((name, _NO_FRAMES))
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
    found, skipped = [], []
    for d in dirs:
        if sequences and d.name not in sequences:
            continue
        gt = d / "groundtruth.txt"
        if not gt.is_file():
            why = "no groundtruth.txt"
            skipped.append((d.name, why + (" (masks/: use --davis)" if (d / "masks").is_dir()
                                           else "")))  # fmt: skip
            continue
        video = frames_of(d)
        if video is None:
            skipped.append((d.name, _NO_FRAMES))
            continue
        found.append(BoxSequence(d.name, video, parse_groundtruth(gt)))
    return found, skipped


def _track(embedder: Any, video: Path, start: int, end: int, index0: np.ndarray, k: int,
           size: int | None, opts: Any) -> torch.Tensor:  # fmt: skip
    """Soft labels ``(end - start, K + 1, h, w)`` of frames ``start..end-1`` of ``video``
    tracked from ``index0`` (the frame ``start`` labels) with
    :func:`avssl.eval.propagation.track_features`."""
    from avssl.data import decode
    from avssl.eval.propagation import model_frames, track_features

    info = decode.probe(video)
    if index0.shape != (info.height, info.width):
        raise ValueError(f"{video}: {info.width}x{info.height} frames but a "
                         f"{index0.shape[1]}x{index0.shape[0]} first label map")  # fmt: skip
    x = model_frames(video, info, start, end, size, embedder.stride)
    if len(x) != end - start:
        raise ValueError(f"{video}: {len(x)} frames from {start}, {end - start} wanted")
    return track_features(embedder, embedder.embed(x), index0, k, opts)


def _object_ids(values: np.ndarray, binary: bool) -> np.ndarray:
    """Mask values -> ids (0 background, 1..K objects, VOID): binary masks threshold at 128."""
    return (values >= 128).astype(np.uint8) if binary else values


def evaluate_davis(embedder: Any, seq: MaskSequence, *, size: int | None, opts: Any,
                   void: str = "background", picture: Path | None = None,
                   ) -> dict[str, Any]:  # fmt: skip
    """J and F per object and scored frame of one sequence, for the tracker and copy-first,
    and their per-object statistics (design notes); ``picture``: write its sheet there
    (:mod:`avssl.eval.tracking_pictures`)."""
    from avssl.eval.propagation import labels_to_index
    from avssl.eval.tracking_pictures import Panel, pick_frames, write_sheet

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
        title = f"{seq.name} | {embedder.spec} | {score} | {LEGEND}"
        write_sheet(seq.video, panels, [f"{j}" for j in range(1, k + 1)], title, picture)
    return out


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
    1..T-1 that have one; mean IoU, success@0.5 and success AUC (design notes);
    ``picture``: write its sheet there."""
    from avssl.data import decode
    from avssl.eval.propagation import boxes_from_index, boxes_to_index, labels_to_index
    from avssl.eval.tracking_pictures import Panel, pick_frames, write_sheet

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
        title = f"{seq.name} | {embedder.spec} | {score} | {LEGEND}"
        write_sheet(seq.video, panels, ["1"], title, picture)
    return out


def vot_summary(seqs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Means over sequences (OTB averages each sequence's success AUC)."""
    return {who: {key: float(np.mean([s[who][key] for s in seqs])) for key in seqs[0][who]}
            for who in ("tracker", "copy_first")}  # fmt: skip
