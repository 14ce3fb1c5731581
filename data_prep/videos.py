"""The video prep engine behind ``avssl-prep ucf101`` and ``avssl-prep folder``.

For every video of a :class:`~data_prep.scan.Scan` a worker process

1. fingerprints the file (BLAKE2b of its bytes) and probes it strictly (exact frame count,
   verified seek points, audio presence); bad media is *quarantined* with its reason;
2. measures per-frame motion energy (:mod:`avssl.data.motion`), cached in ``OUT/motion/`` by
   file fingerprint and motion setting, so re-mining with other sampler settings never decodes;
3. finds the video's high-motion windows and mines Shuffle & Learn tuples, Odd-One-Out
   questions and arrow-of-time clips (:mod:`avssl.data.samplers`) with a random stream seeded by
   ``(seed, path)``: a video's samples do not depend on the other videos, the order of work,
   the number of workers or shards;
4. optionally writes a transcoded training copy (:mod:`data_prep.transcode`);
5. commits one JSON *record* atomically to ``OUT/records/``.

A record whose file size, mtime and settings still match is reused, so a killed run re-run
finishes the rest and writes byte-identical manifests. The manifests are then assembled from the
records in path order (:func:`assemble`); ``avssl-prep merge`` assembles shards the same way.
The format of every output file is documented in ``docs/manifests.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avssl import errors
from avssl.data import samplers
from avssl.data.decode import check_source, media_identity
from avssl.data.frame_folder import list_frames
from avssl.data.manifest import atomic_write_text, remove_stale_temps, write_manifest
from avssl.data.motion import Motion, load_motion, motion_energy, save_motion
from data_prep.av_prep import PAIR_TASKS, PairConfig, mine_pairs, pair_rows
from data_prep.parallel import Progress, default_workers, imap_jobs
from data_prep.scan import Entry, Scan, write_skipped

__all__ = ["FORMAT_VERSION", "MineConfig", "PrepResult", "assemble", "prep_videos"]

#: Version of the manifest rows (the ``"v"`` field of every row); see docs/manifests.md.
FORMAT_VERSION = 1
#: Bump when a change alters what a record holds for the same input and settings.
# 2: Shuffle & Learn keeps its class through rejected draws; 3: stricter probe (bad-media corpus:
# concealed damage, still images, headers claiming lost frames, links / FIFOs / folders)
# 4: concealed decode damage is recorded, not quarantined (--strict-decode brings it back);
# frame folders and GIFs; AVI held frames are time; trailing bytes after a whole MP4
RECORD_VERSION = 4
TASKS = ("shuffle_learn", "odd_one_out", "arrow_of_time")

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
    # Runs apart by <= 15 low frames are one window: with 5-frame smoothing and no merging, 9 of
    # 17 test videos (../shared/data + synth) had no window long enough for one tuple; with
    # these settings 15 of 17 do (the other two last 72 and 103 frames and barely move).
    merge_gap: int = 15
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


def record_name(relpath: str) -> str:
    """A flat, readable file name for a video's record: ``Class/v_x.avi`` -> ``Class__v_x.avi``."""
    return relpath.replace("/", "__") + ".json"


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
            and (rec["status"] != "ok" or _cache_present(job, rec))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


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
            {
                "frames": list(t.frames),
                "target": t.label,
                "kind": t.kind,
                "five": list(t.five),
                "window": list(t.window),
            }
            for t in tuples
        ],  # fmt: skip
        "odd_one_out": [
            {
                "subsequences": [list(s) for s in q.subsequences],
                "target": q.odd,
                "windows": [list(w) for w in q.windows],
            }
            for q in questions
        ],  # fmt: skip
        "arrow_of_time": [
            {
                "frames": list(c.frames),
                "target": c.label,
                "reversed": c.reversed,
                "window": list(c.window),
            }
            for c in clips
        ],  # fmt: skip
    }


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
            from data_prep.transcode import transcode_video

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


