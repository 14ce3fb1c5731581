"""A hand-crafted arrow-of-time baseline: registered optical flow statistics + logistic regression.

    python -m benchmarks.arrow_baseline --manifest PREP/arrow_of_time.jsonl [--folds 4]
        [--register similarity|homography|none] [--width 160] [--out runs/arrow_baseline.json]

The learned arrow-of-time model needs something real to beat (issue 22). After Pickup et al.
(2014), camera motion is removed before flow is measured: each next frame is registered onto the
current one (ORB features, RANSAC similarity or homography; ``none`` keeps the camera), Farneback
flow is computed between the current frame and the registered next one, inside the area both
frames cover. Per clip (the rows' frames in the order shown, forward or reversed) the features
are: a magnitude-weighted histogram of flow directions (8 bins) on a 2 x 2 grid, the mean
divergence and curl, and the mean vertical and horizontal change of the flow from one pair to
the next (acceleration: things fall faster forward in time), each as mean and mean absolute over
the clip's pairs. A standardised logistic regression is cross-validated over the same folds of
whole videos as ``benchmarks/pretext_cv.py`` (``split_by_video``: every video held out once),
again with the training labels permuted (the shuffled-label control). Prints a markdown row per
fold and the mean; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avssl.data.dataset import FrameReader, load_probe_infos, split_by_video
from avssl.data.manifest import read_manifest

BINS = 8


def register(a: np.ndarray, b: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``b`` warped onto ``a`` (grey uint8) and the mask of pixels it covers."""
    h, w = a.shape
    full = np.full((h, w), 255, np.uint8)
    if model == "none":
        return b, full
    orb = cv2.ORB_create(500)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return b, full
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(db, da)
    if len(matches) < 8:
        return b, full
    src = np.float32([kb[m.queryIdx].pt for m in matches])
    dst = np.float32([ka[m.trainIdx].pt for m in matches])
    if model == "homography":
        m, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        if m is None:
            return b, full
        warp = cv2.warpPerspective(b, m, (w, h))
        mask = cv2.warpPerspective(full, m, (w, h))
    else:
        m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if m is None:
            return b, full
        warp = cv2.warpAffine(b, m, (w, h))
        mask = cv2.warpAffine(full, m, (w, h))
    return warp, cv2.erode(mask, np.ones((5, 5), np.uint8))


def pair_features(flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Direction histograms on a 2 x 2 grid, divergence and curl of one flow field."""
    fx, fy = flow[..., 0], flow[..., 1]
    mag, ang = cv2.cartToPolar(fx, fy)
    valid = mask > 0
    h, w = mag.shape
    out = []
    for rows in (slice(0, h // 2), slice(h // 2, h)):
        for cols in (slice(0, w // 2), slice(w // 2, w)):
            v = valid[rows, cols]
            hist = np.histogram(ang[rows, cols][v], bins=BINS, range=(0, 2 * np.pi),
                                weights=mag[rows, cols][v])[0]  # fmt: skip
            out.append(hist / max(v.sum(), 1))
    div = np.gradient(fx, axis=1) + np.gradient(fy, axis=0)
    curl = np.gradient(fy, axis=1) - np.gradient(fx, axis=0)
    n = max(valid.sum(), 1)
    out.append(np.array([div[valid].sum() / n, curl[valid].sum() / n]))
    return np.concatenate(out)


def clip_features(frames: list[np.ndarray], model: str) -> np.ndarray:
    """Features of one clip (grey frames in the order shown)."""
    per_pair, means = [], []
    for a, b in zip(frames, frames[1:], strict=False):
        warped, mask = register(a, b, model)
        flow = cv2.calcOpticalFlowFarneback(a, warped, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        per_pair.append(pair_features(flow, mask))
        v = mask > 0
        means.append(flow[v].mean(axis=0) if v.any() else np.zeros(2))
    p = np.stack(per_pair)
    acc = np.diff(np.stack(means), axis=0) if len(means) > 1 else np.zeros((1, 2))
    return np.concatenate([p.mean(0), np.abs(p).mean(0), acc.mean(0), np.abs(acc).mean(0)])


def load_features(
    manifest: Path, width: int, model: str
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    rows = read_manifest(manifest)
    card = json.loads((manifest.parent / "prep.json").read_text())
    infos = load_probe_infos(manifest.parent / "probe.jsonl")
    feats = []
    for r in rows:
        info = infos[r["video"]]
        size = (max(2, round(info.height * width / info.width / 2) * 2), width)
        reader = FrameReader(card["root"], size, infos=infos)
        clip = reader(r["video"], r["frames"]).permute(0, 2, 3, 1).numpy()
        grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in clip]
        feats.append(clip_features(grey, model))
    return rows, np.stack(feats), np.array([int(r["target"]) for r in rows])


def cross_validate(
    rows: list[dict[str, Any]], x: np.ndarray, y: np.ndarray, folds: int, seed: int, shuffled: bool
) -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    index = {id(r): i for i, r in enumerate(rows)}
    out = []
    for k in range(folds):
        train, test = split_by_video(rows, 0.0, seed, folds=folds, fold=k, key="video")
        tr = np.array([index[id(r)] for r in train])
        te = np.array([index[id(r)] for r in test])
        yt = y[tr].copy()
        if shuffled:
            np.random.default_rng([seed, k]).shuffle(yt)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(x[tr], yt)
        acc = balanced_accuracy_score(y[te], clf.predict(x[te]))
        videos = len({rows[i]["video"] for i in te})
        out.append({"fold": k, "videos": videos, "clips": len(te), "bal_acc": float(acc)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--register", choices=("similarity", "homography", "none"), default="similarity"
    )
    ap.add_argument("--width", type=int, default=160, help="analysis width in px (default 160)")
    ap.add_argument("--out", type=Path, default=Path("runs/arrow_baseline.json"))
    args = ap.parse_args()
    t0 = time.monotonic()
    rows, x, y = load_features(args.manifest, args.width, args.register)
    feat_s = time.monotonic() - t0
    true = cross_validate(rows, x, y, args.folds, args.seed, shuffled=False)
    ctrl = cross_validate(rows, x, y, args.folds, args.seed, shuffled=True)
    print(f"{len(rows)} clips of {len({r['video'] for r in rows})} videos, {x.shape[1]} features, "
          f"register={args.register}, width {args.width}, features in {feat_s:.0f} s")  # fmt: skip
    print("| fold | held-out videos | clips | balanced acc | shuffled labels |")
    print("|---|---|---|---|---|")
    for a, b in zip(true, ctrl, strict=True):
        print(f"| {a['fold']} | {a['videos']} | {a['clips']} | {a['bal_acc']:.3f} | "
              f"{b['bal_acc']:.3f} |")  # fmt: skip
    m = [a["bal_acc"] for a in true]
    s = [b["bal_acc"] for b in ctrl]
    print(f"| mean | | | {statistics.mean(m):.3f} +- {statistics.pstdev(m):.3f} | "
          f"{statistics.mean(s):.3f} +- {statistics.pstdev(s):.3f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "folds": true, "shuffled": ctrl}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
