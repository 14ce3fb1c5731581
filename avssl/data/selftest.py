"""Exact-frame self-test: videos whose frames spell their own index, and a check per backend.

Frames carry their index in big black/white blocks that survive lossy coding (one block per
bit, read back by :func:`read_index`), over a moving gradient and a moving square so that motion
estimation and B-frames have real work. The test suite (``tests/media.py``) builds its media
from these frames; ``avssl doctor`` writes :func:`write_selftest_videos` and runs
:func:`check_backend` on each backend through :func:`avssl.data.decode.read_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GRID_COLS, GRID_ROWS = 4, 3
INDEX_BITS = GRID_COLS * GRID_ROWS  # frame indices 0 .. 4095
_ON = np.array([225, 230, 215], np.int16)
_OFF = np.array([30, 20, 45], np.int16)


def _cells(height: int, width: int) -> list[tuple[slice, slice]]:
    """Bit cells (row-major, bit 0 first) in the top 3/4 of the frame."""
    top = height * 3 // 4
    out = []
    for r in range(GRID_ROWS):
        for c in range(GRID_COLS):
            y0, y1 = r * top // GRID_ROWS, (r + 1) * top // GRID_ROWS
            x0, x1 = c * width // GRID_COLS, (c + 1) * width // GRID_COLS
            out.append((slice(y0, y1), slice(x0, x1)))
    return out


def index_frame(index: int, height: int = 96, width: int = 128) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB frame whose blocks spell ``index`` in binary (bit 0 top-left).

    The bottom quarter holds a gradient that slides 3 px per frame and a square that moves 2 px
    per frame; the bit blocks carry a faint moving texture (+-12) so that no block is flat.
    """
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    if height < 24 or width < 32:
        raise ValueError(f"frame size {height}x{width} too small for the index grid (>= 24x32)")
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.empty((height, width, 3), np.int16)
    base[..., 0] = (xx * 2 + index * 3) % 256
    base[..., 1] = (yy * 3 + xx + index * 3) % 256
    base[..., 2] = 255 - (xx * 2 + index * 3) % 256
    texture = (((xx + yy + 2 * index) // 4) % 2 * 24 - 12).astype(np.int16)
    for bit, (ys, xs) in enumerate(_cells(height, width)):
        colour = _ON if (index >> bit) & 1 else _OFF
        base[ys, xs] = colour + texture[ys, xs, None]
    # A moving square in the bottom band.
    top = height * 3 // 4
    side = max(4, (height - top) // 2)
    x0 = (2 * index) % max(1, width - side)
    y0 = top + (height - top - side) // 2
    base[y0 : y0 + side, x0 : x0 + side] = (250, 250, 40)
    return np.clip(base, 0, 255).astype(np.uint8)


def read_index(frame: Any) -> int:
    """Read back the index of a decoded frame, ``(H, W, 3)`` or ``(3, H, W)`` (uint8 RGB).

    Each bit is the mean luma of the inner half of its block, thresholded at mid-grey.
    """
    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[0] == 3 and f.shape[2] != 3:
        f = f.transpose(1, 2, 0)
    luma = f.astype(np.float32).mean(axis=2)
    index = 0
    for bit, (ys, xs) in enumerate(_cells(*luma.shape)):
        h, w = ys.stop - ys.start, xs.stop - xs.start
        inner = luma[ys.start + h // 4 : ys.stop - h // 4, xs.start + w // 4 : xs.stop - w // 4]
        if inner.mean() > 128:
            index |= 1 << bit
    return index


def index_frames(n: int, height: int = 96, width: int = 128) -> np.ndarray:
    """``(n, H, W, 3)`` frames 0..n-1."""
    return np.stack([index_frame(i, height, width) for i in range(n)])


#: name -> (write_video keywords, number of frames, what the file exercises)
SELFTEST_VIDEOS: dict[str, tuple[dict[str, Any], int, str]] = {
    "h264_bframes.mp4": (
        {"codec": "h264", "max_b_frames": 3, "gop": 24, "options": {"sc_threshold": "0"}},
        96,
        "H.264 in MP4, B-pyramid (3 B), keyframe every 24",
    ),
    "xvid_packed.avi": (
        {"codec": "mpeg4", "max_b_frames": 2, "packed_b_frames": True, "gop": 30},
        72,
        "Xvid AVI, packed B-frames (UCF-101 style), keyframe every 30",
    ),
}


def write_selftest_videos(folder: str | Path) -> dict[str, Path]:
    """Write the self-test videos (96x128, 25 fps, frames 0..n-1) into ``folder``."""
    from avssl.data.encode import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (kw, n, _) in SELFTEST_VIDEOS.items():
        path = folder / name
        write_video(path, (index_frame(i) for i in range(n)), fps=25, **kw)
        out[name] = path
    return out


#: Largest mean absolute difference (grey levels) between a backend's frame and the same frame
#: of the sequential PyAV decode. Colour conversion differs slightly between decoders (~1); the
#: neighbouring frame differs by tens (the gradient slides 3 px and the texture flips).
MAX_MEAN_DIFF = 6.0


@dataclass
class BackendCheck:
    """The result of one backend on one self-test file."""

    backend: str
    file: str
    status: str  # pass | FAIL | refused | unavailable | error
    reads: int = 0
    frames_checked: int = 0
    wrong: list[dict[str, Any]] = field(default_factory=list)  # first few mismatches
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequential_frames(path: str | Path) -> np.ndarray:
    """Every frame of ``path`` decoded in order from the start, ``(N, H, W, 3)`` uint8."""
    from avssl.data.decode import iter_frames

    return np.stack([f for _, f in iter_frames(path)])


def random_requests(num_frames: int, reads: int, per_read: int, seed: int) -> list[list[int]]:
    """``reads`` random requests of ``per_read`` indices each (unsorted, repeats across reads),
    plus the first and last frame, which decoders most often get wrong."""
    rng = np.random.default_rng(seed)
    reqs = [[0], [num_frames - 1]]
    for _ in range(reads):
        k = min(per_read, num_frames)
        reqs.append([int(i) for i in rng.choice(num_frames, k, replace=False)])
    return reqs


def check_backend(
    path: str | Path,
    backend: str,
    reference: np.ndarray,
    *,
    reads: int = 12,
    per_read: int = 4,
    seed: int = 0,
) -> BackendCheck:
    """Read random frames of ``path`` with ``backend`` through ``read_frames`` and compare each
    with the sequential decode ``reference``: the frame must spell the index asked for and differ
    from the reference frame by at most :data:`MAX_MEAN_DIFF` on average."""
    from avssl import errors
    from avssl.data import decode

    name = Path(path).name
    if backend != "auto" and backend not in decode.available_backends():
        return BackendCheck(backend, name, "unavailable", detail="package does not import")
    try:
        info = decode.probe(path)
        if backend != "auto":
            reason = decode.backend_refusal(backend, info)
            if reason is not None:
                return BackendCheck(backend, name, "refused", detail=reason)
        if info.num_frames != len(reference):
            return BackendCheck(
                backend,
                name,
                "FAIL",
                detail=f"probe counts {info.num_frames} frames, sequential decode {len(reference)}",
            )
        res = BackendCheck(backend, name, "pass")
        used: set[str] = set()
        for req in random_requests(info.num_frames, reads, per_read, seed):
            clip = decode.read_frames(path, req, backend=backend, info=info)  # type: ignore[arg-type]
            used.add(clip.backend)
            res.reads += 1
            got = clip.data.permute(0, 2, 3, 1).numpy()
            for asked, frame in zip(req, got, strict=True):
                res.frames_checked += 1
                spelled = read_index(frame)
                diff = float(np.abs(frame.astype(np.int16) - reference[asked]).mean())
                if spelled != asked or diff > MAX_MEAN_DIFF:
                    res.status = "FAIL"
                    if len(res.wrong) < 5:
                        res.wrong.append({"asked": asked, "got": spelled, "mean_diff": diff})
        if backend == "auto":
            res.detail = f"auto chose {', '.join(sorted(used))}"
        return res
    except errors.BackendUnavailableError as e:
        return BackendCheck(backend, name, "unavailable", detail=str(e))
    except Exception as e:  # noqa: BLE001 - a crashing backend is a result, not a doctor crash
        return BackendCheck(backend, name, "error", detail=f"{type(e).__name__}: {e}")


def run_selftest(
    folder: str | Path, backends: Sequence[str], *, reads: int = 12, seed: int = 0
) -> list[BackendCheck]:
    """Write the self-test videos into ``folder`` and check every backend on each."""
    results = []
    for name, path in write_selftest_videos(folder).items():
        ref = sequential_frames(path)
        wrong_seq = [i for i, f in enumerate(ref) if read_index(f) != i]
        if wrong_seq:  # the reference itself is off: nothing to compare with
            why = f"sequential decode spells wrong indices at frames {wrong_seq[:5]}"
            results += [BackendCheck(b, name, "error", detail=why) for b in backends]
            continue
        results += [check_backend(path, b, ref, reads=reads, seed=seed) for b in backends]
    return results
