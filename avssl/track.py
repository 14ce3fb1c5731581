"""``avssl-track``: carry the first frame's labels through a video with a colourisation tracker's
pointers (Vondrick et al., ECCV 2018; the model: :mod:`avssl.models.tracking`).

Propagation (:func:`propagate`). Every frame is embedded (``(D, h, w)``, 1/4 or 1/8 of the input).
Labels are soft maps ``(C, h, w)``: channel 0 the background, channel k object k. For each frame
t after the first, the references are the first frame (its given labels) and the ``context``
previous frames (their propagated labels); each location of frame t points into the reference
locations within ``radius`` cells of it, keeps its ``topk`` best, and takes the softmax-weighted
(temperature ``T``) mean of their labels:

    labels_t[i] = sum_j softmax_j(s(f_i, f_j) / T) labels_ref[j]   over the top-k j,

with ``s`` the dot product (the paper's pointer, learned embeddings) or, for raw pixels, minus
half the squared distance (a Gaussian kernel on appearance; for unit vectors the two give the
same softmax). A frame's mask is the argmax over the channels after bilinear upsampling to the
output size; an object's box is the bounding box of its mask's largest connected component.
Training used one reference at the same location grid without restriction; the window, the
top-k and the several references are the test-time choices of the colourisation / cycle
trackers (CorrFlow, CRW), not the paper's (which recalled: the first frame's labels and the
previous frames' predictions as references).

Models (``CHECKPOINT``, :func:`load_embedder`): a ``colorization_tracking`` run or checkpoint;
``random:RUN`` (the same network at random initialisation, seed 0) or ``random:BACKBONE`` (a
default tracking network on that backbone); ``pixels[:S]`` -- the raw lightness of each S x S
cell (default 4) as the feature, the input the network sees, matched by distance; and
``lab-pixels[:S]`` -- raw L, a and b (colour the network never sees; a reference, not a
baseline of the same input).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Embedder",
    "PropagationOptions",
    "boxes_from_index",
    "boxes_to_index",
    "init_labels",
    "labels_to_index",
    "load_embedder",
    "main",
    "model_size",
    "real_size",
    "propagate",
    "track_video",
]

#: Overlay colours of objects 1, 2, ... (RGB); object k gets PALETTE[(k - 1) % len].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 60, 60), (60, 150, 255), (70, 230, 70), (255, 210, 40),
    (230, 70, 230), (40, 225, 225), (255, 140, 20), (245, 245, 245),
)  # fmt: skip


# ------------------------------------------------------------------------------ models
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pixels(spec: str, device: torch.device) -> Embedder:
    name, _, s = spec.partition(":")
    stride = int(s) if s else 4
    if stride < 1:
        raise ValueError(f"{spec}: cell size must be >= 1")
    lab_all = name == "lab-pixels"

    def fn(x: torch.Tensor) -> torch.Tensor:
        from avssl.tasks.image_ops import rgb_to_lab

        lab = rgb_to_lab(x.float() / 255.0) / 100.0  # L in [0, 1], ab roughly [-1, 1]
        return F.pixel_unshuffle(lab if lab_all else lab[:, :1], stride)

    # T = 0.03: the best of 0.003 / 0.01 / 0.03 on the synth's val clips (docs/tracking.md);
    # a difference of 0.1 (10 L units) in two pixels of a cell then costs a factor e^-0.33
    return Embedder(spec, "pixels", stride, 64, 0.03, "distance", fn, device,
                    info={"cell": stride, "channels": "Lab" if lab_all else "L"})  # fmt: skip


def _checkpoint_path(p: Path) -> Path:
    from avssl.checkpoints import checkpoint_file

    return checkpoint_file(
        p,
        expected="a colorization_tracking run directory, its checkpoint.pt, random:RUN, "
        "random:BACKBONE, pixels[:S] or lab-pixels[:S]",
    )


def _model_from_checkpoint(path: Path, *, load_weights: bool) -> tuple[Any, dict[str, Any]]:
    """The :class:`ColourTracker` of a checkpoint (weights loaded or random) and its config."""
    from avssl.checkpoints import load_checkpoint
    from avssl.checkpoints import load_weights as fit_weights
    from avssl.config import config_from_dict
    from avssl.models.tracking import ColourTracker, TrackingOptions

    ck = load_checkpoint(path)
    if ck.get("task") != "colorization_tracking":
        raise ValueError(f"{path}: a {ck.get('task')!r} checkpoint, not colorization_tracking")
    cfg = json.loads(ck["config"])
    o = config_from_dict(TrackingOptions, cfg.get("tracking", {}), source=str(path))
    aug = cfg.get("aug", {})
    torch.manual_seed(0)
    model = ColourTracker(
        ck["backbone"], centres=ck["model"]["centres"], temperature=o.temperature,
        normalize=o.normalize, embed_dim=o.embed_dim, head=o.head, head_layers=o.head_layers,
        head_width=o.head_width, coords=o.coords, input=o.input,
        mean=tuple(aug.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(aug.get("std", (0.229, 0.224, 0.225))),
        **json.loads(ck.get("backbone_kwargs", "{}")),
    )  # fmt: skip
    if load_weights:
        fit_weights(model, ck["model"], path, what="model")
    return model.eval(), cfg


def load_embedder(spec: str, *, device: torch.device | None = None) -> Embedder:
    """The embedder named by ``spec`` (module docstring), in eval mode on ``device``."""
    device = device or torch.device("cpu")
    if spec.split(":")[0] in ("pixels", "lab-pixels"):
        return _pixels(spec, device)
    kind = "run"
    cfg: dict[str, Any] = {}
    if spec.startswith("random:"):
        kind, what = "random", spec.split(":", 1)[1]
        from avssl.models.backbones import BACKBONES

        if what in BACKBONES:
            from avssl.models.tracking import ColourTracker, TrackingOptions

            o = TrackingOptions()
            kw: dict[str, Any] = {"channels": (32, 64)} if what == "convnet_tiny" else {}
            torch.manual_seed(0)
            model = ColourTracker(
                what, centres=torch.zeros(o.colours, 2), temperature=o.temperature,
                normalize=o.normalize, embed_dim=o.embed_dim, head=o.head,
                head_layers=o.head_layers, head_width=o.head_width, coords=o.coords, **kw,
            ).eval()  # fmt: skip
        else:
            model, cfg = _model_from_checkpoint(_checkpoint_path(Path(what)), load_weights=False)
    else:
        model, cfg = _model_from_checkpoint(_checkpoint_path(Path(spec)), load_weights=True)
    model.to(device)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return model.embed((x.float() / 255.0)[None])[0]

    size = int(cfg.get("data", {}).get("frame_size", 64))
    enc = model.encoder
    return Embedder(
        spec, kind, enc.stride, size, model.temperature, "dot", fn, device, enc.temporal_reach,
        info={"backbone": type(enc.net).__name__, "embed_dim": enc.dim, "stride": enc.stride,
              "normalize": enc.normalize, "head": enc.head_kind,
              "input": model.input},
    )  # fmt: skip


# ------------------------------------------------------------------------------ propagation
@dataclass
class PropagationOptions:
    context: int = 3  # previous frames used as references, besides the first frame
    radius: float | None = 8.0  # cells a location may point to (None: the whole frame)
    topk: int = 10  # best references kept per location (0: all)
    temperature: float | None = None  # None: the model's


#: Default short side of the network's input on real footage (``avssl-track``, ``avssl-eval
#: tracking --davis/--vot``), or the video's own when smaller. Measured on the shared DAVIS-style
#: sequences (432 x 240, docs/tracking.md): lab-pixels J&F 0.196 at 64 px, 0.493 at 240; the
#: dense pointer window costs (h w)^2 per reference, so larger inputs grow fast in memory.
REAL_SIZE = 240


def real_size(size: int | None, height: int, width: int) -> int:
    """``size`` when given, else :data:`REAL_SIZE` or the video's short side when smaller."""
    return int(size) if size else min(REAL_SIZE, min(height, width))


