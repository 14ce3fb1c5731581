"""The exact-frame check: random access must equal a sequential decode, pixel for pixel.

Reference: PyAV decoding the file sequentially from the start, each frame converted with
``frame.to_ndarray(format="rgb24")``. :func:`check_backend_exact` reads the same file with one
backend through many access patterns (all frames in order, reversed, random subsets, random
3-frame tuples, 16-frame windows, repeats, around keyframes, the last frame) and lists every
frame that differs. Backends are ``"auto"``/``"pyav"``/``"decord"``/``"opencv"``/``"torchcodec"``
through :func:`avssl.data.decode.read_frames`, or ``"raw-<name>"`` for the library called the way
users usually call it (no avssl in between; ``raw-pyav`` is a naive PyAV timestamp seek), which is
how a refusal is shown to be justified.

A differing frame is classified: ``wrong_frame`` when it is closer to another frame of the file
than to the one asked for (a seek landed elsewhere), otherwise only its colours differ (another
YUV->RGB conversion). Both break the contract; the table tells the two apart.

Run as a script for the backend x file table (generated set + real clips)::

    python tests/exact.py            # quick patterns
    python tests/exact.py --full     # every pattern on every frame (slower)
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

Patterns = dict[str, list[list[int]]]

# Frames above this many bytes per "call" are split into several calls (a 720p file read as
# one 720-frame call would need 2 GB).
MAX_CALL_BYTES = 200 * 2**20
# Files with more decoded RGB bytes than this get the quick patterns unless full=True.
QUICK_FILE_BYTES = 40 * 2**20
# Reference frames are kept in memory up to this many bytes (else decoded again when needed).
KEEP_REFERENCE_BYTES = 400 * 2**20


# --------------------------------------------------------------------------------------------
# Reference: a sequential PyAV decode
# --------------------------------------------------------------------------------------------
@dataclass
class Reference:
    """A sequential PyAV decode of one file: frame count, pts and keyframes up front; RGB frames,
    their hashes and thumbnails on demand (one more sequential pass each time more are needed,
    so a 720p clip does not have to sit in memory)."""

    path: Path
    num_frames: int
    height: int
    width: int
    pts: list[int | None]
    keyframes: list[int]
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # kept RGB frames
    hashes: dict[int, bytes] = field(default_factory=dict)
    _thumbs: np.ndarray | None = None

    @property
    def keep_all(self) -> bool:
        return self.num_frames * self.height * self.width * 3 <= KEEP_REFERENCE_BYTES

    def _pass(self, want: set[int], on_frame: Callable[[int, np.ndarray], None]) -> None:
        last = max(want)
        for i, f in enumerate(sequential_frames(self.path)):
            if i in want:
                rgb = f.to_ndarray(format="rgb24")
                # Frames come out as displayed: turned by the display matrix (fire2 is
                # stored upside down), as players, decord, OpenCV and torchcodec do.
                k = round(float(getattr(f, "rotation", 0) or 0) / 90) % 4
                on_frame(i, np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
            if i >= last:
                break

    def ensure(self, indices: Sequence[int] | set[int]) -> None:
        """Make hashes (and, for small files, frames) of ``indices`` available."""
        missing = set(indices) - self.hashes.keys()
        if not missing:
            return
        if self.keep_all:
            missing = set(range(self.num_frames)) - self.hashes.keys()

        def keep(i: int, rgb: np.ndarray) -> None:
            self.hashes[i] = _digest(rgb)
            if self.keep_all:
                self.frames[i] = rgb

        self._pass(missing, keep)

    def frame(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        """Reference RGB frames at ``indices``."""
        want = set(indices)
        out = {i: self.frames[i] for i in want if i in self.frames}
        if len(out) < len(want):
            self._pass(want - out.keys(), out.__setitem__)
        return out

    def thumbs(self) -> np.ndarray:
        """``(N, h, w, 3)`` float32 area-downsampled frames, to tell frames apart."""
        if self._thumbs is None:
            t: dict[int, np.ndarray] = {}
            if self.keep_all:
                self.ensure(range(self.num_frames))
                t = {i: _thumb(f) for i, f in self.frames.items()}
            else:
                self._pass(set(range(self.num_frames)), lambda i, f: t.__setitem__(i, _thumb(f)))
            self._thumbs = np.stack([t[i] for i in range(self.num_frames)])
        return self._thumbs


_REFS: dict[tuple[str, int, int], Reference] = {}


def reference(path: str | Path) -> Reference:
    """Sequential decode of ``path``: count, pts, keyframes (cached per file version)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _REFS:
        return _REFS[key]
    pts: list[int | None] = []
    keys: list[int] = []
    h = w = 0
    for i, f in enumerate(sequential_frames(p)):
        pts.append(f.pts)
        if f.key_frame:
            keys.append(i)
        h, w = f.height, f.width
    if not pts:
        raise ValueError(f"{p}: no video frame decodes")
    ref = Reference(path=p, num_frames=len(pts), height=h, width=w, pts=pts, keyframes=keys)
    _REFS[key] = ref
    return ref