# --------------------------------------------------------------------------------------------
# assembling the manifests
# --------------------------------------------------------------------------------------------
@dataclass
class PrepResult:
    out: Path
    counts: dict[str, int]  # processed / reused / quarantined / ...
    seconds: float
    card: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        c = self.card
        lines = [f"{c.get('dataset', 'prep')} manifests in {self.out}"]
        v = c.get("videos", {})
        lines.append(
            f"  videos      {v.get('ok', 0)} ok, {v.get('quarantined', 0)} quarantined "
            f"(see quarantine.csv), {v.get('missing', 0)} listed but missing, "
            f"{v.get('unlisted', 0)} on disk but unlisted; {self.counts.get('processed', 0)} "
            f"processed, {self.counts.get('reused', 0)} reused in {self.seconds:.1f} s"
        )
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(c.get("skipped", {}).items()))
        kinds = f" ({kinds})" if kinds else ""
        lines.append(f"  skipped     {v.get('skipped', 0)} not taken{kinds} (see skipped.csv)")
        if v.get("decode_warnings"):
            lines.append(
                f"  damaged     {v['decode_warnings']} video(s) kept with concealed decode damage;"
                " their damaged frames are never sampled (videos.jsonl damaged_frames; "
                "--strict-decode quarantines them)"
            )
        for name, s in c.get("splits", {}).items():
            counts = ", ".join(f"{t} {n}" for t, n in s["samples"].items())
            videos = "; ".join(f"{s[k]} {k[:-7]} videos" for k in ("train_videos", "test_videos")
                               if k in s)  # fmt: skip
            lines.append(f"  split {name:5s} {videos}; {counts}; manifests in {s['dir']}")
        for name, s in list(c.get("splits", {}).items())[:1]:
            key = "shuffle_learn" if c.get("config_type") == "MineConfig" else "positives"
            items = sorted(s["per_class"].items(), key=lambda kv: kv[1][key])
            if items:
                few = ", ".join(f"{k} {d[key]}" for k, d in items[:3])
                lines.append(f"  per class   {name}: {len(items)} classes; fewest {key}: {few} "
                             "(all counts in prep.json)")  # fmt: skip
        return "\n".join(lines)


def _split_dir(scan: Scan, split: str) -> str:
    return "." if scan.dataset == "folder" else f"split{split}"


