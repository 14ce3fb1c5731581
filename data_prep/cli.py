"""``avssl-prep``: the dataset preparation tools, one subcommand per dataset.

Each subcommand is added by one ``_add_*`` function listed in :data:`SUBCOMMANDS`; a new dataset
(ucf101, audioset, esc50, folder) adds its function there. Handlers return an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from data_prep.av_digits import register_av_digits
from data_prep.image_folder import register_images
from data_prep.images import register_digits
from data_prep.shards import parse_shard

if TYPE_CHECKING:
    from data_prep.av_prep import PairConfig
    from data_prep.scan import Scan
    from data_prep.videos import MineConfig

__all__ = ["main", "build_parser"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from data_prep.synth import CLASSES, DEFAULT_NUM_CLIPS

    names = ", ".join(c.name for c in CLASSES)
    p = sub.add_parser(
        "synth",
        help="build the built-in synthetic audio-visual set (default data; ~1 min)",
        description=(
            "Render a seeded synthetic video set: bouncing shapes of 8 classes "
            f"({names}), one of which sounds with its own timbre at every impact while 1-2 "
            "silent distractors move too; still stretches between motions; per-frame boxes of "
            "every object. Writes H.264/AAC .mp4 and (1 in 4) Xvid/MP3 .avi files, labels.csv, "
            "manifest.jsonl, boxes/ and dataset.json. Re-running resumes: finished clips are "
            "skipped, so an interrupted build is finished by running the same command again. "
            "No --shard: a seeded built-in set of about a minute on 2 cores (--workers spreads "
            "it over the cores)."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory. Default: $AVSSL_DATA/synth, else ./avssl-data/synth -- where "
        "the trainers and examples look first. A different --seed in the same DIR rebuilds "
        "every clip; give each seed its own DIR to keep both.",
    )
    p.add_argument(
        "--num-clips",
        type=_positive,
        default=DEFAULT_NUM_CLIPS,
        metavar="N",
        help=f"number of 4 s clips (default {DEFAULT_NUM_CLIPS}: about 40 s on 2 cores). Classes "
        "are balanced when N is a multiple of 8; each class is split 70/15/15 into "
        "train/val/test. 48 is enough to smoke-test a training loop; growing N later keeps the "
        "clips already built.",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="scene seed (default 0). The same seed gives byte-identical labels and boxes and "
        "identical decoded frames with any --workers (and the same PyAV build); clip i is the "
        "same whatever N.",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="W",
        help="processes that render and encode (default: one per CPU core, at most 8). Each "
        "encoder runs single-threaded, so more workers than cores only adds overhead.",
    )
    p.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after building, probe every file and time random frame reads (default on; about "
        "15 s for 320 clips); the same as 'avssl-prep report DIR'.",
    )
    p.add_argument(
        "--temporal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also mine the temporal-order manifests that 'avssl-train shuffle_learn | "
        "odd_one_out | arrow_of_time' read by default, into DIR/temporal (default on; the "
        "same as 'avssl-prep folder DIR/videos --out DIR/temporal'; about 30 s)",
    )
    p.add_argument(
        "--av",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also mine the audio-visual pairs that 'avssl-train ave-net | l3-net | avol-net | "
        "av-sync' read by default, into DIR/av: frames sampled on each clip's grid (8 per "
        "second of sound), the 1 s of sound centred on each, windows with sound only; the "
        "synth split's train clips train, its val and test clips are held out "
        "(avc_train/avc_test.jsonl, localization_test.jsonl with the sounding object's box; "
        "default on; about 30 s)",
    )
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from data_prep.synth import build_synth

    result = build_synth(
        args.out, num_clips=args.num_clips, seed=args.seed, workers=args.workers, progress=True
    )
    print(result.summary())
    if args.temporal:
        from data_prep.scan import scan_folder
        from data_prep.videos import prep_videos

        mined = prep_videos(scan_folder(result.root / "videos"), result.root / "temporal",
                            workers=args.workers, progress=True)  # fmt: skip
        print()
        print(mined.summary())
    if args.av:
        from data_prep.synth_av import prep_synth_av

        paired = prep_synth_av(result.root, workers=args.workers, progress=True)
        print()
        print(paired.summary())
    if args.report:
        from data_prep.report import decode_report

        print()
        print(decode_report(result.root, workers=args.workers))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="probe a prepared dataset and time random frame reads",
        description=(
            "Probe every video of a prepared dataset (from DIR/manifest.jsonl, else every media "
            "file under DIR): files by kind (container/codec/B-frames), frames counted by "
            "decoding vs the header's claim and the manifest, keyframes per file, how many "
            "audio tracks are audible, which backend 'auto' picks per kind, and the speed of "
            "random 3-frame reads. Run it on any new dataset before training: a kind with one "
            "keyframe per file makes random reads slow, silent audio breaks audio-visual tasks."
        ),
    )
    p.add_argument("root", type=Path, metavar="DIR", help="a directory written by avssl-prep")
    p.add_argument(
        "--tuples",
        type=int,
        default=100,
        metavar="N",
        help="random 3-frame reads to time (default 100; 0 skips the timing)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random reads (default 0)")
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="W",
        help="processes that probe files (default: one per CPU core, at most 8)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from data_prep.report import decode_report

    if not args.root.is_dir():
        print(f"avssl-prep report: {args.root}: not a directory", file=sys.stderr)
        return 2
    print(decode_report(args.root, tuples=args.tuples, seed=args.seed, workers=args.workers))
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _add_common_options(p: argparse.ArgumentParser) -> None:
    """Options of every video prep (ucf101, folder, audioset): output, workers, seed, shards."""
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT",
        help="output directory for the manifests (created; re-running with the same "
        "OUT resumes and reuses every finished video)",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="W",
        help="worker processes (default: one per CPU core, at most 8); each decodes "
        "one video at a time on one thread",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sampling seed (default 0); a video's samples depend only on the seed, its path "
        "and the set of usable videos, not on workers or shards",
    )
    p.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="process only shard I of N (0-based), e.g. one per machine; then "
        "'avssl-prep merge OUT SHARD_DIRS...' writes the manifests",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="per-video decode time limit in seconds (default 600); a video that "
        "exceeds it is quarantined",
    )
    p.add_argument(
        "--strict-decode",
        action="store_true",
        help="quarantine videos with damage the decoder conceals (FFmpeg logs an error, e.g. "
        "'non-intra slice in an IDR NAL unit', and paints the picture over). By default such a "
        "video is kept: videos.jsonl records decode_warnings and damaged_frames (the damaged "
        "picture up to the next keyframe) and no sample uses those frames",
    )
    p.add_argument(
        "--frame-rate",
        type=_positive_float,
        default=None,
        metavar="FPS",
        help="frame rate of frame folders (numbered images) that have no sidecar (fps.txt, "
        "MOTChallenge seqinfo.ini); default 25",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_video_options(p: argparse.ArgumentParser) -> None:
    """Options shared by 'ucf101' and 'folder': the common ones, mining, transcode."""
    from data_prep.videos import DEFAULT_FLOOR, MineConfig

    d = MineConfig()
    _add_common_options(p)
    g = p.add_argument_group("motion and mining")
    g.add_argument(
        "--motion",
        choices=("flow", "diff"),
        default=d.motion,
        help="per-frame motion measure: coarse Farneback optical flow (default, as "
        "Shuffle & Learn) or frame difference (about 3x faster, fooled more by "
        "lighting changes)",
    )
    g.add_argument(
        "--motion-width",
        type=_positive,
        default=d.motion_width,
        metavar="PX",
        help=f"width of the grey frames motion is measured on (default "
        f"{d.motion_width}: coarse, as the window choice needs; 80 costs about 2.5x)",
    )
    g.add_argument(
        "--quantile",
        type=_fraction,
        default=d.quantile,
        metavar="Q",
        help=f"a high-motion window lies above this quantile of the video's own "
        f"smoothed motion (default {d.quantile})",
    )
    g.add_argument(
        "--floor",
        type=float,
        default=None,
        metavar="E",
        help=f"... and above this absolute motion (default {DEFAULT_FLOOR['flow']} frame "
        f"widths per frame for flow, {DEFAULT_FLOOR['diff']} grey levels/255 for diff), so a "
        "still video yields no samples",
    )
    g.add_argument(
        "--tuples-per-video",
        type=int,
        default=d.tuples_per_video,
        metavar="N",
        help=f"Shuffle & Learn tuples per video (default {d.tuples_per_video}: the "
        "paper's ~900k from UCF-101 split 1)",
    )
    g.add_argument(
        "--positive-ratio",
        type=_fraction,
        default=d.positive_ratio,
        metavar="R",
        help=f"share of ordered tuples (default {d.positive_ratio}: best in the paper)",
    )
    g.add_argument(
        "--tau-max",
        type=_positive,
        default=d.tau_max,
        metavar="F",
        help=f"max frames between the first and last frame of a positive (default {d.tau_max})",
    )
    g.add_argument(
        "--tau-min",
        type=_positive,
        default=d.tau_min,
        metavar="F",
        help=f"min frames between a negative's out-of-order frame and its neighbour "
        f"(default {d.tau_min})",
    )
    g.add_argument(
        "--questions-per-video",
        type=int,
        default=d.questions_per_video,
        metavar="N",
        help=f"Odd-One-Out questions per video (default "
        f"{d.questions_per_video}; {d.o3n_subsequences} subsequences of "
        f"{d.o3n_length} frames)",
    )
    g.add_argument(
        "--clips-per-video",
        type=int,
        default=d.clips_per_video,
        metavar="N",
        help=f"arrow-of-time clips per video (default {d.clips_per_video}; "
        f"{d.arrow_length} frames, half reversed)",
    )
    g.add_argument(
        "--arrow-max-stride",
        type=_positive,
        default=d.arrow_max_stride,
        metavar="S",
        help=f"an arrow clip's frames are 1..S frames apart, drawn per clip (default "
        f"{d.arrow_max_stride}); larger spans more time (Wei et al. sample at lower rates)",
    )
    p.add_argument(
        "--transcode",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write a training cache in DIR: each video as constant-rate H.264 "
        "with a keyframe every 8 frames (short side <= 256) plus its audio as mono "
        "wav; same frame indices, far cheaper random reads (BENCHMARKS.md)",
    )


def _mine_config(args: argparse.Namespace) -> MineConfig:
    from data_prep.videos import MineConfig

    return MineConfig(
        seed=args.seed,
        motion=args.motion,
        motion_width=args.motion_width,
        quantile=args.quantile,
        floor=args.floor,
        tuples_per_video=args.tuples_per_video,
        positive_ratio=args.positive_ratio,
        tau_max=args.tau_max,
        tau_min=args.tau_min,
        questions_per_video=args.questions_per_video,
        clips_per_video=args.clips_per_video,
        arrow_max_stride=args.arrow_max_stride,
    )


def _run_videos(
    args: argparse.Namespace,
    scan: Scan,
    cfg: MineConfig | PairConfig | None = None,
    cache_dir: Path | None = None,
) -> int:
    from data_prep.videos import ProbeOptions, prep_videos

    if cfg is None:
        cfg, cache_dir = _mine_config(args), args.transcode
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
    if args.shard is not None:
        i, n = args.shard
        print(
            f"shard {i}/{n}: {sum(result.counts.get(k, 0) for k in ('processed', 'reused'))} "
            f"videos done in {result.seconds:.1f} s; when all {n} shards are done run "
            f"'avssl-prep merge {args.out} SHARD_DIRS...'"
        )
    else:
        print(result.summary())
    return 0


def _add_ucf101(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ucf101",
        help="UCF-101 as downloaded -> video manifests and temporal-order pretext samples",
        description=(
            "Read UCF-101 in its published layout (ROOT/<Class>/v_<Class>_gXX_cYY.avi) with the "
            "official ucfTrainTestlist, probe every listed clip (exact frame counts, audio), "
            "quarantine bad files with a reason (OUT/quarantine.csv) and mine Shuffle & "
            "Learn tuples, Odd-One-Out questions and arrow-of-time clips from each clip's "
            "high-motion windows. Pretext samples of split k come only from split k's training "
            "videos. Writes OUT/videos.jsonl, OUT/probe.jsonl, OUT/splitK/{train,test,"
            "shuffle_learn,odd_one_out,arrow_of_time}.jsonl and OUT/prep.json "
            "(docs/manifests.md). Resumes when re-run. All 13,320 clips take about 3 minutes "
            "with --workers 16 on 16 cores (--transcode adds about 15; BENCHMARKS.md)."
        ),
    )
    p.add_argument(
        "root",
        type=Path,
        metavar="ROOT",
        help="the UCF-101 folder (holding the 101 class folders), or its parent",
    )
    p.add_argument(
        "--splits",
        type=Path,
        required=True,
        metavar="DIR",
        help="the official ucfTrainTestlist folder (classInd.txt, trainlist0N.txt, testlist0N.txt)",
    )
    p.add_argument(
        "--split",
        choices=("1", "2", "3", "all"),
        default="1",
        help="which split's pretext manifests to write (default 1, as the papers "
        "report); every listed clip is probed whatever the choice",
    )
    _add_video_options(p)
    p.set_defaults(func=_run_ucf101)


def _run_ucf101(args: argparse.Namespace) -> int:
    from data_prep.scan import scan_ucf101

    try:
        scan = scan_ucf101(args.root, args.splits, args.split)
    except (OSError, ValueError) as e:
        print(f"avssl-prep ucf101: {e}", file=sys.stderr)
        return 2
    return _run_videos(args, scan)


def _add_folder(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "folder",
        help="any folder of videos -> video manifest and temporal-order pretext samples",
        description=(
            "Probe every video under ROOT (recursively; the class of a video is its first "
            "sub-folder, if any) -- video files, animated GIFs and frame folders (a folder of 2+ "
            "numbered images is one video) -- name every file it does not take and why "
            "(OUT/skipped.csv: hidden, annotation folders such as masks/, single images, sound, "
            "other suffixes), quarantine bad files with a reason (OUT/quarantine.csv) and "
            "mine Shuffle & Learn tuples, Odd-One-Out questions and arrow-of-time clips from "
            "high-motion windows. Writes OUT/videos.jsonl, OUT/probe.jsonl, "
            "OUT/{shuffle_learn,odd_one_out,arrow_of_time}.jsonl and OUT/prep.json "
            "(docs/manifests.md). Resumes when re-run."
        ),
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="a folder of videos")
    _add_video_options(p)
    p.set_defaults(func=_run_folder)


def _run_folder(args: argparse.Namespace) -> int:
    from data_prep.scan import scan_folder

    try:
        scan = scan_folder(args.root)
    except OSError as e:
        print(f"avssl-prep folder: {e}", file=sys.stderr)
        return 2
    if not scan.entries:
        print(f"avssl-prep folder: no video files or frame folders under {args.root} "
              f"({len(scan.skipped)} entries not taken)", file=sys.stderr)  # fmt: skip
        return 2
    return _run_videos(args, scan)


def _offsets(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        msg = f"expected MIN:MAX seconds such as 0.5:2, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return lo, hi


def _add_audioset(sub: argparse._SubParsersAction) -> None:
    from data_prep.av_prep import PairConfig

    d = PairConfig()
    p = sub.add_parser(
        "audioset",
        help="AudioSet downloads -> aligned (frame, audio) pairs for AVE-Net / L3 / sync",
        description=(
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
            "frames); eval lists give the test role. Format: docs/manifests.md."
        ),
    )
    p.add_argument(
        "csvs",
        type=Path,
        nargs="+",
        metavar="CSV",
        help="segment lists, e.g. balanced_train_segments.csv eval_segments.csv",
    )
    p.add_argument(
        "--videos",
        type=Path,
        required=True,
        metavar="ROOT",
        help="folder holding the downloaded clips (searched recursively)",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        default=None,
        metavar="NAME",
        help="keep segments with these classes, by display name or MID, with "
        "their ontology sub-trees: 'Musical instrument' gives the instrument "
        "subset of L3 / AVE-Net (80 classes)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="CSV",
        help="class_labels_indices.csv (default: beside the first CSV)",
    )
    p.add_argument(
        "--ontology",
        type=Path,
        default=None,
        metavar="JSON",
        help="ontology.json (default: beside the first CSV)",
    )
    p.add_argument(
        "--pattern",
        default=None,
        help="file name template relative to ROOT without suffix, e.g. "
        "'{ytid}_{start}' or 'clips/{ytid}/{start_ms}' (fields: ytid, start, "
        "start_ms, end, end_ms, any); default: the common patterns",
    )
    p.add_argument(
        "--whole-videos",
        action="store_true",
        help="files named {YTID}.ext are whole YouTube videos (the segment lies at "
        "its listed start); by default such files are taken as cut segments",
    )
    _add_common_options(p)
    g = p.add_argument_group("pairs")
    g.add_argument(
        "--window",
        type=float,
        default=d.window_s,
        metavar="S",
        help=f"audio window in seconds (default {d.window_s:g}, as L3 / AVE-Net)",
    )
    g.add_argument(
        "--frames-per-second",
        type=float,
        default=d.frames_per_s,
        metavar="R",
        help=f"frames sampled per second of usable sound (default "
        f"{d.frames_per_s:g}: 10 per AudioSet clip); each gives one positive, one "
        "correspondence negative and one sync negative",
    )
    g.add_argument(
        "--sync-offset",
        type=_offsets,
        default=(d.min_sync_offset_s, d.max_sync_offset_s),
        metavar="MIN:MAX",
        help=f"shift of sync negatives in seconds, either sign (default "
        f"{d.min_sync_offset_s:g}:{d.max_sync_offset_s:g})",
    )
    g.add_argument(
        "--keep-silent",
        action="store_true",
        help="keep videos whose audio is digitally silent (quarantined by default)",
    )
    g.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write a training cache in DIR: the sampled frames (JPEG, short "
        "side --cache-size) and each clip's sound as 16-bit mono at "
        "--cache-sample-rate, so a pair costs one small image and one slice "
        "(~40x faster than decoding the videos: 672 vs 16 pairs/s per core; BENCHMARKS.md)",
    )
    g.add_argument(
        "--cache-size",
        type=_positive,
        default=d.cache_short_side,
        metavar="PX",
        help=f"short side of cached frames (default {d.cache_short_side})",
    )
    g.add_argument(
        "--cache-sample-rate",
        type=_positive,
        default=d.cache_sample_rate,
        metavar="HZ",
        help=f"sample rate of cached audio (default {d.cache_sample_rate}, as L3 / AVE-Net)",
    )
    g.add_argument(
        "--cache-format",
        choices=("jpeg", "raw"),
        default=d.cache_format,
        help="cached frames as JPEG (default, ~20x smaller) or raw uint8 arrays (exact, no decode)",
    )
    p.set_defaults(func=_run_audioset)


def _run_audioset(args: argparse.Namespace) -> int:
    from data_prep.av_prep import PairConfig
    from data_prep.scan import scan_audioset

    try:
        scan = scan_audioset(
            args.csvs,
            args.videos,
            classes=args.classes,
            labels_csv=args.labels,
            ontology_json=args.ontology,
            pattern=args.pattern,
            cut=False if args.whole_videos else None,
        )
    except (OSError, ValueError) as e:
        print(f"avssl-prep audioset: {e}", file=sys.stderr)
        return 2
    if not scan.entries:
        print(
            f"avssl-prep audioset: none of the {len(scan.missing)} listed segments has a "
            f"file under {args.videos}",
            file=sys.stderr,
        )
        return 2
    cfg = PairConfig(
        seed=args.seed,
        window_s=args.window,
        frames_per_s=args.frames_per_second,
        min_sync_offset_s=args.sync_offset[0],
        max_sync_offset_s=args.sync_offset[1],
        require_audible=not args.keep_silent,
        cache=args.cache is not None,
        cache_short_side=args.cache_size,
        cache_sample_rate=args.cache_sample_rate,
        cache_format=args.cache_format,
    )
    return _run_videos(args, scan, cfg, args.cache)


def _add_esc50(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "esc50",
        help="ESC-50 as downloaded -> clip manifest with the official 5 folds",
        description=(
            "Read ESC-50 in its published layout (ESC-50-master/audio/*.wav and "
            "ESC-50-master/meta/esc50.csv), validate the csv (folds 1-5, targets 0-49 with one "
            "category each, unique file names; errors name file:line), probe every listed wav "
            "that is on disk (decoded duration, rate, channels, audibility) and quarantine bad "
            "files with a reason. Folds are kept exactly as the csv gives them: evaluate with "
            "5-fold cross-validation, never a re-split. Writes OUT/clips.jsonl, "
            "OUT/quarantine.csv, OUT/missing.csv (listed, not on disk), OUT/unlisted.csv (on "
            "disk, not listed) and OUT/prep.json (docs/manifests.md); re-running gives "
            "identical files. Probing takes about 5 ms per 5 s clip on one core."
        ),
    )
    p.add_argument(
        "root",
        type=Path,
        metavar="ROOT",
        help="the ESC-50-master folder (holding audio/ and meta/), or the folder that holds it",
    )
    _add_audio_common(p)
    p.set_defaults(func=_run_esc50)


def _add_audio_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT",
        help="output directory for the manifests (created; files in it are replaced)",
    )
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="W",
        help="probing processes (default: one per CPU core, at most 8, and at most one per "
        "500 files: each worker takes a few seconds to start)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="per-file decode time limit in seconds (default 120); a file that exceeds it is "
        "quarantined",
    )
    from data_prep.shards import SHARD_HELP

    p.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help=SHARD_HELP.format(command=p.prog.split()[-1]),
    )


def _run_esc50(args: argparse.Namespace) -> int:
    from data_prep.audio_sets import prep_esc50

    try:
        result = prep_esc50(
            args.root, args.out, workers=args.workers, timeout_s=args.timeout, shard=args.shard
        )
    except (OSError, ValueError) as e:
        print(f"avssl-prep esc50: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def _add_audio_folder(sub: argparse._SubParsersAction) -> None:
    from data_prep.audio_sets import AUDIO_SUFFIXES

    p = sub.add_parser(
        "audio-folder",
        help="any labelled folder of audio files -> clip manifest (labels and folds from paths)",
        description=(
            "Match every audio file under ROOT against --pattern, a template over its path "
            "relative to ROOT (without the audio suffix unless the pattern ends with one): "
            "{name} matches characters other than / and _, {name:seg} anything but /, "
            "{name:path} anything; other text is literal; fields named _... are not kept. "
            "Examples: FSDD '{label}_{speaker}_{take}', one folder per class "
            "'{label:seg}/{_:seg}'. Files that do not match are listed in OUT/unmatched.csv. "
            "Class ids number the labels in natural order ('2' before '10'). Probes every "
            "matched file, quarantines bad ones, writes OUT/clips.jsonl (every pattern field "
            "kept as a column), OUT/quarantine.csv, OUT/unmatched.csv and OUT/prep.json "
            "(docs/manifests.md); re-running gives identical files. The ESC-50 protocol "
            "(linear SVM over the folds) runs on the result."
        ),
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="the folder of audio files")
    p.add_argument(
        "--pattern",
        required=True,
        metavar="TEMPLATE",
        help="path template with named fields, e.g. '{label}_{speaker}_{take}' (quote it)",
    )
    p.add_argument(
        "--label-field",
        default="label",
        metavar="NAME",
        help="the pattern field that holds the class label (default: label)",
    )
    p.add_argument(
        "--fold-field",
        default=None,
        metavar="NAME",
        help="the pattern field that decides the fold: one fold per distinct value (e.g. "
        "speaker: leave-one-speaker-out), or with --num-folds K the sorted values cut into K "
        "contiguous groups (e.g. take with K=5: takes 0-9 in fold 1, ...)",
    )
    p.add_argument(
        "--num-folds",
        type=_positive,
        default=None,
        metavar="K",
        help="number of folds; without --fold-field each file's fold comes from a hash of its "
        "path (stable, but files from one recording may land in different folds). Without "
        "either option every clip is in fold 1",
    )
    p.add_argument(
        "--suffixes",
        default=",".join(AUDIO_SUFFIXES),
        metavar="LIST",
        help="comma-separated audio file suffixes to consider, case-insensitive (default "
        f"{','.join(AUDIO_SUFFIXES)}); hidden files and folders are always skipped",
    )
    p.add_argument(
        "--name",
        default="audio-folder",
        metavar="NAME",
        help="the dataset's name in prep.json and the summary (default audio-folder)",
    )
    _add_audio_common(p)
    p.set_defaults(func=_run_audio_folder)


def _run_audio_folder(args: argparse.Namespace) -> int:
    from data_prep.audio_sets import prep_audio_folder

    try:
        result = prep_audio_folder(
            args.root,
            args.out,
            pattern=args.pattern,
            label_field=args.label_field,
            fold_field=args.fold_field,
            num_folds=args.num_folds,
            suffixes=[s for s in args.suffixes.split(",") if s.strip()],
            dataset=args.name,
            workers=args.workers,
            timeout_s=args.timeout,
            shard=args.shard,
        )
    except (OSError, ValueError) as e:
        print(f"avssl-prep audio-folder: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="combine the shards of a sharded prep (ucf101, folder, audioset, esc50, "
        "audio-folder, images) into one set of manifests",
        description=(
            "After 'avssl-prep COMMAND ... --shard I/N' has run for every I (on one machine or "
            "many), write the manifests into OUT from the shards' outputs: the video preps' "
            "records (ucf101, folder, audioset: shard-I-of-N.json) or the per-file preps' notes "
            "(esc50, audio-folder, images: COMMAND-shard-I-of-N.json; the merge re-reads the "
            "source folder, which must be where the shards saw it). Shard directories may be OUT "
            "itself (a shared file system) or copies; the result is identical to an unsharded "
            "run. Not sharded: digits and av-digits (one sheet, seconds) and synth (the built-in "
            "set, about a minute, resumes clip by clip)."
        ),
    )
    p.add_argument("out", type=Path, metavar="OUT", help="where the merged manifests go")
    p.add_argument(
        "shards",
        type=Path,
        nargs="*",
        metavar="SHARD_DIR",
        help="the shards' --out directories (default: OUT only)",
    )
    p.set_defaults(func=_run_merge)


def merge_file_shards(out: Path, notes: list[Path]) -> str:
    """Merge the per-file preps' shard notes (data_prep/shards.py) into ``out``; the summary."""
    from data_prep import shards

    command, params, results = shards.merge_notes(notes)
    if command == "esc50":
        from data_prep.audio_sets import prep_esc50

        return prep_esc50(params["root"], out, probed=results, progress=False).summary()
    if command == "audio-folder":
        from data_prep.audio_sets import prep_audio_folder

        return prep_audio_folder(
            params.pop("root"), out, probed=results, progress=False, **params
        ).summary()
    from data_prep.image_folder import prep_images

    return prep_images(params.pop("root"), out, checked=results, **params).summary()


def _run_merge(args: argparse.Namespace) -> int:
    from data_prep.shards import find_notes
    from data_prep.videos import merge_shards

    dirs = list(args.shards) or [args.out]
    try:
        notes = find_notes(dirs)
        if notes:
            print(merge_file_shards(args.out, notes))
            return 0
        result = merge_shards(args.out, dirs)
    except (OSError, ValueError) as e:
        print(f"avssl-prep merge: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


#: One entry per subcommand, in the order `--help` lists them.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_synth,
    _add_ucf101,
    _add_folder,
    _add_audioset,
    _add_esc50,
    _add_audio_folder,
    register_digits,
    register_images,
    register_av_digits,
    _add_merge,
    _add_report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avssl-prep",
        description=(
            "Prepare datasets for avssl. Start with 'avssl-prep synth' (no download, about a "
            "minute); every subcommand writes a manifest.jsonl that the trainers read, resumes "
            "when run again, and can end with a decode report ('avssl-prep report DIR')."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
