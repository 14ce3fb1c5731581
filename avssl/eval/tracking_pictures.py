"""Pictures of tracked labels: overlays (:func:`overlay_labels`, :func:`write_overlays`) and the
sheets of real tracking sequences (:func:`write_sheet`).
Design notes: docs/design/prep_tracking_cli.md, "avssl/eval/tracking_pictures.py".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Overlay colours of objects 1, 2, ... (RGB); object k gets PALETTE[(k - 1) % len].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 60, 60), (60, 150, 255), (70, 230, 70), (255, 210, 40),
    (230, 70, 230), (40, 225, 225), (255, 140, 20), (245, 245, 245),
)  # fmt: skip


def overlay_labels(
    frame: np.ndarray,
    index: np.ndarray,
    boxes: list[list[float] | None],
    names: list[str],
    *,
    scale: float = 1.0,
    alpha: float = 0.45,
) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 RGB with each object's mask tinted and its box drawn (box
    coordinates times ``scale`` give the frame's pixels)."""
    import cv2

    pic = frame.astype(np.float32)
    for k in range(1, len(names) + 1):
        tint = np.array(PALETTE[(k - 1) % len(PALETTE)], np.float32)
        m = index == k
        pic[m] = pic[m] * (1 - alpha) + tint * alpha
    out: Any = pic.astype(np.uint8)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        col = PALETTE[(k - 1) % len(PALETTE)]
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), col, 2 if max(out.shape) > 300 else 1)
        cv2.putText(out, names[k - 1], (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, col, 1, cv2.LINE_AA)  # fmt: skip
    return np.asarray(out)


def write_overlays(
    pics: Iterable[tuple[int, np.ndarray, bool]], out_dir: Path, mp4: Path | None, **video: Any
) -> int:
    """Write overlays ``(frame number, RGB picture, save it as a PNG)``: the PNGs as
    ``out_dir/frames/NNNNN.png`` (a previous run's removed first) and, unless ``mp4`` is None,
    every picture into that video (``video``: :func:`avssl.data.encode.write_video`'s options;
    an odd last row / column left out, as 4:2:0 needs even sides). Returns the PNGs written."""
    import cv2

    from avssl.data.encode import write_video

    png_dir = out_dir / "frames"
    png_dir.mkdir(exist_ok=True)
    for old in png_dir.glob("*.png"):
        old.unlink()

    def frames() -> Iterator[np.ndarray]:
        for i, pic, save in pics:
            if save:
                ok, png = cv2.imencode(".png", pic[..., ::-1])
                if not ok:
                    raise ValueError("PNG encoding failed")
                (png_dir / f"{i:05d}.png").write_bytes(png.tobytes())
            yield pic[: len(pic) // 2 * 2, : pic.shape[1] // 2 * 2]

    if mp4 is not None:
        write_video(mp4, frames(), **video)
    else:
        for _ in frames():
            pass
    return len(list(png_dir.glob("*.png")))


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