def assemble(
    out: Path, scan: Scan, config: MineConfig | PairConfig, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write every manifest of ``out`` from the records of ``scan``'s videos; return the card.

    Raises FileNotFoundError listing videos without a record (e.g. a shard not merged yet).
    """
    records: list[dict[str, Any]] = []
    absent = []
    for e in scan.entries:
        p = out / "records" / record_name(e.relpath)
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            absent.append(e.relpath)
    if absent:
        raise FileNotFoundError(
            f"{out}: {len(absent)} video(s) have no record yet (first: {absent[0]}); "
            "run the remaining shards or re-run the prep"
        )
    ok = [r for r in records if r["status"] == "ok"]
    bad = [r for r in records if r["status"] != "ok"]
    write_manifest(out / "videos.jsonl", [r["video"] for r in ok])
    write_manifest(out / "probe.jsonl", [{"video": r["relpath"], **r["info"]} for r in ok])
    write_manifest(
        out / "quarantine.csv",
        [{"path": r["relpath"], "reason": r["reason"], "message": r["message"]} for r in bad],
    )
    if scan.dataset in ("ucf101", "audioset"):
        write_manifest(out / "missing.csv", [{"path": p} for p in scan.missing])
        write_manifest(out / "unlisted.csv", [{"path": p} for p in scan.unlisted])
    write_skipped(out / "skipped.csv", scan.skipped)
    if isinstance(config, PairConfig):
        splits = _write_pairs(out, scan, ok, config)
    else:
        splits = _write_temporal(out, scan, ok)
    videos_per_class = Counter(r["video"]["class_name"] or "(none)" for r in ok)
    card = {
        "format": "avssl-prep",
        "version": FORMAT_VERSION,
        "dataset": scan.dataset,
        "root": scan.root,
        "classes": scan.classes,
        "config": asdict(config),
        **extra,
        "videos": {
            "listed": len(scan.entries) + len(scan.missing),
            "ok": len(ok),
            "quarantined": len(bad),
            "missing": len(scan.missing),
            "unlisted": len(scan.unlisted),
            "skipped": len(scan.skipped),
            "decode_warnings": sum(1 for r in ok if r["video"].get("decode_warnings")),
        },
        "skipped": scan.skipped_counts(),
        "quarantine_reasons": dict(Counter(r["reason"] for r in bad)),
        "splits": splits,
        "videos_per_class": dict(sorted(videos_per_class.items())),
    }
    atomic_write_text(out / "scan.json", json.dumps(scan.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "prep.json", json.dumps(card, indent=1) + "\n")
    return card


def _write_temporal(out: Path, scan: Scan, ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Per split: the temporal-order pretext manifests (from its training videos only) and, for
    UCF-101, its train/test video lists."""
    splits: dict[str, Any] = {}
    for split in scan.split_names:
        d = out / _split_dir(scan, split)
        train = [r for r in ok if r["video"]["splits"].get(split) == "train"]
        test = [r for r in ok if r["video"]["splits"].get(split) == "test"]
        counts = {}
        per_class: dict[str, Counter[str]] = {}
        for r in train:
            per_class.setdefault(r["video"]["class_name"] or "(none)", Counter())[
                "train_videos"
            ] += 1
        for task in TASKS:
            rows: list[dict[str, Any]] = []
            for r in train:  # pretext samples of split k: its training videos only
                base = {"v": FORMAT_VERSION, "video": r["relpath"],
                        "class_id": r["video"]["class_id"]}  # fmt: skip
                if "cache_video" in r["video"]:
                    base["cache_video"] = r["video"]["cache_video"]
                rows.extend({**base, **s} for s in r[task])
                per_class[r["video"]["class_name"] or "(none)"][task] += len(r[task])
            write_manifest(d / f"{task}.jsonl", rows)
            counts[task] = len(rows)
        if scan.dataset == "ucf101":
            write_manifest(d / "train.jsonl", [r["video"] for r in train])
            write_manifest(d / "test.jsonl", [r["video"] for r in test])
        splits[split] = {
            "dir": str(d.relative_to(out)) if d != out else ".",
            "train_videos": len(train),
            "test_videos": len(test),
            "samples": counts,
            "per_class": {
                k: {"train_videos": v["train_videos"], **{t: v[t] for t in TASKS}}
                for k, v in sorted(per_class.items())
            },
        }
    return splits


def _write_pairs(
    out: Path, scan: Scan, ok: list[dict[str, Any]], cfg: PairConfig
) -> dict[str, Any]:
    """Per role (train, test): the video list and the avc / sync pair manifests; negatives of
    a role come from videos of the same role only."""
    splits: dict[str, Any] = {}
    for role in ("train", "test"):
        recs = [r for r in ok if role in r["video"]["splits"].values()]
        rows, per_label = pair_rows(recs, cfg, FORMAT_VERSION)
        write_manifest(out / f"{role}.jsonl", [r["video"] for r in recs])
        for task in PAIR_TASKS:
            write_manifest(out / f"{task}_{role}.jsonl", rows[task])
        names = scan.class_names
        splits[role] = {
            "dir": ".",
            "train_videos" if role == "train" else "test_videos": len(recs),
            "samples": {f"{t}_{role}": len(rows[t]) for t in PAIR_TASKS},
            "per_class": {names.get(k, k): {"positives": n} for k, n in sorted(per_label.items())},
        }
    return splits


def select_shard(entries: list[Entry], shard: tuple[int, int] | None) -> list[Entry]:
    """Entry i goes to shard ``i % N``: every shard gets a similar mix of classes."""
    if shard is None:
        return entries
    i, n = shard
    return [e for k, e in enumerate(entries) if k % n == i]


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
    """Process ``scan``'s videos (or one shard of them) into ``out``; see the module docstring.

    A shard run commits its records and a ``shard-I-of-N.json`` note and stops; the manifests
    are written by ``avssl-prep merge`` once every shard is done. Without shards they are
    written at the end of the run.
    """
    cfg = config or MineConfig()
    o = Path(out).resolve()
    o.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(o)  # half-written files of a killed run (their targets were never replaced)
    tdir = str(Path(cache_dir).resolve()) if cache_dir is not None else None
    entries = select_shard(scan.entries, shard)
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
    bar = Progress(f"prep {scan.dataset}", len(jobs), "videos") if progress and jobs else None
    if bar is not None:
        done = counts["reused"]
        print(f"prep {scan.dataset}: {len(jobs)} videos to process ({done} already done) "
              f"from {scan.root} with {n_workers} worker(s) -> {o}", file=bar.stream)  # fmt: skip
    for _, status in imap_jobs(_process, jobs, n_workers):
        counts["processed"] += 1
        counts[status] += 1  # "ok" or "quarantined"
        if bar is not None:
            bar.step(note=f", {counts['quarantined']} quarantined" if counts["quarantined"] else "")
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
    notes: dict[int, dict[str, Any]] = {}
    where: dict[int, Path] = {}
    for d in shard_dirs:
        found = sorted(Path(d).glob("shard-*-of-*.json"))
        if not found:
            raise FileNotFoundError(f"{d}: no shard-I-of-N.json (not a shard output directory)")
        for f in found:
            note = json.loads(f.read_text())
            i, n = note["shard"]
            if i in notes and notes[i] != note:
                raise ValueError(f"{f}: shard {i} appears twice with different contents")
            notes[i], where[i] = note, Path(d)
    ref = next(iter(notes.values()))
    n = ref["shard"][1]
    for i, note in notes.items():
        same = note["scan"] == ref["scan"] and note["config"] == ref["config"]
        if note["shard"][1] != n or not same:
            raise ValueError(
                f"{where[i]}: shard {i} was made from another scan, configuration or shard count"
            )
    absent = sorted(set(range(n)) - set(notes))
    if absent:
        raise FileNotFoundError(f"shards {absent} of {n} are missing (give their directories)")
    scan = Scan.from_dict(ref["scan"])
    counts: Counter[str] = Counter()
    for i in range(n):
        for e in select_shard(scan.entries, (i, n)):
            name = record_name(e.relpath)
            src = where[i] / "records" / name
            dst = o / "records" / name
            if src.resolve() != dst.resolve():
                atomic_write_text(dst, src.read_text())
            counts["merged"] += 1
    config_type = {"MineConfig": MineConfig, "PairConfig": PairConfig}[ref["config_type"]]
    cfg = config_type(**ref["config"])
    extra = {"cache_dir": ref["cache_dir"], "config_type": ref["config_type"], "merged_shards": n}
    card = assemble(o, scan, cfg, extra)
    return PrepResult(o, dict(counts), time.monotonic() - t0, card)
