"""Typed errors. Every message names the file and the offending value (STYLE.md, habit 6)."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any


class MediaError(Exception):
    """Base class for problems with one media file. ``reason`` is a short quarantine code, given
    by each subclass as a class keyword (``class X(MediaError, reason="x")``)."""

    reason = "media-error"

    def __init__(self, path: str, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")

    def __init_subclass__(cls, reason: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if reason:
            cls.reason = reason


class MediaNotFoundError(MediaError, FileNotFoundError, reason="missing"): ...


class BrokenLinkError(MediaNotFoundError, reason="broken-link"):
    """A symbolic link whose target does not exist."""


class EmptyMediaError(MediaError, reason="empty-file"): ...


class NotMediaError(MediaError, reason="not-media"):
    """The file could not be opened as a media container at all."""


class NotAFileError(NotMediaError, reason="not-a-file"):
    """A directory, FIFO, socket or device where a media file was expected (a FIFO would block
    a reader forever, so it is refused before anything opens it)."""


class LinkLoopError(NotMediaError, reason="link-loop"):
    """A symbolic link that leads back to itself (``a -> b -> a``)."""


class PermissionDeniedError(NotMediaError, PermissionError, reason="permission-denied"):
    """The file (or a folder above it) may not be read by this user."""


class StillImageError(NotMediaError, reason="still-image"):
    """A single image (PNG, JPEG, ...) where a video was expected: FFmpeg opens it as a one-frame
    "video", which no temporal or audio-visual task can use."""


class CorruptMediaError(MediaError, reason="corrupt"):
    """The container opened but its data could not be decoded."""


class TruncatedMediaError(CorruptMediaError, reason="truncated"): ...


class FrameGapError(TruncatedMediaError, reason="frame-gap"):
    """A frame folder whose numbering has gaps: frames that are gone (avssl.data.frame_folder)."""


class MixedFrameSizeError(CorruptMediaError, reason="mixed-frame-sizes"):
    """A frame folder whose images are not all of one size."""


class NoVideoStreamError(MediaError, reason="no-video-stream"): ...


class NoAudioStreamError(MediaError, reason="no-audio-stream"): ...


class SilentAudioError(MediaError, reason="silent-audio"):
    """The audio stream decodes but is digitally silent (peak below the audibility level)."""


class NoUsableWindowError(MediaError, reason="no-usable-window"):
    """No (frame, audio window) pair fits: the file is shorter than its listed segment, or the
    segment is shorter than one window."""


class FrameIndexError(MediaError, IndexError, reason="frame-index"): ...


class AudioRangeError(MediaError, ValueError, reason="audio-range"):
    """An audio window runs past the stream and the caller asked for no padding."""


class DecodeTimeoutError(MediaError, TimeoutError, reason="decode-timeout"): ...


class BackendUnavailableError(RuntimeError):
    """A decoding backend was asked for but its package is not installed."""


class BackendRefusedError(MediaError, reason="backend-refused"):
    """A backend was asked for on a kind of file where it fails the exact-frame tests."""


def check_file_entry(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat`` of a media file that is safe to open, else the precise error.

    Without opening anything: a dangling link is :class:`BrokenLinkError`, a link loop
    :class:`LinkLoopError`, a directory, FIFO, socket or device :class:`NotAFileError`, a file
    this user may not read :class:`PermissionDeniedError`, an absent one
    :class:`MediaNotFoundError`. Emptiness is left to the caller.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise BrokenLinkError(p, f"dangling symbolic link (to {os.readlink(p)!r})") from None
        raise MediaNotFoundError(p, "no such file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LinkLoopError(p, "symbolic link loop (too many levels of links)") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise PermissionDeniedError(p, f"cannot stat: {e.strerror or e}") from None
        raise NotMediaError(p, f"cannot stat: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotAFileError(p, "is a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(p, "is not a regular file (FIFO, socket or device)")
    if not os.access(p, os.R_OK):
        raise PermissionDeniedError(p, "file is not readable (permissions)")
    return st


def cli_message(prog: str, e: BaseException) -> str:
    """The one line a command prints for an error it cannot go on from.

    A full disk, a read-only file system or a denied path names the path and says that running
    the same command again resumes (writes are atomic: nothing half-written is kept).
    """
    if isinstance(e, OSError) and not isinstance(e, MediaError):
        where = e.filename if e.filename is not None else ""
        what = e.strerror or str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{prog}: {where}: {what}; fix that and run the same command again: it resumes"
        if where:
            return f"{prog}: {where}: {what}"
    return f"{prog}: {e}"


def run_cli(prog: str, func: Callable[[], int]) -> int:
    """Run a command's body with the one error guard every avssl CLI shares.

    Bad input (a missing file, a bad value, bad media) and environment failures (a full disk, a
    denied path) become one line on stderr and exit status 2, not a traceback.
    """
    try:
        return int(func())
    except (OSError, ValueError, MediaError) as e:
        print(cli_message(prog, e), file=sys.stderr)
        return 2
