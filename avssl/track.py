"""``avssl-track``: carry the first frame's labels through a video with a colourisation tracker's
pointers (Vondrick et al., ECCV 2018). The command line over :func:`avssl.eval.propagation.
track_video`; how propagation works and which models it takes: docs/design/prep_tracking_cli.md,
"avssl/eval/propagation.py"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from avssl.checks import float_arg, int_arg
from avssl.cli.eval_tracking import add_propagation_options
from avssl.errors import run_cli

_DESCRIPTION = """\
Propagate the first frame's boxes or masks through a video with the pointers of a colourisation \
tracker (avssl-train colorization-tracking; Vondrick et al. 2018).

Every frame points into the first frame and the --context previous frames (locations within \
--radius cells, the --topk best, softmax at --temperature) and takes their labels; masks are the \
argmax, boxes the bounding box of each object's largest connected piece.

Writes into OUT:
  boxes.json            per-frame boxes of every object, in the video's pixels
  masks.npz             'masks': uint8 (T, h, w) index maps (0 background), at the
                        overlay size
  frames/NNNNN.png      overlays (tinted masks, boxes) every --png-every-th frame
  <stem>_track.mp4      the whole overlay video

--init: boxes.json ({"frame": 0, "boxes": [[x1, y1, x2, y2], ...], "names": [...]}, pixels of \
the video's frames; "normalized": true for [0, 1]) or a mask image (a palette/grey PNG of object \
ids, 0 background, or one colour per object on black)."""

_EPILOG = """\
Baselines: CHECKPOINT = pixels (raw lightness of 4x4 cells, the network's input), lab-pixels \
(raw colour: a reference), random:RUN (the run's network at random init). A model trained on the \
built-in synthetic set has never seen real footage. Scored runs: avssl-eval tracking \
(docs/tracking.md).

example: avssl-track runs/tracking clip.mp4 --init boxes.json --out track/clip"""


def _parser() -> argparse.ArgumentParser:
    from avssl.eval.propagation import REAL_SIZE

    p = argparse.ArgumentParser(prog="avssl-track", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a colorization_tracking run or checkpoint.pt, random:RUN, "
                   "random:BACKBONE, pixels[:S] or lab-pixels[:S]")  # fmt: skip
    p.add_argument("video", metavar="VIDEO", type=Path,
                   help="a video file, an animated GIF or a folder of numbered images (DAVIS "
                   "JPEGImages/480p/<seq>, img_00001.jpg, ...)")  # fmt: skip
    p.add_argument("--init", required=True, type=Path, metavar="FILE",
                   help="first-frame labels: boxes.json or a mask PNG (see above)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help=f"short side of the network's input (default {REAL_SIZE}, or the "
                   "video's own when smaller). Larger: finer masks, slower; at 64 small objects "
                   "cover a few cells and are lost (DAVIS-style bmx-trees: lab-pixels J 0.05 at "
                   "64, 0.25 at 240; docs/tracking.md)")  # fmt: skip
    add_propagation_options(p)
    p.add_argument("--start-frame", type=int, default=None, metavar="I",
                   help="the frame the --init labels belong to (default: the JSON's 'frame', "
                   "else 0); tracking runs forward from it")  # fmt: skip
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="track at most N frames")  # fmt: skip
    p.add_argument("--png-every", type=int, default=10, metavar="P",
                   help="overlay PNG every P-th frame (default 10; 0: none)")  # fmt: skip
    p.add_argument("--max-side", type=int, default=640, metavar="PX",
                   help="overlays, masks and mp4 at most this long side (default 640)")  # fmt: skip
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:1, ... (default: cuda if available)")  # fmt: skip
    p.add_argument("--no-video", action="store_true", help="skip the overlay mp4")
    return p


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _run(args: argparse.Namespace) -> int:
    from avssl.eval.propagation import PropagationOptions, load_embedder, track_video

    for name in ("context", "topk", "png_every"):
        int_arg(f"--{name.replace('_', '-')}", getattr(args, name), 0)
    for name, value, least in (("--size", args.size, 1), ("--max-frames", args.max_frames, 1),
                               ("--max-side", args.max_side, 2)):  # fmt: skip
        if value is not None:
            int_arg(name, value, least)
    if args.temperature is not None:
        float_arg("--temperature", args.temperature, 0.0, lo_open=True)
    embedder = load_embedder(args.checkpoint, device=_device(args.device))
    res = track_video(
        embedder, args.video, args.init, args.out, opts=PropagationOptions.from_args(args),
        size=args.size, max_frames=args.max_frames, start_frame=args.start_frame,
        png_every=args.png_every, max_side=args.max_side, write_mp4=not args.no_video,
    )  # fmt: skip
    print(f"{args.video}: {res['objects']} object(s) over {res['frames']} frames, grid "
          f"{res['grid']}, lost {res['lost']} object-frames, {res['pngs']} PNGs, "
          f"{res['seconds']:.1f} s -> {res['out']}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("avssl-track", lambda: _run(_parser().parse_args(argv)))


def entry() -> None:
    """Console-script entry point (``avssl-track``)."""
    sys.exit(main())
