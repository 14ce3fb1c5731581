"""``avssl-prep``: the dataset preparation tools, one subcommand per dataset.

Each subcommand is added by one ``_add_*`` function listed in :data:`SUBCOMMANDS`; a new dataset
(ucf101, audioset, esc50, folder) adds its function there. Handlers return an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
            "skipped, so an interrupted build is finished by running the same command again."
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
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from data_prep.synth import build_synth

    result = build_synth(
        args.out, num_clips=args.num_clips, seed=args.seed, workers=args.workers, progress=True
    )
    print(result.summary())
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


#: One entry per subcommand, in the order `--help` lists them.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_synth, _add_report)


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