def model_size(height: int, width: int, short: int, stride: int) -> tuple[int, int]:
    """The network's input size for a ``height x width`` video: short side ``short`` pixels,
    aspect kept, both sides rounded to a multiple of ``stride`` (at least one cell)."""
    scale = short / min(height, width)
    h = max(stride, round(height * scale / stride) * stride)
    w = max(stride, round(width * scale / stride) * stride)
    return h, w


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
    frame's ``init`` ``(C, h, w)`` (module docstring; frame 0 keeps ``init``)."""
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


def track_frames(
    embedder: Embedder, frames: torch.Tensor, index0: np.ndarray, num_objects: int,
    opts: PropagationOptions,
) -> torch.Tensor:  # fmt: skip
    """Soft labels ``(T, K + 1, h, w)`` of uint8 frames ``(T, 3, H', W')`` (sides multiples of
    the stride) from the first frame's index map ``index0`` (any size: area-pooled to the grid)."""
    feats = embedder.embed(frames)
    init = init_labels(index0, num_objects, tuple(feats.shape[-2:]))  # type: ignore[arg-type]
    return propagate(
        feats, init, temperature=opts.temperature or embedder.temperature,
        similarity=embedder.similarity, context=opts.context, radius=opts.radius,
        topk=opts.topk,
    )  # fmt: skip


