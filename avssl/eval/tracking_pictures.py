"""Picture sheets of real tracking sequences (``avssl-eval tracking --davis/--vot --pictures``).

One PNG per sequence: a title bar (sequence, model, the sequence's score against copy-first, the
legend) over a row of panels -- the given first frame and frames spread over the scored ones --
each the full frame scaled to ``width`` pixels, the tracked mask tinted in the object's colour
(:data:`avssl.track.PALETTE`, the box of a box sequence drawn in it) and the ground truth as a
white outline, captioned with the frame number and its J (masks) or IoU (boxes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Panel", "pick_frames", "write_sheet"]


@dataclass
class Panel:
    frame: int  # the video's frame number
    pred: np.ndarray | None  # (H, W) index map: 0 background, 1..K tracked objects
    gt: np.ndarray | None  # (H, W) index map of the ground truth (masks)
    caption: str
    pred_box: list[float] | None = None  # [x1, y1, x2, y2] pixels (box sequences)
    gt_poly: np.ndarray | None = None  # (N, 2) pixel polygon of the true region


def pick_frames(scored: list[int], n: int) -> list[int]:
    """``n`` frame numbers spread evenly over ``scored`` (first and last included)."""
    if not scored or n <= 0:
        return []
    picks = np.linspace(0, len(scored) - 1, min(n, len(scored))).round().astype(int)
    return [scored[i] for i in dict.fromkeys(picks.tolist())]


def _panel(frame: np.ndarray, p: Panel, names: list[str], width: int) -> np.ndarray:
    import cv2

    from avssl.track import overlay_labels

    h, w = frame.shape[:2]
    s = width / w
    size = (width, max(1, round(h * s)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    if p.pred is not None:
        index = cv2.resize(p.pred.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        boxes: list[list[float] | None] = [] if p.pred_box is None else [p.pred_box]
        img = overlay_labels(small, index, boxes, names, scale=s)
    else:
        img = small.copy()
    white = (255, 255, 255)
    if p.gt is not None:
        gt = cv2.resize(p.gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        for k in range(1, int(gt.max(initial=0)) + 1):
            cs, _ = cv2.findContours((gt == k).astype(np.uint8), cv2.RETR_EXTERNAL,
                                     cv2.CHAIN_APPROX_NONE)  # fmt: skip
            cv2.drawContours(img, cs, -1, white, 1, cv2.LINE_AA)
    if p.gt_poly is not None:
        pts = np.round(np.asarray(p.gt_poly, np.float64) * s).astype(np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], True, white, 1, cv2.LINE_AA)
    bar = np.zeros((18, img.shape[1], 3), np.uint8)
    cv2.putText(bar, p.caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, white, 1, cv2.LINE_AA)
    return np.concatenate([img, bar], axis=0)


def write_sheet(video: Path, panels: list[Panel], names: list[str], title: str, path: Path,
                *, width: int = 280) -> Path:  # fmt: skip
    """Decode the panels' frames of ``video`` at full size and write the sheet to ``path``."""
    import cv2

    from avssl.data import decode
    from avssl.data.manifest import atomic_output

    clip = decode.read_frames(video, [p.frame for p in panels])
    frames: Any = clip.data.permute(0, 2, 3, 1).numpy()
    row = np.concatenate(
        [_panel(f, p, names, width) for f, p in zip(frames, panels, strict=True)], axis=1
    )
    lines = [title[i : i + row.shape[1] // 7] for i in range(0, len(title), row.shape[1] // 7)]
    head = np.zeros((8 + 16 * len(lines), row.shape[1], 3), np.uint8)
    for n, line in enumerate(lines):
        cv2.putText(head, line, (6, 18 + 16 * n), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    ok, png = cv2.imencode(".png", np.concatenate([head, row], axis=0)[..., ::-1])
    if not ok:
        raise ValueError(f"{path}: could not encode the picture")
    with atomic_output(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path
