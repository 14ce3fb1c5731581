"""File suffixes of media, one home for every reader (case-insensitive, with the dot).

``.ogg`` is in both the video and the audio list: an Ogg file is whatever the command reading it
expects (``avssl-prep folder`` takes it as a video, ``avssl-prep audio-folder`` as sound), and a
caller that sorts files into kinds checks the video list first.
"""

from __future__ import annotations

#: Videos, what ``avssl-prep folder`` takes: the containers read exactly
#: (tests/test_decode_exact.py), animated GIF/APNG, and the MPEG program / transport stream
#: names. A folder of numbered images is a video too (:mod:`avssl.data.frame_folder`).
VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".vob", ".m2v", ".wmv",
    ".asf", ".flv", ".3gp", ".3g2", ".ogv", ".ogg", ".ts", ".mts", ".m2ts", ".mxf", ".gif",
    ".apng",
)  # fmt: skip

#: Still images: the frames of a frame folder, the rows of an image manifest (``avssl-prep
#: images``), the image inputs of the evaluations and of fine-tuning. (A ``.gif`` is a video.)
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm"}
)

#: Sound files (FFmpeg decodes them all): ``avssl-prep audio-folder | esc50``, audio rows of the
#: evaluations, what a video prep lists as sound in skipped.csv.
AUDIO_SUFFIXES: tuple[str, ...] = (
    ".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff",
    ".mka",
)  # fmt: skip

#: Any of the three.
MEDIA_SUFFIXES: tuple[str, ...] = tuple(
    dict.fromkeys((*VIDEO_SUFFIXES, *sorted(IMAGE_SUFFIXES), *AUDIO_SUFFIXES))
)
