"""A folder of numbered images is a video: list and check its frames, decode single images.

The rules are in docs/manifests.md, "What is a video".
Design notes: docs/design/data.md, "avssl.data.frame_folder".
"""

from __future__ import annotations

import configparser
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from avssl import errors
from avssl.data.suffixes import IMAGE_SUFFIXES

#: Frame rate of a frame folder without a sidecar or an explicit ``fps`` (UCF-101's and most
#: European footage's rate; DAVIS is 24, Kinetics rawframes 30: pass ``fps`` or a sidecar).
DEFAULT_FPS = 25.0
#: Name family preferred when several share a folder (mmaction2 rawframes: img_, flow_x_, ...).
_PREFERRED_FAMILY = "img"
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class FrameList:
    """The frames of a folder, in order, with what the listing found."""

    names: tuple[str, ...]  # image file names in frame order
    numbers: tuple[int, ...]  # their frame numbers
    step: int  # the smallest step between numbers (1 for a full sequence)
    gaps: tuple[tuple[int, int], ...]  # (first missing number, count missing) per gap
    fps: float
    fps_source: str  # "fps.txt", "seqinfo.ini", "option" or "default"

    def gap_text(self, limit: int = 3) -> str:
        """``"3 frame number(s) missing: 12, 40..41"``."""
        parts = [str(a) if k == 1 else f"{a}..{a + (k - 1) * self.step}" for a, k in self.gaps]
        more = f" and {len(parts) - limit} more gap(s)" if len(parts) > limit else ""
        missing = sum(k for _, k in self.gaps)
        return f"{missing} frame number(s) missing: {', '.join(parts[:limit])}{more}"

    def pts_s(self) -> tuple[float, ...]:
        n0 = self.numbers[0]
        return tuple((n - n0) / self.step / self.fps for n in self.numbers)


def looks_like_frame_folder(path: str | os.PathLike[str], *, min_frames: int = 2) -> bool:
    """Whether a folder directly holds at least ``min_frames`` numbered images (no decoding)."""
    try:
        with os.scandir(path) as it:
            n = 0
            for e in it:
                if _is_frame_name(e.name) and e.is_file():
                    n += 1
                    if n >= min_frames:
                        return True
    except OSError:
        return False
    return False


def frame_number(name: str) -> int | None:
    """The frame number in a file name: its stem's last run of digits (``img_00012.jpg`` -> 12)."""
    m = _NUMBER.search(os.path.splitext(name)[0])
    return int(m.group(1)) if m else None


def _is_frame_name(name: str) -> bool:
    return (
        not name.startswith(".")
        and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        and frame_number(name) is not None
    )


