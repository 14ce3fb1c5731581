"""A generated corpus of bad media (and a few good files) that every prep command must survive.

:func:`build_bad_corpus` writes, in about 2 s, three groups of files under one folder:

* ``video/`` -- read by ``avssl-prep folder``, ``ucf101`` and ``audioset``;
* ``audio/<label>/`` -- read by ``avssl-prep esc50`` and ``audio-folder``;
* ``image/<label>/`` -- read by ``avssl-prep images``.

Each :class:`Case` says what it is (``kind``) and what a prep command must do with it:
``"keep"`` (the file is in the manifest) or ``"quarantine"`` with the set of acceptable reason
codes (``avssl.errors``; the images prep has its own codes). What is expected follows from how
the file was made, never from running a prep. Some kinds differ per command (a video without
sound is fine for ``folder`` and useless for ``audioset``): :meth:`Case.expect` answers per
command.

The special entries -- FIFOs, directories named like media, dangling symlinks, symlink loops
-- are made again in each command's own layout by :func:`materialize` (ucf101, audioset and
esc50 rename every file to their published naming schemes).

One kind cannot be made here as root: a file without read permission (root reads it anyway),
see :func:`skipped_kinds`.
"""

from __future__ import annotations

import os
import shutil
import struct
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.encode import write_audio, write_video
from tests.media import click_audio, index_frames

__all__ = [
    "AUDIO_COMMANDS",
    "COMMANDS",
    "Case",
    "IMAGE_COMMANDS",
    "Layout",
    "Outcome",
    "PrepHang",
    "VIDEO_COMMANDS",
    "build_bad_corpus",
    "compare",
    "make_layout",
    "materialize",
    "outputs",
    "read_results",
    "run_cli",
    "skipped_kinds",
]

VIDEO_COMMANDS = ("folder", "ucf101", "audioset")
AUDIO_COMMANDS = ("esc50", "audio-folder")
IMAGE_COMMANDS = ("images",)
COMMANDS = VIDEO_COMMANDS + AUDIO_COMMANDS + IMAGE_COMMANDS
GROUP_COMMANDS = {"video": VIDEO_COMMANDS, "audio": AUDIO_COMMANDS, "image": IMAGE_COMMANDS}

KEEP = "keep"
QUARANTINE = "quarantine"

SR = 16000  # audio sample rate of the generated sound
FPS = 24
SECONDS = 2.0  # long enough for a 1 s audio-visual window


@dataclass(frozen=True)
class Case:
    """One entry of the corpus.

    ``relpath`` is POSIX, relative to the corpus root, and starts with the group
    (``video/``, ``audio/``, ``image/``). ``expected`` is ``"keep"`` or ``"quarantine"``;
    ``reasons`` the acceptable reason codes of a quarantine. ``per_command`` overrides both for
    some commands: ``{command: (expected, reasons)}``. ``special`` is ``""`` for a regular file,
    else ``"fifo"``, ``"dir"``, ``"dangling"``, ``"loop"`` or ``"link"`` (a symlink to a good
    file, ``target``, relative to the corpus root); :func:`materialize` makes it again elsewhere.
    """

    relpath: str
    kind: str
    expected: str
    reasons: frozenset[str] = frozenset()
    per_command: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    special: str = ""
    target: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # manifest fields a kept file must have

    @property
    def group(self) -> str:
        return self.relpath.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def expect(self, command: str) -> tuple[str, frozenset[str]]:
        """(``"keep"`` or ``"quarantine"``, acceptable reasons) for ``command``."""
        if command not in GROUP_COMMANDS[self.group]:
            raise ValueError(f"{self.relpath}: the {self.group} group is not read by {command}")
        return self.per_command.get(command, (self.expected, self.reasons))


def _q(*reasons: str) -> tuple[str, frozenset[str]]:
    return QUARANTINE, frozenset(reasons)


# --------------------------------------------------------------------------------------------
# file makers
# --------------------------------------------------------------------------------------------
def _sound(seconds: float = SECONDS, channels: int = 1) -> np.ndarray:
    n = int(SR * seconds)
    return click_audio(n, [int(f * n) for f in (0.1, 0.3, 0.55, 0.8)], channels=channels)


