"""Typed errors. Every message names the file and the offending value (STYLE.md, habit 6)."""

from __future__ import annotations


class MediaError(Exception):
    """Base class for problems with one media file. ``reason`` is a short quarantine code."""

    reason = "media-error"

    def __init__(self, path: str, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class MediaNotFoundError(MediaError, FileNotFoundError):
    reason = "missing"


class EmptyMediaError(MediaError):
    reason = "empty-file"


class NotMediaError(MediaError):
    """The file could not be opened as a media container at all."""

    reason = "not-media"


class CorruptMediaError(MediaError):
    """The container opened but its data could not be decoded."""

    reason = "corrupt"


class TruncatedMediaError(CorruptMediaError):
    reason = "truncated"


class NoVideoStreamError(MediaError):
    reason = "no-video-stream"


class NoAudioStreamError(MediaError):
    reason = "no-audio-stream"


class SilentAudioError(MediaError):
    """The audio stream decodes but is digitally silent (peak below the audibility level)."""

    reason = "silent-audio"


class NoUsableWindowError(MediaError):
    """No (frame, audio window) pair fits: the file is shorter than its listed segment, or the
    segment is shorter than one window."""

    reason = "no-usable-window"


class FrameIndexError(MediaError, IndexError):
    reason = "frame-index"


class AudioRangeError(MediaError, ValueError):
    """An audio window runs past the stream and the caller asked for no padding."""

    reason = "audio-range"


class DecodeTimeoutError(MediaError, TimeoutError):
    reason = "decode-timeout"


class BackendUnavailableError(RuntimeError):
    """A decoding backend was asked for but its package is not installed."""


class BackendRefusedError(MediaError):
    """A backend was asked for on a kind of file where it fails the exact-frame tests."""

    reason = "backend-refused"