def folder_stat(folder: Path) -> tuple[int, int]:
    """(bytes of the frame images, newest mtime of the folder and its images): the identity a
    probe is cached under, like a file's size and mtime."""
    total, newest = 0, folder.stat().st_mtime_ns
    with os.scandir(folder) as it:
        for e in it:
            if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and not e.name.startswith("."):
                st = e.stat()
                total += st.st_size
                newest = max(newest, st.st_mtime_ns)
    for side in (folder / "fps.txt", folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        try:  # a sidecar changes the frame rate: it is part of the identity
            st = side.stat()
        except OSError:
            continue
        total += st.st_size + 1  # + 1: an empty sidecar counts too
        newest = max(newest, st.st_mtime_ns)
    return total, newest


def list_frames(folder: str | os.PathLike[str], *, fps: float | None = None) -> FrameList:
    """List and order a folder's frames; see the module docstring for the rules."""
    p = Path(folder)
    try:
        entries = [e for e in os.scandir(p) if not e.name.startswith(".")]
    except PermissionError as e:
        raise errors.PermissionDeniedError(
            str(p), f"cannot list the folder: {e.strerror}"
        ) from None
    except OSError as e:
        raise errors.NotMediaError(str(p), f"cannot list the folder: {e.strerror or e}") from None
    if not entries:
        raise errors.EmptyMediaError(str(p), "frame folder is empty (no files)")
    images = [e for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
    if not images:
        kinds = Counter(os.path.splitext(e.name)[1].lower() or "(no suffix)" for e in entries)
        seen = ", ".join(f"{k} x{n}" for k, n in kinds.most_common(4))
        raise errors.NotMediaError(
            str(p), f"a folder with no image frames ({len(entries)} entries: {seen})"
        )
    families: dict[str, list[tuple[int, str]]] = {}
    for img in images:
        stem = os.path.splitext(img.name)[0]
        m = _NUMBER.search(stem)
        if m is None:
            raise errors.NotMediaError(
                str(p), f"image {img.name!r} has no frame number in its name, so frames cannot be "
                "ordered",
            )  # fmt: skip
        prefix = stem[: m.start()].rstrip("_-. ").lower()
        families.setdefault(prefix, []).append((int(m.group(1)), img.name))
    if len(families) > 1 and _PREFERRED_FAMILY not in families:
        names = ", ".join(f"{k or '(digits only)'!r} x{len(v)}" for k, v in families.items())
        raise errors.NotMediaError(
            str(p), f"several frame sequences in one folder ({names}); keep one per folder"
        )
    family = families.get(_PREFERRED_FAMILY) or next(iter(families.values()))
    family.sort()
    numbers = [n for n, _ in family]
    dup = next((n for a, n in zip(numbers, numbers[1:], strict=False) if n == a), None)
    if dup is not None:
        two = [name for n, name in family if n == dup][:2]
        raise errors.NotMediaError(str(p), f"two images carry frame number {dup}: {two}")
    steps = [b - a for a, b in zip(numbers, numbers[1:], strict=False)]
    step = min(steps) if steps else 1
    gaps = tuple((a + step, (b - a) // step - 1) for a, b in zip(numbers, numbers[1:], strict=False)
                 if b - a > step)  # fmt: skip
    rate, source = _frame_rate(p, fps)
    return FrameList(
        names=tuple(name for _, name in family), numbers=tuple(numbers), step=step, gaps=gaps,
        fps=rate, fps_source=source,
    )  # fmt: skip


def _frame_rate(folder: Path, fps: float | None) -> tuple[float, str]:
    side = folder / "fps.txt"
    if side.is_file():
        try:
            rate = float(side.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            raise errors.NotMediaError(
                str(side), "fps.txt must hold one positive number (frames per second)"
            ) from None
        if rate > 0:
            return rate, "fps.txt"
        raise errors.NotMediaError(str(side), f"frame rate must be positive, got {rate}")
    for ini in (folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        if ini.is_file():
            cp = configparser.ConfigParser()
            try:
                cp.read(ini)
                rate = float(cp.get("Sequence", "frameRate"))
            except (configparser.Error, ValueError):
                continue
            if rate > 0:
                return rate, "seqinfo.ini"
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"{folder}: fps must be positive, got {fps}")
        return float(fps), "option"
    return DEFAULT_FPS, "default"


def decode_image(path: Path) -> av.VideoFrame:
    """The one picture of an image file, decoded by FFmpeg (as a video frame would be)."""
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as c:
            if not c.streams.video:
                raise errors.CorruptMediaError(str(path), "frame image has no picture")
            vs = c.streams.video[0]
            vs.thread_type = "SLICE"
            vs.codec_context.thread_count = 1
            for f in c.decode(vs):
                return f
    except av.error.FFmpegError as e:
        raise errors.CorruptMediaError(str(path), f"frame image does not decode ({e})") from None
    except FileNotFoundError:
        raise errors.MediaNotFoundError(
            str(path), "frame image vanished since the folder was probed"
        ) from None
    raise errors.CorruptMediaError(str(path), "frame image does not decode (no picture)")


def iter_images(
    folder: Path, names: tuple[str, ...], wanted: list[int]
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Decode the frames ``wanted`` (indices into ``names``) in the order given."""
    for i in wanted:
        yield i, decode_image(folder / names[i])
