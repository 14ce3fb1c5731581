"""The ``avssl-prep`` subcommands over videos: synth, ucf101, folder, audioset and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import options as opt
from .av_prep import PairConfig
from .options import (
    Command,
    add_config_options,
    add_options,
    config_from_args,
    fraction,
    offsets,
    positive_float,
    positive_int,
)
from .scan import Scan
from .synth import CLASSES, DEFAULT_NUM_CLIPS
from .videos import DEFAULT_FLOOR, MineConfig

ON = {"action": argparse.BooleanOptionalAction, "default": True}


def _run_synth(args: argparse.Namespace) -> None:
    from .decode_report import decode_report
    from .synth import build_synth
    from .synth_av import prep_synth_av, scan_synth
    from .videos import prep_videos

    result = build_synth(
        args.out, num_clips=args.num_clips, seed=args.seed, workers=args.workers, progress=True
    )
    print(result.summary())
    root, w = result.root, args.workers
    steps = (
        (args.temporal, lambda: prep_videos(scan_synth(root), root / "temporal", workers=w,
                                            progress=True).summary()),
        (args.av, lambda: prep_synth_av(root, workers=w, progress=True).summary()),
        (args.report, lambda: decode_report(root, workers=w)),
    )  # fmt: skip
    for wanted, step in steps:
        if wanted:
            print()
            print(step())
    made = [f"{d}/" for d, wanted in (("temporal", args.temporal), ("av", args.av)) if wanted]
    print(f"\nwrote {root}: the clips (videos/, manifest.jsonl, labels.csv, boxes/)"
          + "".join(f", {d}" for d in made))  # fmt: skip


_SYNTH_OPTIONS = (
    ("--out", opt.OPTIONAL_OUT,
     "output directory. Default: $AVSSL_DATA/synth, else "
     "./avssl-data/synth -- where the trainers and examples look first. A different --seed "
     "in the same DIR rebuilds every clip; give each seed its own DIR to keep both."),
    ("--num-clips", {"type": positive_int, "default": DEFAULT_NUM_CLIPS, "metavar": "N"},
     f"number of 4 s clips (default {DEFAULT_NUM_CLIPS}: about 40 s on 2 cores). Classes "
     "are balanced when N is a multiple of 8; each class is split 70/15/15 into "
     "train/val/test. 48 is enough to smoke-test a training loop; growing N later keeps the "
     "clips already built."),
    ("--seed", opt.SEED,
     "scene seed (default 0). The same seed gives byte-identical labels and "
     "boxes and identical decoded frames with any --workers (and the same PyAV build); clip "
     "i is the same whatever N."),
    ("--workers", opt.WORKERS,
     "processes that render and encode (default: one per CPU core, at "
     "most 8). Each encoder runs single-threaded, so more workers than cores only adds "
     "overhead."),
    ("--report", ON,
     "after building, probe every file and time random frame reads (default "
     "on; about 15 s for 320 clips); the same as 'avssl-prep report DIR'."),
    ("--temporal", ON,
     "also mine the temporal-order manifests that 'avssl-train "
     "shuffle_learn | odd_one_out | arrow_of_time' read by default, into DIR/temporal: "
     "samples from the synth split's train clips only, its val and test clips held out "
     "(videos.jsonl lists all, with their class and split; default on; about 30 s)"),
    ("--av", ON,
     "also mine the audio-visual pairs that 'avssl-train ave-net | l3-net | "
     "avol-net | av-sync' read by default, into DIR/av: frames sampled on each clip's grid (8 "
     "per second of sound), the 1 s of sound centred on each, windows with sound only; the "
     "synth split's train clips train, its val and test clips are held out "
     "(avc_train/avc_test.jsonl, localization_test.jsonl with the sounding object's box; "
     "default on; about 30 s)"),
)  # fmt: skip


SYNTH = Command(
    "synth",
    "build the built-in synthetic audio-visual set (default data; ~1 min)",
    "Render a seeded synthetic video set: bouncing shapes of 8 classes "
    f"({', '.join(c.name for c in CLASSES)}), one of which sounds with its own timbre at every "
    "impact while 1-2 silent distractors move too; still stretches between motions; per-frame "
    "boxes of every object. Writes H.264/AAC .mp4 and (1 in 4) Xvid/MP3 .avi files, labels.csv, "
    "manifest.jsonl, boxes/ and dataset.json. Re-running resumes: finished clips are skipped, "
    "so an interrupted build is finished by running the same command again. No --shard: a "
    "seeded built-in set of about a minute on 2 cores (--workers spreads it over the cores).",
    _SYNTH_OPTIONS,
    _run_synth,
)


def _run_report(args: argparse.Namespace) -> str:
    from .decode_report import decode_report

    if not args.root.is_dir():
        raise NotADirectoryError(f"{args.root}: not a directory")
    return decode_report(args.root, tuples=args.tuples, seed=args.seed, workers=args.workers)


_REPORT_OPTIONS = (
    ("root", {"type": Path, "metavar": "DIR"}, "a directory written by avssl-prep"),
    ("--tuples", {"type": int, "default": 100, "metavar": "N"},
     "random 3-frame reads to time (default 100; 0 skips the timing)"),
    ("--seed", opt.SEED, "seed of the random reads (default 0)"),
    ("--workers", opt.WORKERS, "processes that probe files (default: one per CPU core, at most 8)"),
)  # fmt: skip


REPORT = Command(
    "report",
    "probe a prepared dataset and time random frame reads",
    "Probe every video of a prepared dataset (from DIR/manifest.jsonl, else every media "
    "file under DIR): files by kind (container/codec/B-frames), frames counted by "
    "decoding vs the header's claim and the manifest, keyframes per file, how many "
    "audio tracks are audible, which backend 'auto' picks per kind, and the speed of "
    "random 3-frame reads. Run it on any new dataset before training: a kind with one "
    "keyframe per file makes random reads slow, silent audio breaks audio-visual tasks.",
    _REPORT_OPTIONS,
    _run_report,
)


#: The options of every video prep (ucf101, folder, audioset): output, workers, seed, shards.
_VIDEO_COMMON = (
    ("--out", opt.OUT, "output directory for the manifests (created; re-running with the same "
     "OUT resumes and reuses every finished video)"),
    ("--workers", opt.WORKERS, "worker processes (default: one per CPU core, at most 8); each "
     "decodes one video at a time on one thread"),
    ("--seed", opt.SEED, "sampling seed (default 0); a video's samples depend only on the seed, "
     "its path and the set of usable videos, not on workers or shards"),
    ("--shard", opt.SHARD, "process only shard I of N (0-based), e.g. one per machine; then "
     "'avssl-prep merge OUT SHARD_DIRS...' writes the manifests"),
    ("--timeout", {**opt.TIMEOUT, "default": 600.0}, "per-video decode time limit in seconds "
     "(default 600); a video that exceeds it is quarantined"),
    ("--strict-decode", {"action": "store_true"}, "quarantine videos with damage the decoder "
     "conceals (FFmpeg logs an error, e.g. 'non-intra slice in an IDR NAL unit', and paints "
     "the picture over). By default such a video is kept: videos.jsonl records "
     "decode_warnings and damaged_frames (the damaged picture up to the next keyframe) and "
     "no sample uses those frames"),
    ("--frame-rate", {"type": positive_float, "default": None, "metavar": "FPS"}, "frame rate "
     "of frame folders (numbered images) that have no sidecar (fps.txt, MOTChallenge "
     "seqinfo.ini); default 25"),
)  # fmt: skip

#: The mining options of 'ucf101' and 'folder' after --motion: (flag, type, metavar, help).
_MINING = (
    ("--motion-width", positive_int, "PX", "width of the grey frames motion is measured on "
     "(default {d.motion_width}: coarse, as the window choice needs; 80 costs about 2.5x)"),
    ("--quantile", fraction, "Q", "a high-motion window lies above this quantile of the "
     "video's own smoothed motion (default {d.quantile})"),
    ("--floor", float, "E", f"... and above this absolute motion (default {DEFAULT_FLOOR['flow']}"
     f" frame widths per frame for flow, {DEFAULT_FLOOR['diff']} grey levels/255 for diff), so "
     "a still video yields no samples"),
    ("--tuples-per-video", int, "N", "Shuffle & Learn tuples per video (default "
     "{d.tuples_per_video}: the paper's ~900k from UCF-101 split 1)"),
    ("--positive-ratio", fraction, "R", "share of ordered tuples (default {d.positive_ratio}: "
     "best in the paper)"),
    ("--tau-max", positive_int, "F", "max frames between the first and last frame of a "
     "positive (default {d.tau_max})"),
    ("--tau-min", positive_int, "F", "min frames between a negative's out-of-order frame and "
     "its neighbour (default {d.tau_min})"),
    ("--questions-per-video", int, "N", "Odd-One-Out questions per video (default "
     "{d.questions_per_video}; {d.o3n_subsequences} subsequences of {d.o3n_length} frames)"),
    ("--clips-per-video", int, "N", "arrow-of-time clips per video (default "
     "{d.clips_per_video}; {d.arrow_length} frames, half reversed)"),
    ("--arrow-max-stride", positive_int, "S", "an arrow clip's frames are 1..S frames apart, "
     "drawn per clip (default {d.arrow_max_stride}); larger spans more time (Wei et al. sample "
     "at lower rates)"),
)  # fmt: skip


def _mining_group(p: argparse.ArgumentParser) -> None:
    """The mining options of 'ucf101' and 'folder' (after the common ones)."""
    d = MineConfig()
    g = p.add_argument_group("motion and mining")
    g.add_argument(
        "--motion",
        choices=("flow", "diff"),
        default=d.motion,
        help="per-frame motion measure: coarse Farneback optical flow (default, as "
        "Shuffle & Learn) or frame difference (about 3x faster, fooled more by "
        "lighting changes)",
    )
    add_config_options(g, d, _MINING)


#: The options of 'ucf101' and 'folder' after their own: the common ones, mining, transcode.
_MINING_OPTIONS = (
    *_VIDEO_COMMON,
    _mining_group,
    ("--transcode", {"type": Path, "default": None, "metavar": "DIR"}, "also write a training "
     "cache in DIR: each video as constant-rate H.264 with a keyframe every 8 frames (short side "
     "<= 256) plus its audio as mono wav; same frame indices, far cheaper random reads "
     "(BENCHMARKS.md)"),
)  # fmt: skip


def _prep_videos(
    args: argparse.Namespace, scan: Scan, cfg: MineConfig | PairConfig, cache_dir: Path | None
) -> str:
    from .videos import ProbeOptions, prep_videos

    if scan.dataset in ("ucf101", "audioset"):
        what = "clips" if scan.dataset == "ucf101" else "segments"
        print(
            f"{len(scan.entries)} listed {what} found under {scan.root}; "
            f"{len(scan.missing)} listed but missing (missing.csv), "
            f"{len(scan.unlisted)} files on disk but in no list (unlisted.csv)",
            file=sys.stderr,
        )
    result = prep_videos(
        scan,
        args.out,
        config=cfg,
        workers=args.workers,
        cache_dir=cache_dir,
        shard=args.shard,
        timeout_s=args.timeout,
        probe=ProbeOptions(strict_decode=args.strict_decode, frame_rate=args.frame_rate),
    )
    if args.shard is None:
        return result.summary()
    i, n = args.shard
    done = sum(result.counts.get(k, 0) for k in ("processed", "reused"))
    return (
        f"shard {i}/{n}: {done} videos done in {result.seconds:.1f} s, records in "
        f"{result.out / 'records'}; when all {n} shards are done run 'avssl-prep merge "
        f"{args.out} SHARD_DIRS...'"
    )


def _run_ucf101(args: argparse.Namespace) -> str:
    from .scan import scan_ucf101

    scan = scan_ucf101(args.root, args.splits, args.split)
    return _prep_videos(args, scan, config_from_args(MineConfig, args), args.transcode)


_UCF101_OPTIONS = (
    ("root", {"type": Path, "metavar": "ROOT"},
     "the UCF-101 folder (holding the 101 class folders), or its parent"),
    ("--splits", {"type": Path, "required": True, "metavar": "DIR"},
     "the official ucfTrainTestlist folder (classInd.txt, trainlist0N.txt, testlist0N.txt)"),
    ("--split", {"choices": ("1", "2", "3", "all"), "default": "1"},
     "which split's pretext "
     "manifests to write (default 1, as the papers report); every listed clip is probed "
     "whatever the choice"),
    *_MINING_OPTIONS,
)  # fmt: skip


UCF101 = Command(
    "ucf101",
    "UCF-101 as downloaded -> video manifests and temporal-order pretext samples",
    "Read UCF-101 in its published layout (ROOT/<Class>/v_<Class>_gXX_cYY.avi) with the "
    "official ucfTrainTestlist, probe every listed clip (exact frame counts, audio), "
    "quarantine bad files with a reason (OUT/quarantine.csv) and mine Shuffle & "
    "Learn tuples, Odd-One-Out questions and arrow-of-time clips from each clip's "
    "high-motion windows. Pretext samples of split k come only from split k's training "
    "videos. Writes OUT/videos.jsonl, OUT/probe.jsonl, OUT/splitK/{train,test,"
    "shuffle_learn,odd_one_out,arrow_of_time}.jsonl and OUT/prep.json "
    "(docs/manifests.md). Resumes when re-run. All 13,320 clips take about 3 minutes "
    "with --workers 16 on 16 cores (--transcode adds about 15; BENCHMARKS.md).",
    _UCF101_OPTIONS,
    _run_ucf101,
)


def _run_folder(args: argparse.Namespace) -> str:
    from .scan import scan_folder

    scan = scan_folder(args.root)
    if not scan.entries:
        raise ValueError(
            f"no video files or frame folders under {args.root} "
            f"({len(scan.skipped)} entries not taken)"
        )
    return _prep_videos(args, scan, config_from_args(MineConfig, args), args.transcode)


_FOLDER_OPTIONS = (
    ("root", {"type": Path, "metavar": "ROOT"}, "a folder of videos"),
    *_MINING_OPTIONS,
)  # fmt: skip


FOLDER = Command(
    "folder",
    "any folder of videos -> video manifest and temporal-order pretext samples",
    "Probe every video under ROOT (recursively; the class of a video is its first "
    "sub-folder, if any) -- video files, animated GIFs and frame folders (a folder of 2+ "
    "numbered images is one video) -- name every file it does not take and why "
    "(OUT/skipped.csv: hidden, annotation folders such as masks/, single images, sound, "
    "other suffixes), quarantine bad files with a reason (OUT/quarantine.csv) and "
    "mine Shuffle & Learn tuples, Odd-One-Out questions and arrow-of-time clips from "
    "high-motion windows. Writes OUT/videos.jsonl, OUT/probe.jsonl, "
    "OUT/{shuffle_learn,odd_one_out,arrow_of_time}.jsonl and OUT/prep.json "
    "(docs/manifests.md). Resumes when re-run.",
    _FOLDER_OPTIONS,
    _run_folder,
)


def _pair_group(p: argparse.ArgumentParser) -> None:
    d = PairConfig()
    g = p.add_argument_group("pairs")
    add_config_options(g, d, (
        ("--window", float, "S", "audio window in seconds (default {d.window_s:g}, as L3 / "
         "AVE-Net)", "window_s"),
        ("--frames-per-second", float, "R", "frames sampled per second of usable sound (default "
         "{d.frames_per_s:g}: 10 per AudioSet clip); each gives one positive, one "
         "correspondence negative and one sync negative", "frames_per_s"),
    ))  # fmt: skip
    add_options(g, (
        ("--sync-offset", {"type": offsets, "default": (d.min_sync_offset_s, d.max_sync_offset_s),
                           "metavar": "MIN:MAX"},
         f"shift of sync negatives in seconds, either sign (default "
         f"{d.min_sync_offset_s:g}:{d.max_sync_offset_s:g})"),
        ("--keep-silent", {"action": "store_false", "dest": "require_audible"},
         "keep videos whose audio is digitally silent (quarantined by default)"),
        ("--cache", {"type": Path, "default": None, "metavar": "DIR", "dest": "cache_dir"},
         "also write a training cache in DIR: the sampled frames (JPEG, short side --cache-size) "
         "and each clip's sound as 16-bit mono at --cache-sample-rate, so a pair costs one small "
         "image and one slice (~40x faster than decoding the videos: 672 vs 16 pairs/s per "
         "core; BENCHMARKS.md)"),
    ))  # fmt: skip
    add_config_options(g, d, (
        ("--cache-size", positive_int, "PX", "short side of cached frames (default "
         "{d.cache_short_side})", "cache_short_side"),
        ("--cache-sample-rate", positive_int, "HZ", "sample rate of cached audio (default "
         "{d.cache_sample_rate}, as L3 / AVE-Net)"),
    ))  # fmt: skip
    add_options(g, (
        ("--cache-format", {"choices": ("jpeg", "raw"), "default": d.cache_format},
         "cached frames as JPEG (default, ~20x smaller) or raw uint8 arrays (exact, no decode)"),
    ))  # fmt: skip


def _run_audioset(args: argparse.Namespace) -> str:
    from .scan import scan_audioset

    scan = scan_audioset(
        args.csvs,
        args.videos,
        classes=args.classes,
        labels_csv=args.labels,
        ontology_json=args.ontology,
        pattern=args.pattern,
        cut=False if args.whole_videos else None,
    )
    if not scan.entries:
        raise ValueError(
            f"none of the {len(scan.missing)} listed segments has a file under {args.videos}"
        )
    lo, hi = args.sync_offset
    cfg = config_from_args(
        PairConfig,
        args,
        min_sync_offset_s=lo,
        max_sync_offset_s=hi,
        cache=args.cache_dir is not None,
    )
    return _prep_videos(args, scan, cfg, args.cache_dir)


_AUDIOSET_OPTIONS = (
    ("csvs", {"type": Path, "nargs": "+", "metavar": "CSV"},
     "segment lists, e.g. balanced_train_segments.csv eval_segments.csv"),
    ("--videos", {"type": Path, "required": True, "metavar": "ROOT"},
     "folder holding the downloaded clips (searched recursively)"),
    ("--classes", {"nargs": "+", "default": None, "metavar": "NAME"},
     "keep segments with these classes, by display name or MID, with their ontology "
     "sub-trees: 'Musical instrument' gives the instrument subset of L3 / AVE-Net (80 "
     "classes)"),
    ("--labels", {"type": Path, "default": None, "metavar": "CSV"},
     "class_labels_indices.csv (default: beside the first CSV)"),
    ("--ontology", {"type": Path, "default": None, "metavar": "JSON"},
     "ontology.json (default: beside the first CSV)"),
    ("--pattern", {"default": None},
     "file name template relative to ROOT without suffix, e.g. '{ytid}_{start}' or "
     "'clips/{ytid}/{start_ms}' (fields: ytid, start, start_ms, end, end_ms, any); "
     "default: the common patterns"),
    ("--whole-videos", {"action": "store_true"},
     "files named {YTID}.ext are whole YouTube videos (the segment lies at its listed "
     "start); by default such files are taken as cut segments"),
    *_VIDEO_COMMON,
    _pair_group,
)  # fmt: skip


AUDIOSET = Command(
    "audioset",
    "AudioSet downloads -> aligned (frame, audio) pairs for AVE-Net / L3 / sync",
    "Read AudioSet segment lists (CSV... : the official files with their three '#' "
    "header lines, or with a plain header), find each segment's file under --videos "
    "by its name ({YTID}_{start}.mp4, {YTID}_{start}_{end}.mp4, Y{YTID}.wav-style, "
    "{YTID}.mp4 whole videos, in sub-folders; or --pattern), report how many are "
    "available (a share of AudioSet is always missing), probe every file and "
    "quarantine those without video, without audio or with silent audio "
    "(OUT/quarantine.csv). Samples frames on each video's frame grid and writes "
    "OUT/avc_{train,test}.jsonl (positive: the 1 s centred on the frame; negative: "
    "another video's sound cut on the same frame grid, 50:50) and "
    "OUT/sync_{train,test}.jsonl (negative: the same video's sound shifted by whole "
    "frames); eval lists give the test role. Format: docs/manifests.md.",
    _AUDIOSET_OPTIONS,
    _run_audioset,
)
