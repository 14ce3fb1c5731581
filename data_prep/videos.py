"""The video prep engine behind ``avssl-prep ucf101``, ``folder`` and ``audioset``: a
resumable JSON record per video in ``OUT/records/``, then the manifests (docs/manifests.md).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/videos.py".
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from avssl import errors
from avssl.config import config_from_dict
from avssl.data import samplers
from avssl.data.decode import check_source, media_identity
from avssl.data.frame_folder import list_frames
from avssl.data.manifest import atomic_write_text, remove_stale_temps
from avssl.data.motion import Motion, load_motion, motion_energy, save_motion

from . import shards
from .av_prep import PairConfig, mine_pairs
from .parallel import default_workers, imap_progress
from .scan import Entry, Scan
from .video_manifests import FORMAT_VERSION, TASKS, PrepResult, assemble, record_name

#: Bump when a change alters what a record holds for the same input and settings (history:
#: docs/design/prep_tracking_cli.md, "Constants").
RECORD_VERSION = 4

# Below these energies a window is "still" whatever the video's own statistics say (measured on
# ../shared/data: a static shot's coarse flow is ~1e-4 frame widths per frame).
DEFAULT_FLOOR = {"flow": 5e-4, "diff": 1e-3}


@dataclass(frozen=True)
class MineConfig:
    """How temporal-order samples are mined. Frame counts are at the video's own frame rate
    (UCF-101: 25 fps); the paper values are for ~30 fps video."""

    seed: int = 0
    motion: str = "flow"  # "flow" (coarse Farneback) or "diff" (frame difference, ~3x faster)
    motion_width: int = 40  # analysis width in px (UCF-101: 320 -> 40)
    smooth: int = 9  # moving-average length (frames) before thresholding
    quantile: float = 0.5  # a window is above this quantile of the video's own smoothed energy
    floor: float | None = None  # ... and above this absolute energy (None: DEFAULT_FLOOR)
    merge_gap: int = 15  # runs apart by <= this many low frames are one window (design notes)
    dup_threshold: float = 0.01  # frames whose thumbnails differ by < 1% grey are duplicates
    # Shuffle & Learn (Misra et al. 2016): ~900k tuples from ~9.5k UCF-101 videos = ~96 each.
    tuples_per_video: int = 96
    positive_ratio: float = 0.25
    tau_max: int = 60
    tau_min: int = 15
    # Odd-One-Out (Fernando et al. 2017): N = 6 subsequences; the length is our choice.
    questions_per_video: int = 32
    o3n_subsequences: int = 6
    o3n_length: int = 6
    o3n_max_stride: int = 4
    # Arrow of time: forward vs reversed clips.
    clips_per_video: int = 32
    arrow_length: int = 8
    arrow_max_stride: int = 2

    def motion_floor(self) -> float:
        return DEFAULT_FLOOR[self.motion] if self.floor is None else self.floor

    def key(self) -> str:
        return _hash(json.dumps([asdict(self), RECORD_VERSION], sort_keys=True))


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (~1 GB/s): names the content, whatever its path or mtime.
    A frame folder's is over its frame images' names and bytes, in frame order."""
    h = hashlib.blake2b(digest_size=16)
    if not path.is_dir():
        _hash_file(h, path, chunk)
        return h.hexdigest()
    for name in list_frames(path).names:
        h.update(name.encode() + b"\0")
        _hash_file(h, path / name, chunk)
    return h.hexdigest()


def _hash_file(h: Any, path: Path, chunk: int) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


@dataclass(frozen=True)
class ProbeOptions:
    """How every video is probed: ``strict_decode`` quarantines damage the decoder conceals
    (else it is recorded per video and samplers avoid the frames); ``frame_rate`` is the rate of
    frame folders without a sidecar (None: avssl.data.frame_folder.DEFAULT_FPS)."""

    strict_decode: bool = False
    frame_rate: float | None = None


@dataclass(frozen=True)
class _Job:
    root: str
    out: str
    entry: Entry
    config: MineConfig | PairConfig  # temporal-order mining, or audio-visual pairs
    cache_dir: str | None  # MineConfig: the --transcode cache; PairConfig: the --cache
    timeout_s: float
    probe: ProbeOptions = field(default_factory=ProbeOptions)


def _settings_key(job: _Job) -> str:
    return _hash(json.dumps([job.config.key(), job.cache_dir, asdict(job.probe)], sort_keys=True))


def _source_stat(src: Path) -> tuple[int, int]:
    """(size, mtime) of a source -- a frame folder's are its images' total and newest -- or of
    the link itself when it is dangling or loops: such an entry is quarantined, and its record
    reused while the link stays as it is."""
    try:
        return media_identity(src)
    except OSError:
        st = src.lstat()
    return st.st_size, st.st_mtime_ns


