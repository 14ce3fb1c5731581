"""``avssl-prep``: the dataset preparation tools, one subcommand per dataset (:data:`COMMANDS`).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/cli.py".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from avssl.errors import run_cli

from . import clip_image_commands as clips
from . import video_commands as videos
from .options import Command, add_options


def merge_file_shards(out: Path, notes: list[Path]) -> str:
    """Merge the per-file preps' shard notes (data_prep/shards.py) into ``out``; the summary."""
    from . import shards

    command, params, results = shards.merge_notes(notes)
    merge = COMMAND[command].merge
    assert merge is not None, command  # shards.SHARDED_COMMANDS: the commands with a merge
    return str(merge(out, params, results).summary())


def _run_merge(args: argparse.Namespace) -> str:
    from .shards import find_notes
    from .videos import merge_shards

    dirs = list(args.shards) or [args.out]
    notes = find_notes(dirs)
    if notes:
        return merge_file_shards(args.out, notes)
    return merge_shards(args.out, dirs).summary()


MERGE = Command(
    "merge",
    "combine the shards of a sharded prep (ucf101, folder, audioset, esc50, "
    "audio-folder, images) into one set of manifests",
    "After 'avssl-prep COMMAND ... --shard I/N' has run for every I (on one machine or "
    "many), write the manifests into OUT from the shards' outputs: the video preps' "
    "records (ucf101, folder, audioset: shard-I-of-N.json) or the per-file preps' notes "
    "(esc50, audio-folder, images: COMMAND-shard-I-of-N.json; the merge re-reads the "
    "source folder, which must be where the shards saw it). Shard directories may be OUT "
    "itself (a shared file system) or copies; the result is identical to an unsharded "
    "run. Not sharded: digits and av-digits (one sheet, seconds) and synth (the built-in "
    "set, about a minute, resumes clip by clip).",
    (
        ("out", {"type": Path, "metavar": "OUT"}, "where the merged manifests go"),
        (
            "shards",
            {"type": Path, "nargs": "*", "metavar": "SHARD_DIR"},
            "the shards' --out directories (default: OUT only)",
        ),
    ),
    _run_merge,
)

#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    videos.SYNTH,
    videos.UCF101,
    videos.FOLDER,
    videos.AUDIOSET,
    clips.ESC50,
    clips.AUDIO_FOLDER,
    clips.DIGITS,
    clips.IMAGES,
    clips.AV_DIGITS,
    MERGE,
    videos.REPORT,
)
COMMAND = {c.name: c for c in COMMANDS}


def _run(cmd: Command, args: argparse.Namespace) -> int:
    """``cmd.run`` under the one error guard; what it returns is printed."""
    return run_cli(f"avssl-prep {cmd.name}", partial(_run_and_print, cmd, args))


def _run_and_print(cmd: Command, args: argparse.Namespace) -> int:
    text = cmd.run(args)
    if text is not None:
        print(text)
        if (closing := wrote_line(getattr(args, "out", None), text)) is not None:
            print(closing)
    return 0


def wrote_line(out: Path | str | None, text: str) -> str | None:
    """``wrote OUT``, the closing line of a prep whose printed ``text`` does not already end by
    naming its output folder ``out``; None when it does, or the command has no ``--out``."""
    if out is None:
        return None
    last = text.rstrip().splitlines()[-1] if text.strip() else ""
    if any(str(p) in last for p in (out, Path(out).resolve())):
        return None
    return f"wrote {out}"


def add_command(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` of :data:`COMMANDS` to ``sub``; ``args.func(args)`` runs it."""
    cmd = COMMAND[name]
    p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
    add_options(p, cmd.options)
    p.set_defaults(func=partial(_run, cmd))
    return p


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
    for cmd in COMMANDS:
        add_command(sub, cmd.name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
