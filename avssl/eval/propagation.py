"""Label propagation: carry the first frame's labels through a video with a colourisation tracker's
pointers (Vondrick et al., ECCV 2018). What ``avssl-track`` runs and ``avssl-eval tracking`` scores.

Design notes: docs/design/prep_tracking_cli.md, "avssl/eval/propagation.py"; docs/tracking.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avssl.data.colour import rgb_to_lab
from avssl.eval.tracking_pictures import overlay_labels, write_overlays


@dataclass
class Embedder:
    """What propagation needs from a model: ``embed(frames)`` -> ``(T, D, h, w)`` float (CPU)
    from uint8 ``(T, 3, H, W)`` RGB frames whose sides are multiples of ``stride``."""

    spec: str
    kind: str  # "run" | "random" | "pixels"
    stride: int
    size: int  # default short side of the input, pixels
    temperature: float  # default softmax temperature
    similarity: str  # "dot" | "distance"
    fn: Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) uint8 on device -> (N, D, h, w)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    reach: int = 0  # frames each side a frame's embedding depends on (3-D conv head)
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def embed(self, frames: torch.Tensor, *, batch: int = 32) -> torch.Tensor:
        """Embeddings of every frame, ``batch`` frames at a time (with ``reach`` frames of
        context each side for a 3-D head: the same result as embedding the whole video)."""
        n = frames.shape[0]
        out = []
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            a, b = max(0, lo - self.reach), min(n, hi + self.reach)
            part = self.fn(frames[a:b].to(self.device)).float().cpu()
            out.append(part[lo - a : lo - a + hi - lo])
        return torch.cat(out)


def _pixels(spec: str, device: torch.device) -> Embedder:
    name, _, s = spec.partition(":")
    stride = int(s) if s else 4
    if stride < 1:
        raise ValueError(f"{spec}: cell size must be >= 1")
    lab_all = name == "lab-pixels"

    def fn(x: torch.Tensor) -> torch.Tensor:
        lab = rgb_to_lab(x.float() / 255.0) / 100.0  # L in [0, 1], ab roughly [-1, 1]
        return F.pixel_unshuffle(lab if lab_all else lab[:, :1], stride)

    # T = 0.03: the best of 0.003 / 0.01 / 0.03 on the synth's val clips (docs/tracking.md);
    # a difference of 0.1 (10 L units) in two pixels of a cell then costs a factor e^-0.33
    info = {"cell": stride, "channels": "Lab" if lab_all else "L"}
    return Embedder(spec, "pixels", stride, 64, 0.03, "distance", fn, device, info=info)


def load_embedder(spec: str, *, device: torch.device | None = None) -> Embedder:
    """The embedder named by ``spec`` (design notes), in eval mode on ``device``."""
    from avssl.eval.loading import load_tracker

    device = device or torch.device("cpu")
    if spec.split(":")[0] in ("pixels", "lab-pixels"):
        return _pixels(spec, device)
    model, cfg = load_tracker(spec)
    model.to(device)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return model.embed((x.float() / 255.0)[None])[0]

    size = int(cfg.get("data", {}).get("frame_size", 64))
    enc = model.encoder
    kind = "random" if spec.startswith("random:") else "run"
    return Embedder(
        spec, kind, enc.stride, size, model.temperature, "dot", fn, device, enc.temporal_reach,
        info={"backbone": type(enc.net).__name__, "embed_dim": enc.dim, "stride": enc.stride,
              "normalize": enc.normalize, "head": enc.head_kind,
              "input": model.input},
    )  # fmt: skip


@dataclass
class PropagationOptions:
    context: int = 3  # previous frames used as references, besides the first frame
    radius: float | None = 8.0  # cells a location may point to (None: the whole frame)
    topk: int = 10  # best references kept per location (0: all)
    temperature: float | None = None  # None: the model's

    @classmethod
    def from_args(cls, args: Any) -> PropagationOptions:
        """From the ``--context --radius --topk --temperature`` flags (radius <= 0: anywhere)."""
        radius = args.radius if args.radius > 0 else None
        return cls(args.context, radius, args.topk, args.temperature)

    def settings(self, embedder: Embedder) -> dict[str, Any]:
        """The settings a result records (the model's temperature where none is set)."""
        return {"context": self.context, "radius": self.radius, "topk": self.topk,
                "temperature": self.temperature or embedder.temperature}  # fmt: skip


#: Default short side of the network's input on real footage (``avssl-track``, ``avssl-eval
#: tracking --davis/--vot``), or the video's own when smaller (measured: design notes, "Constants").
REAL_SIZE = 240


def model_size(height: int, width: int, short: int, stride: int) -> tuple[int, int]:
    """The network's input size for a ``height x width`` video: short side ``short`` pixels,
    aspect kept, both sides rounded to a multiple of ``stride`` (at least one cell)."""
    scale = short / min(height, width)
    h = max(stride, round(height * scale / stride) * stride)
    w = max(stride, round(width * scale / stride) * stride)
    return h, w


def model_frames(video: Path, info: Any, start: int, end: int, size: int | None,
                 stride: int) -> torch.Tensor:  # fmt: skip
    """Frames ``start..end-1`` of ``video`` (as decoded; fewer where it ends early) at the
    network's input size (:func:`model_size`; short side ``size``, by default :data:`REAL_SIZE`
    or the video's own when smaller): uint8 ``(T, 3, h, w)``."""
    from avssl.data import decode

    short = int(size) if size else min(REAL_SIZE, info.height, info.width)
    h, w = model_size(info.height, info.width, short, stride)
    frames = []
    for i, frame in decode.iter_frames(video, size=(h, w), info=info):
        if i >= end:
            break
        if i >= start:
            frames.append(frame)
    if not frames:
        raise ValueError(f"{video}: no frames from {start}")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def boxes_to_index(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(K, 4)`` pixel boxes ``[x1, y1, x2, y2]`` -> an index map ``(H, W)`` int64, object k
    (1-based) on the pixels whose centres lie in its box (a later box wins where they overlap)."""
    from avssl.eval.metrics import boxes_to_mask

    out = np.zeros((height, width), np.int64)
    scale = np.array([width, height, width, height], np.float64)
    for k, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4), start=1):
        out[boxes_to_mask(box[None] / scale, height, width) > 0] = k
    return out


def init_labels(index: np.ndarray, num_objects: int, grid: tuple[int, int]) -> torch.Tensor:
    """An index map ``(H, W)`` (0 background, 1..K objects) -> soft labels ``(K + 1, h, w)``: the
    share of every grid cell each label covers (area average; the grid spans the whole frame)."""
    onehot = F.one_hot(torch.as_tensor(index, dtype=torch.int64), num_objects + 1)
    onehot = onehot.permute(2, 0, 1).float()[None]
    return F.adaptive_avg_pool2d(onehot, grid)[0]


@torch.no_grad()
def propagate(
    feats: torch.Tensor,
    init: torch.Tensor,
    *,
    temperature: float,
    similarity: str = "dot",
    context: int = 3,
    radius: float | None = 8.0,
    topk: int = 10,
) -> torch.Tensor:
    """Soft labels ``(T, C, h, w)`` of every frame from ``feats`` ``(T, D, h, w)`` and the first
    frame's ``init`` ``(C, h, w)`` (design notes; frame 0 keeps ``init``)."""
    if similarity not in ("dot", "distance"):
        raise ValueError(f"similarity must be dot or distance, not {similarity!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    n, d, h, w = feats.shape
    c = init.shape[0]
    if init.shape[1:] != (h, w):
        raise ValueError(f"labels of {tuple(init.shape[1:])} for a feature grid of {(h, w)}")
    f = feats.permute(0, 2, 3, 1).reshape(n, h * w, d).float()
    labels = torch.empty(n, h * w, c)
    labels[0] = init.reshape(c, -1).T
    allowed = None
    if radius is not None:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cells = torch.stack([ys.flatten(), xs.flatten()], 1).float()
        allowed = torch.cdist(cells, cells) <= radius  # (hw, hw)
    for t in range(1, n):
        refs = sorted({0, *range(max(1, t - context), t)})
        fr = f[refs].reshape(-1, d)  # (R*hw, D)
        sim = f[t] @ fr.T  # (hw, R*hw)
        if similarity == "distance":  # -|a - b|^2 / 2 up to a per-row constant
            sim = sim - 0.5 * (fr * fr).sum(1)
        if allowed is not None:
            sim = sim.view(h * w, len(refs), h * w).masked_fill(~allowed[:, None, :], -torch.inf)
            sim = sim.view(h * w, -1)
        k = sim.shape[1] if topk <= 0 else min(topk, sim.shape[1])
        vals, idx = sim.topk(k, dim=1)
        weights = torch.softmax(vals / temperature, dim=1)  # -inf (outside the window) -> 0
        ref_labels = labels[refs].reshape(-1, c)
        labels[t] = (weights[..., None] * ref_labels[idx]).sum(1)
    return labels.view(n, h, w, c).permute(0, 3, 1, 2)


def labels_to_index(labels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Soft labels ``(C, h, w)`` -> index map ``(H, W)`` (argmax after bilinear upsampling)."""
    up = F.interpolate(labels[None].float(), size=size, mode="bilinear", align_corners=False)
    return up[0].argmax(0).numpy()


def boxes_from_index(index: np.ndarray, num_objects: int) -> list[list[float] | None]:
    """The box ``[x1, y1, x2, y2]`` (pixels, continuous: x2 = last column + 1) of the largest
    8-connected component of each object 1..K of ``index``; None where an object has vanished."""
    import cv2

    out: list[list[float] | None] = []
    for k in range(1, num_objects + 1):
        mask = (index == k).astype(np.uint8)
        if not mask.any():
            out.append(None)
            continue
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        x, y, bw, bh, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
        out.append([float(x), float(y), float(x + bw), float(y + bh)])
    return out


def track_features(embedder: Embedder, feats: torch.Tensor, index0: np.ndarray, num_objects: int,
                   opts: PropagationOptions) -> torch.Tensor:  # fmt: skip
    """Soft labels ``(T, K + 1, h, w)`` propagated over ``embedder``'s features ``feats`` from the
    first frame's index map ``index0`` (any size: area-pooled to the grid)."""
    init = init_labels(index0, num_objects, tuple(feats.shape[-2:]))  # type: ignore[arg-type]
    return propagate(
        feats, init, temperature=opts.temperature or embedder.temperature,
        similarity=embedder.similarity, context=opts.context, radius=opts.radius,
        topk=opts.topk,
    )  # fmt: skip


@dataclass
class Init:
    index: np.ndarray  # (H, W) int64 at the video's size: 0 background, 1..K objects
    names: list[str]
    frame: int  # the frame the labels belong to (tracking starts there)


def _init_from_boxes(path: Path, height: int, width: int, frame: int | None) -> Init:
    data = json.loads(path.read_text())
    spec: dict[str, Any] = {"boxes": data} if isinstance(data, list) else data
    boxes = np.asarray(spec.get("boxes", []), np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"{path}: 'boxes' must be a non-empty list of [x1, y1, x2, y2]")
    if spec.get("normalized"):
        boxes = boxes * np.array([width, height, width, height])
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        raise ValueError(f"{path}: box {int(np.argmax(bad))} has x2 <= x1 or y2 <= y1")
    names = [str(s) for s in spec.get("names", [])]
    names = names or [f"object {k + 1}" for k in range(len(boxes))]
    start = int(spec.get("frame") or 0) if frame is None else frame
    index = boxes_to_index(boxes, height, width)
    if len(np.unique(index)) - 1 != len(boxes):
        raise ValueError(f"{path}: a box covers no pixel centre of the {width}x{height} frame")
    return Init(index, names, start)


def read_init(path: Path, height: int, width: int, *, frame: int | None = None) -> Init:
    """First-frame labels from ``boxes.json`` or an index/colour mask image (``--init``).

    JSON: ``{"frame": 0, "boxes": [[x1, y1, x2, y2], ...], "names": [...], "normalized": false}``
    or a bare list of boxes; pixels of the video's frames unless ``normalized``. An image: a
    palette or grey PNG whose values are object ids (0 background), or an RGB image in which
    every distinct non-black colour is one object; resized (nearest) to the video's size.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: --init file not found")
    if path.suffix.lower() == ".json":
        return _init_from_boxes(path, height, width, frame)
    import cv2
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB") if im.mode not in ("P", "L", "I", "I;16") else im)
    if arr.ndim == 3:  # colours -> ids, black = background, the others by first appearance
        flat = arr.reshape(-1, arr.shape[2])
        colours, inv = np.unique(flat, axis=0, return_inverse=True)
        ids = np.zeros(len(colours), np.int64)
        ids[colours.any(1)] = np.arange(1, int(colours.any(1).sum()) + 1)
        arr = ids[inv.reshape(-1)].reshape(arr.shape[:2])
    labels = sorted(int(v) for v in np.unique(arr) if v != 0)
    if not labels:
        raise ValueError(f"{path}: the mask has no object (every pixel is 0)")
    index = np.zeros(arr.shape, np.int64)
    for k, v in enumerate(labels, start=1):
        index[arr == v] = k
    if index.shape != (height, width):
        index = cv2.resize(index.astype(np.int32), (width, height),
                           interpolation=cv2.INTER_NEAREST).astype(np.int64)  # fmt: skip
    return Init(index, [f"object {v}" for v in labels], frame or 0)


def _rounded(box: list[float] | None) -> list[float] | None:
    return None if box is None else [round(v, 2) for v in box]


def track_video(
    embedder: Embedder,
    video: Path,
    init_path: Path,
    out_dir: Path,
    *,
    opts: PropagationOptions,
    size: int | None = None,
    max_frames: int | None = None,
    start_frame: int | None = None,
    png_every: int = 10,
    max_side: int = 640,
    write_mp4: bool = True,
) -> dict[str, Any]:
    """Track ``init_path``'s labels through ``video`` into ``out_dir`` (see ``avssl-track
    --help``): ``boxes.json``, ``masks.npz``, overlay PNGs and mp4; returns a summary."""
    from avssl.data import decode
    from avssl.data.manifest import atomic_output, atomic_write_text

    t0 = time.monotonic()
    info = decode.probe(video)
    if info.num_frames < 1:
        raise ValueError(f"{video}: no decodable frames")
    H, W = info.height, info.width  # as displayed (rotation applied)
    init = read_init(init_path, H, W, frame=start_frame)
    if not 0 <= init.frame < info.num_frames:
        raise ValueError(f"{init_path}: start frame {init.frame} outside the video's "
                         f"{info.num_frames} frames")  # fmt: skip
    end = info.num_frames if max_frames is None else min(info.num_frames, init.frame + max_frames)
    x = model_frames(video, info, init.frame, end, size, embedder.stride)
    k = len(init.names)
    labels = track_features(embedder, embedder.embed(x), init.index, k, opts)

    f = min(1.0, max_side / max(H, W))  # outputs at most max_side pixels on the long side
    ho, wo = max(2, round(H * f) // 2 * 2), max(2, round(W * f) // 2 * 2)  # even: 4:2:0 video
    index = np.stack([labels_to_index(lab, (ho, wo)) for lab in labels]).astype(np.uint8)
    sx, sy = W / wo, H / ho
    boxes = [[None if b is None else [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in bb]
             for bb in (boxes_from_index(m, k) for m in index)]  # fmt: skip

    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "video": str(video), "model": embedder.spec, "start_frame": init.frame,
        "frames": len(boxes), "size": [W, H], "model_input": [x.shape[3], x.shape[2]],
        "settings": opts.settings(embedder),
        "objects": [{"name": n, "boxes": [_rounded(bb[j]) for bb in boxes]}
                    for j, n in enumerate(init.names)],
        "box_format": "[x1, y1, x2, y2] in pixels of the video's frames, frame i of the list = "
                      "video frame start_frame + i; null: the object vanished",
    }  # fmt: skip
    atomic_write_text(out_dir / "boxes.json", json.dumps(record) + "\n")
    with atomic_output(out_dir / "masks.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, masks=index, start_frame=init.frame)
    pics = _overlays(video, info, (ho, wo), init, end, index, boxes, 1.0 / sx, png_every)
    mp4 = out_dir / f"{video.stem}_track.mp4" if write_mp4 else None
    pngs = write_overlays(pics, out_dir, mp4, fps=info.fps)
    lost = sum(b is None for bb in boxes for b in bb)
    return {"video": str(video), "out": str(out_dir), "frames": len(boxes), "objects": k,
            "grid": tuple(labels.shape[-2:]), "lost": lost, "pngs": pngs,
            "mp4": None if mp4 is None else str(mp4),
            "seconds": time.monotonic() - t0}  # fmt: skip


def _overlays(video: Path, info: Any, size: tuple[int, int], init: Init, end: int,
              index: np.ndarray, boxes: list[Any], scale: float, png_every: int,
              ) -> Iterator[tuple[int, np.ndarray, bool]]:  # fmt: skip
    """The tracked frames at ``size`` with their labels drawn, as :func:`write_overlays` takes
    them (a PNG every ``png_every``-th one)."""
    from avssl.data import decode

    for i, frame in decode.iter_frames(video, size=size, info=info):
        if i >= end:
            break
        if i >= init.frame:
            j = i - init.frame
            pic = overlay_labels(frame, index[j], boxes[j], init.names, scale=scale)
            yield i, pic, png_every > 0 and j % png_every == 0