def _video(path: Path, *, n: int = int(FPS * SECONDS), size: tuple[int, int] = (48, 64),
           fps: float = FPS, codec: str = "h264", audio: np.ndarray | None = None,
           **kw: Any) -> None:  # fmt: skip
    h, w = size
    if h * w > 1 << 20:  # huge: flat grey with a moving block (index frames take seconds here)
        frames = np.full((n, h, w, 3), 90, np.uint8)
        for i in range(n):
            frames[i, 64 * i : 64 * i + 256, 128 * i : 128 * i + 256] = 230
    else:
        frames = index_frames(n, h, w)
    write_video(path, frames, fps=fps, codec=codec, audio=audio, sample_rate=SR, **kw)


def _wav_bytes(x: np.ndarray) -> bytes:
    """16-bit PCM WAV of float ``(channels, samples)``, through the stdlib ``wave`` module."""
    import io

    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").T.copy()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _png_bytes(img: np.ndarray, ext: str = ".png") -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError(f"cv2 could not encode {ext}")
    return buf.tobytes()


def _png_huge_header(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR claiming ``width`` x ``height`` (CRC fixed, so only the size lies)."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


def _avi_cut_at_chunk(data: bytes, keep_fraction: float) -> bytes:
    """An AVI cut after a whole ``movi`` chunk, its RIFF and ``movi`` sizes patched to the new
    length: the container looks complete, but its headers (``avih``/``strh``) still claim the
    original frame count."""
    movi = data.find(b"movi")
    assert movi > 8 and data[movi - 8 : movi - 4] == b"LIST", "no LIST movi chunk"
    pos = movi + 4
    end = movi - 4 + 4 + int.from_bytes(data[movi - 4 : movi], "little")
    bounds = []
    while pos + 8 <= end:
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
        bounds.append(pos)
    cut = bounds[max(1, int(len(bounds) * keep_fraction)) - 1]
    out = bytearray(data[:cut])
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    out[movi - 4 : movi] = (cut - movi).to_bytes(4, "little")
    return bytes(out)


def _overwrite_middle(data: bytes, start: float, length: int, seed: int) -> bytes:
    """``data`` with ``length`` random bytes written at ``start`` (a fraction) of the file."""
    out = bytearray(data)
    at = int(len(data) * start)
    out[at : at + length] = np.random.default_rng(seed).bytes(length)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------
def build_bad_corpus(folder: str | os.PathLike[str]) -> list[Case]:
    """Write the corpus into ``folder`` (created; must be empty or absent); return its cases,
    sorted by path. About 2 s on one core (mostly the 4096x4096 clip); about 1 MB."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root}: the bad-media corpus needs an empty folder")
    cases: list[Case] = []
    tmp = root / ".work"  # hidden: no prep reads it
    tmp.mkdir()

    def put(rel: str, data: bytes, kind: str, expected: str, reasons: tuple[str, ...] = (),
            facts: dict[str, Any] | None = None,
            per: dict[str, tuple[str, frozenset[str]]] | None = None) -> None:  # fmt: skip
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        cases.append(Case(rel, kind, expected, frozenset(reasons), _per(per or {}),
                          facts=facts or {}))  # fmt: skip

    def special(rel: str, how: str, kind: str, reasons: tuple[str, ...], target: str = "") -> None:
        case = Case(rel, kind, QUARANTINE if how != "link" else KEEP, frozenset(reasons),
                    special=how, target=target)  # fmt: skip
        materialize(case, root, root / rel)
        cases.append(case)

    def odd_entries(fifo: str, folder: str, dangling: str, loop: str) -> None:
        """A FIFO, a folder, a dangling link and a link loop named like media files."""
        ext = Path(fifo).suffix
        special(fifo, "fifo", f"a FIFO named {ext} (must not hang)", ("not-a-file",))
        special(folder, "dir", f"a directory named {ext}", ("not-a-file",))
        special(dangling, "dangling", "dangling symlink", ("broken-link",))
        special(loop, "loop", "symlink loop a -> b -> a", ("link-loop",))

    # ---- sources, written once --------------------------------------------------------------
    _video(tmp / "good.mp4", audio=_sound(), max_b_frames=2, gop=12)
    _video(tmp / "good.avi", codec="mpeg4", audio=_sound(), gop=12)
    _video(tmp / "mute.mp4")
    _video(tmp / "silent.mp4", audio=np.zeros((1, int(SR * SECONDS)), np.float32))
    _video(tmp / "vfr.mp4", n=30, audio=_sound(), pts_s=[round(i * 0.05 + (i % 3) * 0.011, 4)
                                                        for i in range(30)])  # fmt: skip
    _video(tmp / "odd.mkv", size=(61, 97), pix_fmt="yuv444p", audio=_sound(), audio_codec="aac")
    _video(tmp / "huge.avi", n=2, fps=1, size=(4096, 4096), codec="mpeg4", qscale=31,
           audio=_sound(), gop=12)  # fmt: skip
    _video(tmp / "one_frame.mp4", n=1)
    write_audio(tmp / "audio_only.m4a", _sound(), sample_rate=SR)
    write_audio(tmp / "audio_only.mkv", _sound(), sample_rate=SR, audio_codec="aac")
    good = {k: (tmp / k).read_bytes() for k in ("good.mp4", "good.avi")}
    wav = _wav_bytes(_sound())
    png = _png_bytes(index_frames(1, 48, 64)[0][..., ::-1])
    jpg = _png_bytes(index_frames(1, 48, 64)[0][..., ::-1], ".jpg")
    text = b"this is a text file, not a video\n" * 20
    garbage = np.random.default_rng(11).bytes(30000)

    # ---- video/ -----------------------------------------------------------------------------
    av = "audioset"
    no_sound = {av: _q("no-audio-stream")}
    put("video/good.mp4", good["good.mp4"], "good h264/aac mp4", KEEP)
    put("video/good.avi", good["good.avi"], "good mpeg4/mp3 avi", KEEP)
    put("video/Ünïcödé 日本/clip ü 1.mp4", good["good.mp4"], "non-ASCII folder and file name",
        KEEP)  # fmt: skip
    put("video/with spaces/a clip (1) [x] 'q'.avi", good["good.avi"], "spaces and quotes in path",
        KEEP)  # fmt: skip
    put("video/empty.mp4", b"", "zero bytes", QUARANTINE, ("empty-file",))
    put("video/cut_mid_gop.mp4", good["good.mp4"][: len(good["good.mp4"]) * 55 // 100],
        "mp4 cut mid-file (moov lost)", QUARANTINE, ("truncated",))  # fmt: skip
    put("video/cut_mid_gop.avi", good["good.avi"][: len(good["good.avi"]) * 45 // 100],
        "avi cut mid-GOP", QUARANTINE, ("truncated",))  # fmt: skip
    put("video/header_claims_more.avi", _avi_cut_at_chunk(good["good.avi"], 0.5),
        "avi cut at a chunk, sizes patched: header claims more frames than decode",
        QUARANTINE, ("truncated",))  # fmt: skip
    put("video/wav_named.mp4", wav, "a wav named .mp4", QUARANTINE, ("no-video-stream",))
    put("video/png_named.avi", png, "a png named .avi", QUARANTINE, ("still-image",))
    put("video/text_named.mp4", text, "a text file named .mp4", QUARANTINE, ("not-media",))
    put("video/garbage.mkv", garbage, "random bytes", QUARANTINE, ("not-media",))
    put("video/ebml_only.webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 200, "EBML magic then zeros",
        QUARANTINE, ("not-media",))  # fmt: skip
    put("video/audio_only.mp4", (tmp / "audio_only.m4a").read_bytes(), "audio-only mp4",
        QUARANTINE, ("no-video-stream",))  # fmt: skip
    put("video/audio_only.mkv", (tmp / "audio_only.mkv").read_bytes(), "audio-only mkv",
        QUARANTINE, ("no-video-stream",))  # fmt: skip
    put("video/no_audio.mp4", (tmp / "mute.mp4").read_bytes(), "video without audio", KEEP,
        per=no_sound)  # fmt: skip
    put("video/silent_audio.mp4", (tmp / "silent.mp4").read_bytes(), "digitally silent audio",
        KEEP, per={av: _q("silent-audio")})  # fmt: skip
    put("video/vfr.mp4", (tmp / "vfr.mp4").read_bytes(), "variable frame rate", KEEP)
    put("video/odd_97x61.mkv", (tmp / "odd.mkv").read_bytes(), "odd dimensions 97x61", KEEP)
    put("video/huge_4096x4096.avi", (tmp / "huge.avi").read_bytes(), "4096x4096, 2 frames", KEEP)
    put("video/one_frame.mp4", (tmp / "one_frame.mp4").read_bytes(), "a single frame", KEEP,
        per=no_sound)  # fmt: skip
    put("video/corrupt_mid.mp4", _overwrite_middle(good["good.mp4"], 0.45, 600, 1),
        "h264 mp4, 600 random bytes mid-stream", QUARANTINE, ("corrupt",))  # fmt: skip
    # The MPEG-4 decoder conceals this damage (logs "Error at MB", paints one frame over): the
    # file is kept with the damage recorded (decode_warnings, damaged_frames); only
    # --strict-decode quarantines it (tests/test_frame_folder.py checks both).
    put("video/corrupt_mid.avi", _overwrite_middle(good["good.avi"], 0.5, 600, 2),
        "mpeg4 avi, 600 random bytes mid-stream (concealed)", KEEP)  # fmt: skip
    odd_entries("video/fifo.mp4", "video/folder.mp4", "video/dangling.mp4", "video/loop.mp4")
    special("video/linked.mp4", "link", "symlink to a good file", (), target="video/good.mp4")
    # What a kept video's manifest row must say (frames counted by decoding, not headers).
    std: dict[str, Any] = {"num_frames": 48, "width": 64, "height": 48}
    extra: dict[str, dict[str, Any]] = {
        "video/no_audio.mp4": {"has_audio": False},
        "video/one_frame.mp4": {"num_frames": 1, "has_audio": False},
        "video/silent_audio.mp4": {"has_audio": True, "audible": False},
        "video/vfr.mp4": {"num_frames": 30},
        "video/odd_97x61.mkv": {"width": 97, "height": 61},
        "video/huge_4096x4096.avi": {"num_frames": 2, "width": 4096, "height": 4096},
    }
    for c in cases:
        if c.group == "video" and c.expected == KEEP:
            c.facts.update(std)
            c.facts.update(extra.get(c.relpath, {"has_audio": True, "audible": True}))

    # ---- audio/<label>/ ---------------------------------------------------------------------
    silent_wav = _wav_bytes(np.zeros((1, SR), np.float32))
    bad_fmt = bytearray(wav)
    i = bad_fmt.find(b"fmt ") + 8
    bad_fmt[i : i + 16] = struct.pack("<HHIIHH", 0x7777, 0, 0, 0, 0, 0)  # format, channels, rate
    huge = bytearray(wav)
    huge[4:8] = (0x7FFFFFF0).to_bytes(4, "little")
    d = huge.find(b"data")
    huge[d + 4 : d + 8] = (0x7FFFFFC0).to_bytes(4, "little")
    m4a = (tmp / "audio_only.m4a").read_bytes()
    loud = {"sample_rate": SR, "channels": 1, "audible": True}
    put("audio/dog/good.wav", wav, "good 16-bit wav", KEEP, facts={**loud, "duration_s": 2.0})
    put("audio/dog/good.m4a", m4a, "good aac m4a", KEEP, facts=loud)
    put("audio/rain/ünï cødé 雨.wav", wav, "non-ASCII and spaces in the name", KEEP,
        facts={**loud, "duration_s": 2.0})  # fmt: skip
    put("audio/rain/silent.wav", silent_wav, "digitally silent wav (kept, audible false)", KEEP,
        facts={**loud, "audible": False, "duration_s": 1.0})  # fmt: skip
    put("audio/dog/empty.wav", b"", "zero bytes", QUARANTINE, ("empty-file",))
    put("audio/dog/bad_header.wav", bytes(bad_fmt), "corrupt fmt chunk", QUARANTINE,
        ("not-media",))  # fmt: skip
    put("audio/dog/huge_claim.wav", bytes(huge), "header claims 2 GB", QUARANTINE, ("truncated",))
    put("audio/dog/cut.m4a", m4a[: len(m4a) // 2], "m4a cut mid-file", QUARANTINE, ("truncated",))
    put("audio/rain/video_no_audio.m4a", (tmp / "mute.mp4").read_bytes(),
        "video without audio named .m4a", QUARANTINE, ("no-audio-stream",))  # fmt: skip
    put("audio/rain/png_named.wav", png, "a png named .wav", QUARANTINE, ("no-audio-stream",))
    put("audio/rain/text_named.wav", text, "a text file named .wav", QUARANTINE, ("not-media",))
    put("audio/rain/garbage.ogg", garbage, "random bytes", QUARANTINE, ("not-media",))
    odd_entries(
        "audio/rain/fifo.wav",
        "audio/dog/folder.wav",
        "audio/dog/dangling.wav",
        "audio/rain/loop.wav",
    )

    # ---- image/<label>/ ---------------------------------------------------------------------
    import cv2

    deep = _png_bytes(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    back = cv2.imdecode(np.frombuffer(deep, np.uint8), cv2.IMREAD_UNCHANGED)
    assert back is not None and back.dtype == np.uint16
    put("image/cat/good.png", png, "good png", KEEP)
    put("image/cat/good.jpg", jpg, "good jpeg", KEEP)
    put("image/cat/ünï cødé 猫.png", png, "non-ASCII and spaces in the name", KEEP)
    put("image/cat/empty.png", b"", "zero bytes", QUARANTINE, ("empty",))
    put("image/cat/cut.png", png[: len(png) * 6 // 10], "png cut mid-file", QUARANTINE,
        ("truncated",))  # fmt: skip
    put("image/dog/cut.jpg", jpg[: len(jpg) * 6 // 10], "jpeg cut mid-file", QUARANTINE,
        ("truncated",))  # fmt: skip
    put("image/dog/huge_claim.png", _png_huge_header(png, 60000, 60000),
        "png header claims 60000x60000", QUARANTINE, ("unreadable",))  # fmt: skip
    put("image/dog/text_named.png", text, "a text file named .png", QUARANTINE, ("unreadable",))
    put("image/dog/wav_named.png", wav, "a wav named .png", QUARANTINE, ("unreadable",))
    put("image/dog/deep16.png", deep, "16-bit png", QUARANTINE, ("not-8-bit",))
    odd_entries(
        "image/cat/fifo.png", "image/dog/folder.png", "image/dog/dangling.png", "image/cat/loop.jpg"
    )

    if os.geteuid() != 0:  # root reads a mode-000 file anyway: see skipped_kinds()
        for rel, data in (("video/no_read.mp4", good["good.mp4"]), ("audio/dog/no_read.wav", wav),
                          ("image/cat/no_read.png", png)):  # fmt: skip
            put(rel, data, "no read permission (mode 000)", QUARANTINE, ("permission-denied",))
            (root / rel).chmod(0)
    shutil.rmtree(tmp)
    return sorted(cases, key=lambda c: c.relpath)


def _per(per: dict[str, tuple[str, frozenset[str]]]) -> dict[str, tuple[str, frozenset[str]]]:
    for command in per:
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
    return dict(per)


def materialize(case: Case, corpus: Path, dst: Path) -> None:
    """Make ``case`` at ``dst``: copy a regular file from ``corpus``, or make the special entry
    again (a loop through a sibling ``dst.name + ".lnk"``, which no prep takes for media)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if case.special == "":
        src = corpus / case.relpath
        mode = os.stat(src).st_mode & 0o777
        if not mode & 0o400:  # the no-read-permission case (made only when not root)
            os.chmod(src, mode | 0o400)
            shutil.copyfile(src, dst)
            os.chmod(src, mode)
        else:
            shutil.copyfile(src, dst)
        os.chmod(dst, mode)
    elif case.special == "fifo":
        os.mkfifo(dst)
    elif case.special == "dir":
        dst.mkdir()
    elif case.special == "dangling":
        os.symlink("no-such-target.bin", dst)
    elif case.special == "loop":
        other = dst.name + ".lnk"
        os.symlink(other, dst)
        os.symlink(dst.name, dst.parent / other)
    elif case.special == "link":
        os.symlink((corpus / case.target).resolve(), dst)
    else:
        raise ValueError(f"{case.relpath}: unknown special {case.special!r}")


def skipped_kinds() -> list[tuple[str, str]]:
    """(kind, why) of the kinds :func:`build_bad_corpus` could not make here."""
    if os.geteuid() == 0:
        return [
            (
                "no read permission (mode 000)",
                "running as root: root reads a mode-000 file, so the case cannot exist",
            )
        ]
    return []


# --------------------------------------------------------------------------------------------
# running every prep command on the corpus
# --------------------------------------------------------------------------------------------
#: (manifest file, its path column) of each command; quarantine.csv is the same for all.
MANIFESTS = {
    "folder": ("videos.jsonl", "video"),
    "ucf101": ("videos.jsonl", "video"),
    "audioset": ("videos.jsonl", "video"),
    "esc50": ("clips.jsonl", "path"),
    "audio-folder": ("clips.jsonl", "path"),
    "images": ("images.jsonl", "path"),
}
TIMEOUT_PER_FILE_S = 30  # --timeout of the preps that take one


@dataclass
class Layout:
    """A command's dataset made from the corpus: its ``argv`` (without ``--out``) and the path
    by which its manifests name each case (``paths[case.relpath]``)."""

    command: str
    argv: list[str]
    paths: dict[str, str]
    cases: list[Case]


def make_layout(command: str, corpus: Path, cases: list[Case], dst: Path) -> Layout:
    """Lay the corpus out as ``command`` reads it: the folder preps read the corpus in place;
    ucf101, audioset and esc50 get their published layouts in ``dst`` (files copied and
    renamed, special entries made again, the split / segment / meta lists written)."""
    mine = [c for c in cases if command in GROUP_COMMANDS[c.group]]
    one = ["--workers", "1"]
    timeout = ["--timeout", str(TIMEOUT_PER_FILE_S)]
    if command in ("folder", "audio-folder", "images"):
        group = {"folder": "video", "audio-folder": "audio", "images": "image"}[command]
        paths = {c.relpath: c.relpath.split("/", 1)[1] for c in mine}
        argv = [command, str(corpus / group), *one]
        if command == "audio-folder":
            argv += ["--pattern", "{label:seg}/{_:path}", *timeout]
        elif command == "folder":
            argv += timeout
        return Layout(command, argv, paths, mine)
    dst.mkdir(parents=True, exist_ok=True)
    paths = {}
    if command == "ucf101":
        classes = ("Alpha", "Beta")
        train, test = [], []
        for i, c in enumerate(mine):
            cls, grp, clip = classes[i % 2], i // 2 % 25 + 1, i // 50 + 1
            rel = f"{cls}/v_{cls}_g{grp:02d}_c{clip:02d}.avi"
            materialize(c, corpus, dst / "UCF-101" / rel)
            paths[c.relpath] = rel
            if grp <= 7:  # split 1 tests on groups 1-7
                test.append(rel)
            else:
                train.append(f"{rel} {classes.index(cls) + 1}")
        lists = dst / "ucfTrainTestlist"
        lists.mkdir()
        (lists / "classInd.txt").write_text("".join(f"{k} {n}\r\n" for k, n in
                                                    enumerate(classes, 1)))  # fmt: skip
        (lists / "trainlist01.txt").write_text("".join(f"{t}\r\n" for t in train))
        (lists / "testlist01.txt").write_text("".join(f"{t}\r\n" for t in test))
        argv = ["ucf101", str(dst / "UCF-101"), "--splits", str(lists), *one, *timeout]
        return Layout(command, argv, paths, mine)
    if command == "audioset":
        rows = []
        for i, c in enumerate(mine):
            ytid = f"bad{i:08d}"  # 11 characters, as YouTube ids
            folder = c.relpath.split("/", 1)[1].rpartition("/")[0]  # keep odd folder names
            rel = f"{folder + '/' if folder else ''}{ytid}_30.000{c.suffix}"
            materialize(c, corpus, dst / "videos" / rel)
            paths[c.relpath] = rel
            rows.append(f'{ytid}, 30.000, 40.000, "/m/04rlf"\n')
        csv_path = dst / "balanced_train_segments.csv"
        csv_path.write_text(
            "# Segments csv created by tests/badmedia.py\n"
            f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels=1, "
            f"num_positive_labels={len(rows)}\n"
            "# YTID, start_seconds, end_seconds, positive_labels\n" + "".join(rows)
        )
        argv = ["audioset", str(csv_path), "--videos", str(dst / "videos"), *one, *timeout]
        return Layout(command, argv, paths, mine)
    if command == "esc50":
        esc = dst / "ESC-50-master"
        (esc / "meta").mkdir(parents=True)
        labels = sorted({c.relpath.split("/")[1] for c in mine})
        lines = [",".join(("filename", "fold", "target", "category", "esc10", "src_file",
                           "take"))]  # fmt: skip
        for i, c in enumerate(mine):
            label = c.relpath.split("/")[1]
            materialize(c, corpus, esc / "audio" / c.name)
            paths[c.relpath] = f"audio/{c.name}"
            name = f'"{c.name}"' if "," in c.name or '"' in c.name else c.name
            lines.append(f"{name},{i % 5 + 1},{labels.index(label)},{label},False,{i},A")
        if len({c.name for c in mine}) != len(mine):
            raise ValueError("esc50 layout: audio file names must be unique across labels")
        (esc / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
        return Layout(command, ["esc50", str(esc), *one, *timeout], paths, mine)
    raise ValueError(f"unknown command {command!r}")


class PrepHang(BaseException):
    """A prep ran past its deadline. Not an ``Exception``: the preps' per-file ``except
    Exception`` (one bad file must not stop a run) would record it as that file's error and go
    on, hiding the hang."""


def run_cli(argv: list[str], timeout_s: float) -> int:
    """``avssl-prep ARGV`` in this process with a deadline: SIGALRM raises :class:`PrepHang` in
    the run (a blocked open() returns EINTR and the handler's exception propagates); should even
    that fail, faulthandler ends the process with every thread's stack ``timeout_s`` later,
    so a hang fails loudly instead of stalling CI."""
    import faulthandler
    import signal
    import sys

    from data_prep.cli import main

    def _alarm(signum: int, frame: Any) -> None:
        raise PrepHang(f"avssl-prep {' '.join(argv[:1])} ran past {timeout_s:g} s (a hang?)")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    faulthandler.dump_traceback_later(2 * timeout_s, exit=True, file=sys.__stderr__ or 2)
    try:
        return main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """How a command's run compares with the cases' expectations."""

    command: str
    tried: int = 0
    bad: int = 0  # cases expected in quarantine
    quarantined_right: int = 0  # ... that are, with an expected reason
    good: int = 0  # cases expected in the manifest
    good_kept: int = 0  # ... that are, with the expected fields
    data_lost: int = 0  # good cases missing from the manifest
    problems: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # case relpath -> reason it got

    @property
    def ok(self) -> bool:
        return not self.problems


def read_results(command: str, out: Path) -> tuple[dict[str, dict[str, Any]],
                                                   dict[str, tuple[str, str]]]:  # fmt: skip
    """(manifest rows by path, quarantine (reason, message) by path) of a finished run."""
    import csv
    import json

    name, column = MANIFESTS[command]
    rows: dict[str, dict[str, Any]] = {}
    for line in (out / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row[column] in rows:
                raise ValueError(f"{out / name}: {row[column]} is listed twice")
            rows[row[column]] = row
    with open(out / "quarantine.csv", encoding="utf-8", newline="") as f:
        bad = {r["path"]: (r["reason"], r["message"]) for r in csv.DictReader(f)}
    return rows, bad


def compare(layout: Layout, out: Path) -> Outcome:
    """Every case against ``out``: a bad one in quarantine.csv with an expected reason and not
    in the manifest, a good one in the manifest with its facts and not in quarantine; nothing
    else in either file; no listed file reported missing."""
    import csv

    rows, bad = read_results(layout.command, out)
    res = Outcome(layout.command, tried=len(layout.cases))
    for c in layout.cases:
        path = layout.paths[c.relpath]
        want, reasons = c.expect(layout.command)
        got = bad.get(path)
        if got:
            res.reasons[c.relpath] = got[0]
        if want == KEEP:
            res.good += 1
            if path not in rows:
                res.data_lost += 1
                why = f"quarantined as {got[0]}: {got[1]}" if got else "in neither file"
                res.problems.append(f"{path} ({c.kind}): good file lost, {why}")
                continue
            wrong = {k: (rows[path].get(k), v) for k, v in c.facts.items()
                     if rows[path].get(k) != v}  # fmt: skip
            if wrong:
                res.problems.append(f"{path} ({c.kind}): kept, but (got, expected) {wrong}")
                continue
            res.good_kept += 1
        else:
            res.bad += 1
            if path in rows:
                res.problems.append(f"{path} ({c.kind}): bad file in the manifest")
            elif got is None:
                res.problems.append(f"{path} ({c.kind}): bad file in neither file (silently "
                                    "skipped)")  # fmt: skip
            elif got[0] not in reasons:
                res.problems.append(f"{path} ({c.kind}): reason {got[0]!r}, expected one of "
                                    f"{sorted(reasons)} ({got[1]})")  # fmt: skip
            else:
                res.quarantined_right += 1
    known = set(layout.paths.values())
    for path in sorted((set(rows) | set(bad)) - known):
        res.problems.append(f"{path}: in the output but not a case of the corpus")
    missing = out / "missing.csv"
    if missing.is_file():
        with open(missing, encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                res.problems.append(f"{r['path']}: reported missing, yet it is on disk")
    return res


def outputs(out: Path) -> dict[str, bytes]:
    """The bytes of every manifest and report a run wrote (records and caches aside)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.suffix in (".jsonl", ".csv") or p.name == "prep.json"
    }