def _is_current(rec_path: Path, src: Path, job: _Job) -> bool:
    try:
        rec = json.loads(rec_path.read_text())
        size, mtime = _source_stat(src)
        return bool(
            rec["settings"] == _settings_key(job)
            and rec["size_bytes"] == size
            and rec["mtime_ns"] == mtime
            and rec.get("reason") != "error"  # an unexpected failure is retried, never reused
            and (rec["status"] != "ok" or _cache_present(job, rec) and _same_entry(rec, job.entry))
            # a probe from before the reference chains (issue 25) is made again, so that loaders
            # get them from the manifest (reads without them are exact, only slower)
            and (rec["status"] != "ok" or "frame_refs" in rec.get("info", {}))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _same_entry(rec: dict[str, Any], e: Entry) -> bool:
    """Whether a kept video's record was made for this entry: the same class, split roles and
    dataset fields (a scan that changed them -- the built-in set's temporal prep once saw no
    class and no split -- re-makes the record, its motion cache reused)."""
    v = rec["video"]
    want = {"class_name": e.class_name, "class_id": e.class_id, "group": e.group,
            "splits": e.splits, **e.meta}  # fmt: skip
    return all(v.get(k) == x for k, x in json.loads(json.dumps(want)).items())


def _cache_present(job: _Job, rec: dict[str, Any]) -> bool:
    if job.cache_dir is None:
        return True
    if "pairs" in rec:
        files = [rec["pairs"].get("cache_frames"), rec["pairs"].get("cache_audio")]
    else:
        files = [rec["video"].get("cache_video")]
    return all(f and (Path(job.cache_dir) / f).is_file() for f in files)


def mine_samples(
    motion: Motion, cfg: MineConfig, relpath: str, avoid: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Windows and the three tasks' samples for one video: deterministic in (seed, relpath).
    Frames in ``avoid`` (concealed decode damage) are cut out of the windows, so never drawn."""
    windows = samplers.high_motion_windows(
        motion.energy,
        smooth=cfg.smooth,
        quantile=cfg.quantile,
        floor=cfg.motion_floor(),
        merge_gap=cfg.merge_gap,
    )
    if avoid:
        windows = samplers.exclude_frames(windows, avoid)
    # One generator per task, so changing one task's count leaves the others' samples as they were.
    path_key = int(_hash(relpath), 16)
    rngs = [np.random.default_rng([cfg.seed, path_key, t]) for t in range(len(TASKS))]
    th = motion.thumbs
    tuples = samplers.shuffle_learn_tuples(
        windows, th, cfg.tuples_per_video, rngs[0], positive_ratio=cfg.positive_ratio,
        tau_max=cfg.tau_max, tau_min=cfg.tau_min, dup_threshold=cfg.dup_threshold,
    )  # fmt: skip
    questions = samplers.odd_one_out_questions(
        windows, th, cfg.questions_per_video, rngs[1], num_subsequences=cfg.o3n_subsequences,
        length=cfg.o3n_length, max_stride=cfg.o3n_max_stride, dup_threshold=cfg.dup_threshold,
    )  # fmt: skip
    clips = samplers.arrow_of_time_clips(
        windows, th, cfg.clips_per_video, rngs[2], length=cfg.arrow_length,
        max_stride=cfg.arrow_max_stride, dup_threshold=cfg.dup_threshold,
    )  # fmt: skip
    return {
        "windows": [list(w) for w in windows],
        "shuffle_learn": [
            {"frames": list(t.frames), "target": t.label, "kind": t.kind, "five": list(t.five),
             "window": list(t.window)}
            for t in tuples
        ],
        "odd_one_out": [
            {"subsequences": [list(s) for s in q.subsequences], "target": q.odd,
             "windows": [list(w) for w in q.windows]}
            for q in questions
        ],
        "arrow_of_time": [
            {"frames": list(c.frames), "target": c.label, "reversed": c.reversed,
             "window": list(c.window)}
            for c in clips
        ],
    }  # fmt: skip


def _process(job: _Job) -> tuple[str, str]:
    """Probe, mine (and transcode) one video; commit its record. Returns (relpath, status).

    Called only for videos whose record is not current (prep_videos checks before dispatch)."""
    from avssl.data.decode import probe

    e = job.entry
    src = Path(job.root) / e.relpath
    rec_path = Path(job.out) / "records" / record_name(e.relpath)
    rec: dict[str, Any] = {"relpath": e.relpath, "settings": _settings_key(job)}
    try:
        rec["size_bytes"], rec["mtime_ns"] = _source_stat(src)
        # Before anything opens it: a FIFO would block the fingerprint's read forever (a
        # frame folder passes; list_frames then says what is wrong with it, if anything).
        check_source(src)
        rec["fingerprint"] = file_fingerprint(src)
        info = probe(src, timeout_s=job.timeout_s, conceal=not job.probe.strict_decode,
                     fps=job.probe.frame_rate)  # fmt: skip
        check_video(src, info)
        cfg = job.config
        if isinstance(cfg, PairConfig):
            cache = Path(job.cache_dir) if job.cache_dir is not None else None
            pairs = mine_pairs(src, e, info, cfg, cache)
            video = _video_row(e, info, rec["fingerprint"])
            rec.update(status="ok", video=video, info=info.to_dict(), pairs=pairs)
            atomic_write_text(rec_path, json.dumps(rec, separators=(",", ":")) + "\n")
            return e.relpath, "ok"
        mkey = f"{rec['fingerprint']}-{cfg.motion}-{cfg.motion_width}"
        mpath = Path(job.out) / "motion" / f"{mkey}.npz"
        motion = load_motion(mpath, key=mkey)
        if motion is None:
            motion = motion_energy(
                src, method=cfg.motion, width=cfg.motion_width, info=info,  # type: ignore[arg-type]
                timeout_s=job.timeout_s,
            )  # fmt: skip
            save_motion(mpath, motion, key=mkey)
        video = _video_row(e, info, rec["fingerprint"])
        video["motion"] = cfg.motion
        video["motion_mean"] = round(float(motion.energy.mean()), 7) if len(motion.energy) else 0.0
        if job.cache_dir is not None:
            from .transcode import transcode_video

            stem = Path(e.relpath) if src.is_dir() else Path(e.relpath).with_suffix("")
            tdir = Path(job.cache_dir)
            video.update(
                transcode_video(src, tdir / f"{stem}.mp4", info=info,
                                dst_audio=tdir / f"{stem}.wav" if info.audio else None)
            )  # fmt: skip
            for k in ("cache_video", "cache_audio"):
                if video.get(k):
                    video[k] = Path(video[k]).relative_to(tdir).as_posix()
        samples = mine_samples(motion, cfg, e.relpath, info.damaged_frames)
        video["high_motion_frames"] = sum(b - a for a, b in samples["windows"])
        rec.update(status="ok", video=video, info=info.to_dict(), **samples)
    except errors.MediaError as err:
        rec.update(status="quarantined", reason=err.reason, message=str(err))
    except Exception as err:  # noqa: BLE001 - one bad file must not stop a 13k-file run
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        rec.update(status="quarantined", reason="error", message=f"{src}: {last}")
    atomic_write_text(rec_path, json.dumps(rec, separators=(",", ":")) + "\n")
    return e.relpath, rec["status"]


#: Demuxers FFmpeg opens a single image with (a one-frame "video": StillImageError), besides
#: every ``*_pipe`` one (png_pipe, jpeg_pipe, ...). Animated GIF ("gif") is a video.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
#: Codecs of animations and frame folders: with a single frame, a still picture.
_IMAGE_CODECS = frozenset({"gif", "apng", "png", "webp", "mjpeg", "bmp", "tiff"})
#: A header may claim this many frames more than decode (rounding of a B-frame delay; every
#: real and generated test clip decodes exactly its header's count). More means frames are gone.
HEADER_SLACK_FRAMES = 2
HEADER_SLACK_SHARE = 0.05


def check_video(src: Path, info: Any) -> None:
    """Refuse what probes as a video but is none, or lost frames: a single image opened as a
    one-frame video (:class:`~avssl.errors.StillImageError`), and a container whose header
    declares more frames than decode (:class:`~avssl.errors.TruncatedMediaError`: an AVI cut
    at a chunk boundary with its sizes patched looks whole to every other check)."""
    fmt = str(info.container).split(",")[0]
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        raise errors.StillImageError(
            str(src), f"a single image ({fmt}, {info.width}x{info.height}), not a video"
        )
    if info.num_frames == 1 and info.codec in _IMAGE_CODECS:
        raise errors.StillImageError(
            str(src), f"a single picture ({fmt}/{info.codec}, {info.width}x{info.height}): an "
            "animation with one frame is not a video",
        )  # fmt: skip
    # Held frames (AVI index entries without data) are time, not lost frames.
    shown = info.num_frames + info.held_frames
    slack = max(HEADER_SLACK_FRAMES, int(HEADER_SLACK_SHARE * shown))
    if info.header_num_frames > shown + slack:
        held = f" (and {info.held_frames} held)" if info.held_frames else ""
        raise errors.TruncatedMediaError(
            str(src), f"truncated: the header declares {info.header_num_frames} frames but only "
            f"{info.num_frames}{held} decode",
        )  # fmt: skip


def _video_row(e: Entry, info: Any, fingerprint: str) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "video": e.relpath,
        "class_name": e.class_name,
        "class_id": e.class_id,
        "group": e.group,
        "splits": e.splits,
        "fingerprint": fingerprint,
        "size_bytes": info.size_bytes,
        "num_frames": info.num_frames,
        "fps": round(info.fps, 6),
        "duration_s": round(info.duration_s, 6),
        "width": info.width,
        "height": info.height,
        "container": info.container.split(",")[0],
        "codec": info.codec,
        "kind": info.kind,
        "keyframes": len(info.keyframes),
        "seek_points": len(info.seek_points),
        "has_audio": info.has_audio,
        "audible": info.audible,
        "vfr": info.vfr,
        "held_frames": info.held_frames,
        "decode_warnings": info.decode_warnings,
        "damaged_frames": list(info.damaged_frames),
        **e.meta,
    }


def prep_videos(
    scan: Scan,
    out: str | os.PathLike[str],
    *,
    config: MineConfig | PairConfig | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    shard: tuple[int, int] | None = None,
    timeout_s: float = 600.0,
    progress: bool = True,
    probe: ProbeOptions | None = None,
) -> PrepResult:
    """Process ``scan``'s videos (or one shard of them) into ``out``; see the design notes.

    A shard run commits its records and a ``shard-I-of-N.json`` note and stops; the manifests
    are written by ``avssl-prep merge`` once every shard is done. Without shards they are
    written at the end of the run.
    """
    cfg = config or MineConfig()
    o = Path(out).resolve()
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o)  # half-written files of a killed run (their targets were never replaced)
    tdir = str(Path(cache_dir).resolve()) if cache_dir is not None else None
    entries = shards.select(scan.entries, shard)
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    jobs = []
    for e in entries:  # finished videos are skipped here: a finished run starts no workers
        job = _Job(scan.root, str(o), e, cfg, tdir, timeout_s, probe or ProbeOptions())
        rec = o / "records" / record_name(e.relpath)
        if _is_current(rec, Path(scan.root) / e.relpath, job):
            counts["reused"] += 1
        else:
            jobs.append(job)
    n_workers = default_workers(workers)
    label = f"prep {scan.dataset}"
    done = counts["reused"]
    intro = f"{label}: {len(jobs)} videos to process ({done} already done) from {scan.root} "
    intro += f"with {n_workers} worker(s) -> {o}"
    run = imap_progress(_process, jobs, n_workers, label, "videos", progress=progress, intro=intro,
                        bad=lambda r: r[1] == "quarantined")  # fmt: skip
    for _, status in run:
        counts["processed"] += 1
        counts[status] += 1  # "ok" or "quarantined"
    extra = {"cache_dir": tdir, "config_type": type(cfg).__name__}
    seconds = time.monotonic() - t0
    if shard is not None:
        note = {"shard": list(shard), "scan": scan.to_dict(), "config": asdict(cfg), **extra}
        i, n = shard
        atomic_write_text(o / f"shard-{i}-of-{n}.json", json.dumps(note) + "\n")
        return PrepResult(o, dict(counts), seconds, {"dataset": scan.dataset, "shard": [i, n]})
    card = assemble(o, scan, cfg, extra)
    return PrepResult(o, dict(counts), seconds, card)


def merge_shards(out: str | os.PathLike[str], shard_dirs: list[Path]) -> PrepResult:
    """Combine shard outputs (each written by ``prep_videos(..., shard=(i, N))``) into ``out``.

    Shards may share ``out`` (a shared file system) or live in separate directories; their
    records are copied into ``out/records``. All N shards of one scan and one configuration
    must be present: the result is then identical to an unsharded run's manifests.
    """
    o = Path(out).resolve()
    t0 = time.monotonic()
    paths: list[Path] = []
    for d in shard_dirs:
        found = sorted(Path(d).glob("shard-*-of-*.json"))
        if not found:
            raise FileNotFoundError(f"{d}: no shard-I-of-N.json (not a shard output directory)")
        paths += found
    notes = shards.read_notes(paths, itemgetter("scan", "config"), "another scan, configuration")
    (ref, ref_path), n = notes[min(notes)], len(notes)
    scan = Scan.from_dict(ref["scan"])
    counts: Counter[str] = Counter()
    for i, (_, note_path) in sorted(notes.items()):
        for e in shards.select(scan.entries, (i, n)):
            name = record_name(e.relpath)
            src, dst = note_path.parent / "records" / name, o / "records" / name
            if src.resolve() != dst.resolve():
                atomic_write_text(dst, src.read_text())
            counts["merged"] += 1
    kind = {"MineConfig": MineConfig, "PairConfig": PairConfig}[ref["config_type"]]
    cfg: MineConfig | PairConfig = config_from_dict(kind, ref["config"], source=str(ref_path))
    extra = {"cache_dir": ref["cache_dir"], "config_type": ref["config_type"], "merged_shards": n}
    card = assemble(o, scan, cfg, extra)
    return PrepResult(o, dict(counts), time.monotonic() - t0, card)