# ------------------------------------------------------------------------------ initial labels
@dataclass
class Init:
    index: np.ndarray  # (H, W) int64 at the video's size: 0 background, 1..K objects
    names: list[str]
    frame: int  # the frame the labels belong to (tracking starts there)


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


# ------------------------------------------------------------------------------ one video
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
    --help``); returns a summary."""
    import cv2

    from avssl.data import decode
    from avssl.data.encode import write_video
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
    h, w = model_size(H, W, real_size(size, H, W), embedder.stride)
    frames = []
    for i, frame in decode.iter_frames(video, size=(h, w), info=info):
        if i >= end:
            break
        if i >= init.frame:
            frames.append(frame)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    k = len(init.names)
    labels = track_frames(embedder, x, init.index, k, opts)

    f = min(1.0, max_side / max(H, W))  # outputs at most max_side pixels on the long side
    ho, wo = max(2, round(H * f) // 2 * 2), max(2, round(W * f) // 2 * 2)  # even: 4:2:0 video
    index = np.stack([labels_to_index(lab, (ho, wo)) for lab in labels]).astype(np.uint8)
    sx, sy = W / wo, H / ho
    boxes = [[None if b is None else [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in bb]
             for bb in (boxes_from_index(m, k) for m in index)]  # fmt: skip

    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "video": str(video), "model": embedder.spec, "start_frame": init.frame,
        "frames": len(boxes), "size": [W, H], "model_input": [w, h],
        "settings": {"context": opts.context, "radius": opts.radius, "topk": opts.topk,
                     "temperature": opts.temperature or embedder.temperature},
        "objects": [{"name": n, "boxes": [_rounded(bb[j]) for bb in boxes]}
                    for j, n in enumerate(init.names)],
        "box_format": "[x1, y1, x2, y2] in pixels of the video's frames, frame i of the list = "
                      "video frame start_frame + i; null: the object vanished",
    }  # fmt: skip
    atomic_write_text(out_dir / "boxes.json", json.dumps(record) + "\n")
    with atomic_output(out_dir / "masks.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, masks=index, start_frame=init.frame)
    png_dir = out_dir / "frames"
    png_dir.mkdir(exist_ok=True)
    for old in png_dir.glob("*.png"):
        old.unlink()
    scale = 1.0 / sx

    def overlays() -> Iterator[np.ndarray]:
        for i, frame in decode.iter_frames(video, size=(ho, wo), info=info):
            if i >= end:
                break
            if i < init.frame:
                continue
            j = i - init.frame
            pic = overlay_labels(frame, index[j], boxes[j], init.names, scale=scale)
            if png_every > 0 and j % png_every == 0:
                ok, png = cv2.imencode(".png", pic[..., ::-1])
                if not ok:
                    raise ValueError("PNG encoding failed")
                (png_dir / f"{i:05d}.png").write_bytes(png.tobytes())
            yield pic

    mp4 = out_dir / f"{video.stem}_track.mp4"
    if write_mp4:
        write_video(mp4, overlays(), fps=info.fps)
    else:
        for _ in overlays():
            pass
    lost = sum(b is None for bb in boxes for b in bb)
    return {"video": str(video), "out": str(out_dir), "frames": len(boxes), "objects": k,
            "grid": tuple(labels.shape[-2:]), "lost": lost,
            "pngs": len(list(png_dir.glob("*.png"))), "mp4": str(mp4) if write_mp4 else None,
            "seconds": time.monotonic() - t0}  # fmt: skip


# ------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-track",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Propagate the first frame's boxes or masks through a video with the "
        "pointers of a colourisation tracker (avssl-train colorization-tracking; Vondrick et "
        "al. 2018).\n\nEvery frame points into the first frame and the --context previous "
        "frames (locations within --radius cells, the --topk best, softmax at --temperature) "
        "and takes their labels; masks are the argmax, boxes the bounding box of each "
        "object's largest connected piece.\n\n"
        "Writes into OUT:\n"
        "  boxes.json            per-frame boxes of every object, in the video's pixels\n"
        "  masks.npz             'masks': uint8 (T, h, w) index maps (0 background), at the\n"
        "                        overlay size\n"
        "  frames/NNNNN.png      overlays (tinted masks, boxes) every --png-every-th frame\n"
        "  <stem>_track.mp4      the whole overlay video\n\n"
        '--init: boxes.json ({"frame": 0, "boxes": [[x1, y1, x2, y2], ...], "names": [...]}'
        ', pixels of the video\'s frames; "normalized": true for [0, 1]) or a mask image (a '
        "palette/grey PNG of object ids, 0 background, or one colour per object on black).",
        epilog="Baselines: CHECKPOINT = pixels (raw lightness of 4x4 cells, the network's "
        "input), lab-pixels (raw colour: a reference), random:RUN (the run's network at random "
        "init). A model trained on the built-in synthetic set has never seen real footage. "
        "Scored runs: avssl-eval tracking (docs/tracking.md).\n\n"
        "example: avssl-track runs/tracking clip.mp4 --init boxes.json --out track/clip",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a colorization_tracking run or checkpoint.pt, random:RUN, "
                   "random:BACKBONE, pixels[:S] or lab-pixels[:S]")  # fmt: skip
    p.add_argument(
        "video",
        metavar="VIDEO",
        type=Path,
        help="a video file, an animated GIF or a folder of numbered images (DAVIS "
        "JPEGImages/480p/<seq>, img_00001.jpg, ...)",
    )
    p.add_argument("--init", required=True, type=Path, metavar="FILE",
                   help="first-frame labels: boxes.json or a mask PNG (see above)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help=f"short side of the network's input (default {REAL_SIZE}, or the "
                   "video's own when smaller). Larger: finer masks, slower; at 64 small objects "
                   "cover a few cells and are lost (DAVIS-style bmx-trees: lab-pixels J 0.05 at "
                   "64, 0.25 at 240; docs/tracking.md)")  # fmt: skip
    p.add_argument(
        "--context",
        type=int,
        default=3,
        metavar="K",
        help="previous frames used as references besides the first (default 3)",
    )
    p.add_argument("--radius", type=float, default=8.0, metavar="CELLS",
                   help="how far (feature cells) a location may point; <= 0: anywhere "
                   "(default 8)")  # fmt: skip
    p.add_argument(
        "--topk",
        type=int,
        default=10,
        metavar="K",
        help="references kept per location (default 10; 0: all)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="softmax temperature (default: the model's)",
    )
    p.add_argument("--start-frame", type=int, default=None, metavar="I",
                   help="the frame the --init labels belong to (default: the JSON's 'frame', "
                   "else 0); tracking runs forward from it")  # fmt: skip
    p.add_argument(
        "--max-frames", type=int, default=None, metavar="N", help="track at most N frames"
    )
    p.add_argument(
        "--png-every",
        type=int,
        default=10,
        metavar="P",
        help="overlay PNG every P-th frame (default 10; 0: none)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=640,
        metavar="PX",
        help="overlays, masks and mp4 at most this long side (default 640)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if "
                   "available)")  # fmt: skip
    p.add_argument("--no-video", action="store_true", help="skip the overlay mp4")
    return p


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("context", "topk", "png_every"):
        if getattr(args, name) < 0:
            print(f"error: --{name.replace('_', '-')} must be >= 0", file=sys.stderr)
            return 2
    if (
        (args.size is not None and args.size < 1)
        or args.max_side < 2
        or (args.max_frames is not None and args.max_frames < 1)
    ):
        print("error: --size and --max-frames must be >= 1, --max-side >= 2", file=sys.stderr)
        return 2
    if args.temperature is not None and args.temperature <= 0:
        print("error: --temperature must be > 0", file=sys.stderr)
        return 2
    try:
        embedder = load_embedder(args.checkpoint, device=_device(args.device))
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    opts = PropagationOptions(args.context, args.radius if args.radius > 0 else None,
                              args.topk, args.temperature)  # fmt: skip
    try:
        res = track_video(
            embedder, args.video, args.init, args.out, opts=opts, size=args.size,
            max_frames=args.max_frames, start_frame=args.start_frame, png_every=args.png_every,
            max_side=args.max_side, write_mp4=not args.no_video,
        )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - report in one line
        msg = _one_line(e)
        print(f"error: {msg if msg.startswith(str(args.video)) else f'{args.video}: {msg}'}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"{args.video}: {res['objects']} object(s) over {res['frames']} frames, grid "
          f"{res['grid']}, lost {res['lost']} object-frames, {res['pngs']} PNGs, "
          f"{res['seconds']:.1f} s -> {res['out']}")  # fmt: skip
    return 0


def entry() -> None:
    """Console-script entry point (``avssl-track``)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