def sequential_frames(p: Path) -> Iterator[av.VideoFrame]:
    """Every frame of a file in decode-output order (PyAV, one thread); for a folder of numbered
    images, each image in the order of its number (written here independently of avssl)."""
    if p.is_dir():
        images = [f for f in p.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"}]
        for f in sorted(images, key=lambda f: int(re.findall(r"\d+", f.stem)[-1])):
            with av.open(str(f)) as c:
                yield next(c.decode(video=0))
        return
    with av.open(str(p)) as c:
        vs = c.streams.video[0]
        vs.codec_context.thread_count = 1
        yield from c.decode(vs)


def reference_frames(p: str | Path, indices: list[int]) -> np.ndarray:
    """``(T, H, W, 3)`` RGB frames ``indices`` from the file's sequential decode (no rotation)."""
    want = set(indices)
    got = {
        i: f.to_ndarray(format="rgb24")
        for i, f in enumerate(sequential_frames(Path(p)))
        if i in want
    }
    return np.stack([got[i] for i in indices])


def _digest(rgb: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(rgb)).digest()


def _thumb(rgb: np.ndarray, cell: int = 8) -> np.ndarray:
    import cv2

    h, w = max(1, rgb.shape[0] // cell), max(1, rgb.shape[1] // cell)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Access patterns
# --------------------------------------------------------------------------------------------
def access_patterns(
    num_frames: int,
    keyframes: Sequence[int],
    *,
    seed: int = 0,
    frame_bytes: int = 0,
    quick: bool = False,
    refs: str = "",
) -> Patterns:
    """Named lists of calls (each call a list of display indices, in the order asked).

    ``quick=True`` keeps every kind of pattern but with fewer calls, "all"/"reversed" over the
    first stretch of the file (at least 32 frames, up to just past its second keyframe when that
    is near) and keyframe checks on the first three keyframes: for big real clips in the default
    test run. ``frame_bytes`` splits long calls so that none returns more than MAX_CALL_BYTES.
    """
    n = num_frames
    if n < 1:
        raise ValueError(f"no frames (num_frames={n})")
    rng = np.random.default_rng(seed)
    per_call = max(1, MAX_CALL_BYTES // frame_bytes) if frame_bytes else n
    keys = sorted(set(keyframes))
    if quick:
        hi = max(32, keys[1] + 8 if len(keys) > 1 and keys[1] < 160 else 0)
        span = list(range(min(n, hi)))
        keys = keys[:3]
    else:
        span = list(range(n))

    def chunks(seq: list[int]) -> list[list[int]]:
        return [seq[i : i + per_call] for i in range(0, len(seq), per_call)]

    # Random picks: anywhere, or (quick) within the first 160 frames so that no call decodes
    # far; the end of the file is still covered by "last" and the final window.
    pool = min(n, 160) if quick else n

    def pick(k: int) -> list[int]:
        return [int(i) for i in rng.choice(pool, size=min(pool, k), replace=False)]

    starts = {max(0, n - 16), *(int(x) for x in rng.integers(0, pool, 1 if quick else 4))}
    if not quick:
        starts.add(0)
    a, b = int(rng.integers(0, pool)), int(rng.integers(0, pool))
    pats: Patterns = {
        "all": chunks(span),
        "reversed": chunks(span[::-1]),
        "random_subsets": [pick(k) for k in ((6,) if quick else (1, 5, 12, 40))],
        "sorted_subsets": [sorted(pick(k)) for k in ((8,) if quick else (8, 20))],
        "tuples3": [pick(3) for _ in range(1 if quick else 6)],
        "windows16": [list(range(s, min(n, s + 16))) for s in sorted(starts)],
        "repeats": [[a, a, b, a, b, b]] + ([] if quick else [[n - 1, n - 1, 0, 0]]),
        "keyframes": [],
        "last": [[n - 1]] + ([] if quick else [[max(0, n - 2), n - 1], [n - 1, 0, n - 1]]),
    }
    for k in keys:
        around = [i for i in (k - 1, k, k + 1) if 0 <= i < n]
        pats["keyframes"] += [around] if quick else [[i] for i in around] + [around, around[::-1]]
    pats.update(chain_patterns(refs[:pool], keys, rng, 2 if quick else 6))
    return pats


def chain_patterns(refs: str, keyframes: list[int], rng: np.random.Generator, k: int) -> Patterns:
    """Calls aimed at a reader that skips non-reference frames (``refs``: ``VideoInfo.frame_refs``
    of the file, "1" reference / "0" not; none when empty):

    - ``nonref_after_skips``: a non-reference frame right after other non-reference frames (the
      reader skipped those and must switch skipping off for this one), alone and in pairs;
    - ``shared_chain``: three frames of one GOP, a reference and non-reference ones, in shuffled
      orders (their reference chain is decoded once);
    - ``referenced_b``: the reference frames between two non-reference ones (B-pyramid middles,
      P-frames of packed pairs) with their neighbours.
    """
    if "0" not in refs:
        return {}
    pick = lambda xs, m: [int(x) for x in rng.choice(xs, size=min(m, len(xs)), replace=False)]  # noqa: E731
    after = [i for i in range(1, len(refs)) if refs[i] == "0" and refs[i - 1] == "0"]
    after = after or [i for i, c in enumerate(refs) if c == "0"]
    solo = pick(after, k)
    pats: Patterns = {"nonref_after_skips": [[i] for i in solo]}
    pats["nonref_after_skips"] += [sorted(pick(after, 2)) for _ in range(max(1, k // 2))]
    bounds = [*sorted({k for k in keyframes if k < len(refs)} | {0}), len(refs)]
    shared = []
    for _ in range(k):
        g = int(rng.integers(0, len(bounds) - 1))
        gop = list(range(bounds[g], bounds[g + 1]))
        nonref = [i for i in gop if refs[i] == "0"]
        ref = [i for i in gop if refs[i] == "1"]
        if len(gop) >= 3 and nonref and ref:
            call = pick(ref, 1) + pick(nonref, 2)
            shared.append(call if len(set(call)) == 3 else sorted(set(call)))
            rng.shuffle(shared[-1])
    pats["shared_chain"] = shared
    mids = [i for i in range(1, len(refs) - 1) if refs[i - 1 : i + 2] == "010"]
    pats["referenced_b"] = [[i - 1, i, i + 1] for i in pick(mids, k)]
    return pats


def file_patterns(
    path: str | Path, *, seed: int = 0, full: bool = False, quick: bool | None = None
) -> Patterns:
    """:func:`access_patterns` for a file: quick ones for big files unless ``full``
    (``quick=True/False`` forces the choice)."""
    ref = reference(path)
    frame_bytes = ref.height * ref.width * 3
    if quick is None:
        quick = ref.num_frames * frame_bytes > QUICK_FILE_BYTES and not full
    from avssl.data.decode import probe

    refs = probe(path).frame_refs
    return access_patterns(
        ref.num_frames, ref.keyframes, seed=seed, frame_bytes=frame_bytes, quick=quick, refs=refs
    )


# --------------------------------------------------------------------------------------------
# Readers: avssl's read_frames and the raw libraries
# --------------------------------------------------------------------------------------------
Reader = Callable[[Path, list[int]], np.ndarray]  # -> (T, H, W, 3) uint8 RGB


def _avssl_reader(backend: str) -> Reader:
    def read(p: Path, idx: list[int]) -> np.ndarray:
        from avssl.data.decode import read_frames

        clip = read_frames(p, idx, backend=backend)  # type: ignore[arg-type]
        return clip.data.permute(0, 2, 3, 1).numpy()

    return read


def _raw_decord(p: Path, idx: list[int]) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=1)
    return vr.get_batch(idx).asnumpy()


def _raw_opencv(p: Path, idx: list[int]) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    out = []
    pos = 0
    try:
        for i in idx:
            if i != pos:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"{p}: OpenCV could not read frame {i}")
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            pos = i + 1
    finally:
        cap.release()
    return np.stack(out)


def _raw_torchcodec(p: Path, idx: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(str(p), seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
    return dec.get_frames_at(idx).data.numpy()


def naive_seek(c: Any, vs: Any, target: int) -> np.ndarray | None:
    """What users commonly write: seek to pts ``target``, decode until a frame's pts >= it."""
    c.seek(target, stream=vs, backward=True, any_frame=False)
    for f in c.decode(vs):
        if f.pts is not None and f.pts >= target:
            return np.asarray(f.to_ndarray(format="rgb24"))
    return None


def _raw_pyav(p: Path, idx: list[int]) -> np.ndarray:
    """Naive PyAV access: seek to the frame's pts, decode until a frame with pts >= it."""
    ref = reference(p)
    out = []
    with av.open(str(p)) as c:
        vs = c.streams.video[0]
        for i in idx:
            target = ref.pts[i]
            if target is None:
                raise RuntimeError(f"{p}: frame {i} has no pts")
            got = naive_seek(c, vs, target)
            if got is None:
                raise RuntimeError(f"{p}: no frame at or after pts {target}")
            out.append(got)
    return np.stack(out)


RAW_READERS: dict[str, Reader] = {
    "raw-pyav": _raw_pyav,
    "raw-decord": _raw_decord,
    "raw-opencv": _raw_opencv,
    "raw-torchcodec": _raw_torchcodec,
}


def reader_for(backend: str) -> Reader:
    return RAW_READERS[backend] if backend.startswith("raw-") else _avssl_reader(backend)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mismatch:
    """One frame that differs from the sequential decode (or one call that raised)."""

    pattern: str
    call: int  # which call of the pattern
    position: int  # position in that call (-1: the call itself failed)
    index: int  # display index asked for (-1: the call failed)
    max_err: int  # max |pixel difference| (255 for a failed call)
    wrong_frame: bool  # closer to another frame of the file than to the one asked for
    got_index: int  # nearest reference frame (by thumbnail) of what came back
    message: str = ""

    def __str__(self) -> str:
        if self.index < 0:
            return f"{self.pattern}[{self.call}]: {self.message}"
        what = f"got frame ~{self.got_index}" if self.wrong_frame else "colours differ"
        where = f"{self.pattern}[{self.call}][{self.position}]"
        return f"{where} index {self.index}: {what}, max err {self.max_err}"


def check_backend_exact(
    path: str | Path,
    backend: str,
    patterns: Patterns | None = None,
    *,
    stop_after: int = 200,
) -> list[Mismatch]:
    """Every frame ``backend`` returns for ``patterns`` vs the sequential PyAV decode.

    Returns the mismatches (empty: exact). A call that raises is one mismatch with the error's
    message. Stops collecting after ``stop_after`` mismatches.
    """
    p = Path(path)
    ref = reference(p)
    pats = patterns if patterns is not None else file_patterns(p)
    read = reader_for(backend)
    ref.ensure({i for calls in pats.values() for idx in calls for i in idx})
    found: list[Mismatch] = []
    pending: list[tuple[str, int, int, int, np.ndarray]] = []
    for name, calls in pats.items():
        for ci, idx in enumerate(calls):
            try:
                got = read(p, list(idx))
            except Exception as e:  # noqa: BLE001 - a failing call is a finding, not a crash
                found.append(Mismatch(name, ci, -1, -1, 255, True, -1, f"{type(e).__name__}: {e}"))
                continue
            if got.shape != (len(idx), ref.height, ref.width, 3):
                found.append(
                    Mismatch(
                        name, ci, -1, -1, 255, True, -1, f"shape {got.shape}, asked {len(idx)}"
                    )
                )
                continue
            for pos, i in enumerate(idx):
                same = (
                    np.array_equal(got[pos], ref.frames[i])
                    if i in ref.frames
                    else _digest(got[pos]) == ref.hashes[i]
                )
                if not same:
                    pending.append((name, ci, pos, i, got[pos].copy()))
            if len(found) + len(pending) >= stop_after:
                break
        if len(found) + len(pending) >= stop_after:
            break
    if pending:
        refs = ref.frame(sorted({i for *_, i, _ in pending}))
        thumbs = ref.thumbs()
        for name, ci, pos, i, frame in pending:
            err = int(np.abs(frame.astype(np.int16) - refs[i]).max())
            d = np.abs(thumbs - _thumb(frame)).mean(axis=(1, 2, 3))
            j = int(np.argmin(d))
            wrong = bool(j != i and d[i] - d[j] > 0.5)
            found.append(Mismatch(name, ci, pos, i, err, wrong, j))
    return found


def summarize(mismatches: list[Mismatch]) -> str:
    """One table cell: ``exact``, ``refused``, ``WRONG k (max err E)``, ``colour k (max err E)``
    (right frame, other colour conversion) and/or ``error xk: message``."""
    if not mismatches:
        return "exact"
    if all(m.message.startswith("BackendRefusedError") for m in mismatches):
        return "refused"
    failed = [m for m in mismatches if m.index < 0]
    wrong = [m for m in mismatches if m.index >= 0 and m.wrong_frame]
    colour = [m for m in mismatches if m.index >= 0 and not m.wrong_frame]
    parts = [
        f"{name} {len(ms)} (max err {max(m.max_err for m in ms)})"
        for name, ms in (("WRONG", wrong), ("colour", colour))
        if ms
    ]
    if failed:
        parts.append(f"error x{len(failed)}: {failed[0].message[:60]}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# The table (script)
# --------------------------------------------------------------------------------------------
def exactness_table(
    files: dict[str, Path], backends: Sequence[str], *, full: bool = False, log: Any = None
) -> dict[tuple[str, str], str]:
    """``{(file, backend): cell}`` for every pair; ``log`` gets one line per pair."""
    table: dict[tuple[str, str], str] = {}
    for fname, path in files.items():
        pats = file_patterns(path, full=full)
        for b in backends:
            t0 = time.perf_counter()
            cell = summarize(check_backend_exact(path, b, pats))
            table[(fname, b)] = cell
            if log is not None:
                dt = time.perf_counter() - t0
                print(f"{fname:28s} {b:16s} {dt:6.1f}s {cell}", file=log, flush=True)
    return table


def format_table(table: dict[tuple[str, str], str], kinds: dict[str, str]) -> str:
    files = list(dict.fromkeys(f for f, _ in table))
    backends = list(dict.fromkeys(b for _, b in table))
    rows = ["| file | kind | " + " | ".join(backends) + " |"]
    rows.append("|---|---|" + "---|" * len(backends))
    for f in files:
        cells = [table.get((f, b), "") for b in backends]
        rows.append(f"| {f} | {kinds.get(f, '')} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Backend x file exact-frame table.")
    ap.add_argument("--full", action="store_true", help="every pattern over every frame")
    ap.add_argument("--raw", action="store_true", help="also the raw libraries (raw-*)")
    ap.add_argument("--only-raw", action="store_true", help="only the raw libraries")
    ap.add_argument("--out", type=Path, help="folder for the generated media (default: temp)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import media

    folder = args.out or Path(tempfile.mkdtemp(prefix="avssl-exact-"))
    gen = media.build_media(folder)
    files = {n: gen[n].path for n in media.EXACT_MEDIA}
    for name in media.REAL_CLIPS:
        rp = media.real_clip(name)
        if rp is not None:
            files[name] = rp
    avssl_backends: list[str] = []
    if not args.only_raw:
        from avssl.data.decode import available_backends

        avssl_backends = ["auto", *available_backends()]
    raw = list(RAW_READERS) if (args.raw or args.only_raw) else []
    kinds = {}
    try:
        from avssl.data.decode import probe

        kinds = {n: probe(p).kind for n, p in files.items()}
    except Exception as e:  # noqa: BLE001 - the table is still useful without kinds
        print(f"(probe failed: {e})", file=sys.stderr)
    table = exactness_table(files, avssl_backends + raw, full=args.full, log=sys.stderr)
    print(format_table(table, kinds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
