"""``avssl-eval tracking``: its arguments and the command (the synth clips:
:mod:`avssl.eval.tracking`; real DAVIS / VOT ground truth: :mod:`avssl.eval.tracking_bench`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avssl.errors import run_cli

if TYPE_CHECKING:
    from avssl.eval.tracking_bench import BoxSequence, MaskSequence


_HELP = (
    "label propagation on the built-in set, or on real DAVIS / VOT ground truth "
    "(--davis, --vot): box IoU, success AUC, J and F, against copying the first frame"
)
_DESCRIPTION = (
    "Track every object of the held-out synth clips from its frame-0 box (box "
    "IoU, success AUC) and from its frame-0 mask (J, F) with a colourisation tracker "
    "(avssl-train colorization-tracking), a random-init network or raw pixels, and score "
    "copying frame 0 alongside. Writes OUT/tracking.json and picture strips in "
    "OUT/pictures. With --davis and/or --vot, real sequences instead: the DAVIS-2017 "
    "semi-supervised protocol (J, F, J&F as the official toolkit computes them) and VOT "
    "boxes (IoU, success AUC), written to OUT/tracking_bench.json. On real footage use a "
    "larger --size than the default (e.g. 240: at 64 px small objects are a few cells and "
    "every model falls below copying the first frame; docs/tracking.md). See "
    "avssl/eval/tracking.py, avssl/eval/tracking_bench.py and docs/tracking.md."
)


def add_propagation_options(p: argparse.ArgumentParser) -> None:
    """The pointer settings of label propagation (``avssl-track``, ``avssl-eval tracking``)."""
    p.add_argument("--context", type=int, default=3, metavar="K", help="previous frames used "
                   "as references besides the first (default 3)")  # fmt: skip
    p.add_argument("--radius", type=float, default=8.0, metavar="CELLS", help="how far (feature "
                   "cells) a location may point; <= 0: anywhere (default 8)")  # fmt: skip
    p.add_argument("--topk", type=int, default=10, metavar="K",
                   help="references kept per location (default 10; 0: all)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="softmax temperature (default: the model's; pixels: 0.03)")  # fmt: skip


def run_tracking(args: argparse.Namespace) -> int:
    """Score ``args.model`` on the synth's clips (or ``--davis`` / ``--vot``), print, write JSON."""
    from avssl.eval.propagation import PropagationOptions
    from avssl.eval.results import write_result
    from avssl.eval.tracking import evaluate_tracking

    run = args.model.removeprefix("random:")
    if args.out:
        out = Path(args.out)
    elif Path(run).is_dir():  # random:RUN, the baseline: beside the run's own result
        out = Path(run) / "eval" / "random" if run != args.model else Path(run) / "eval"
    else:
        raise ValueError("--out is needed when MODEL is not a run directory or random:RUN")
    if args.davis or args.vot:  # real ground truth: avssl/eval/tracking_bench.py
        return run_bench(args, out)
    manifest = Path(args.manifest or Path(os.environ.get("AVSSL_DATA", "avssl-data")) / "synth"
                    / "manifest.jsonl")  # fmt: skip
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no synth manifest; run 'avssl-prep synth' first")
    t0 = time.monotonic()
    rep = evaluate_tracking(args.model, manifest, split=args.split, size=args.size,
                            opts=PropagationOptions.from_args(args), max_clips=args.max_clips,
                            pictures=args.pictures, out=out)  # fmt: skip
    path = out / "tracking.json"
    out.mkdir(parents=True, exist_ok=True)
    write_result(path, "tracking", args.argv, t0, model=rep["embedder"],
                 dataset={"name": str(manifest), "split": args.split, "clips": len(rep["clips"]),
                          "tracks": rep["tracks"]},
                 metrics=rep["metrics"],
                 extra={"size": rep["size"], "settings": rep["settings"], "clips": rep["clips"],
                        "pictures": rep["pictures"]})  # fmt: skip
    m = rep["metrics"]
    print(f"tracking: {args.model} on {len(rep['clips'])} {args.split} clips, {rep['tracks']} "
          f"objects, input {rep['size']} px")  # fmt: skip
    print(f"  {'':<18}{'tracker':>10}{'copy first':>12}")
    for key, value in m["tracker"].items():
        print(f"  {key:<18}{value:>10.4f}{m['copy_first'].get(key, float('nan')):>12.4f}")
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tracking`` to ``avssl-eval``."""
    p = sub.add_parser("tracking", help=_HELP, description=_DESCRIPTION)
    p.add_argument("model", metavar="MODEL",
                   help="a colorization_tracking run or checkpoint, random:RUN, random:BACKBONE, "
                   "pixels[:S] or lab-pixels[:S]")  # fmt: skip
    p.add_argument("--manifest", default=None, metavar="JSONL", help="the synth manifest "
                   "(default $AVSSL_DATA/synth/manifest.jsonl)")  # fmt: skip
    p.add_argument("--split", default="test",
                   help="clips of this split (default test; tune settings on val)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR",
                   help="default: RUN/eval for a run, RUN/eval/random for random:RUN")  # fmt: skip
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="network input side (default: the run's data.frame_size, 64 for "
                   "pixels; with --davis/--vot 240 px short side, or the video's own when "
                   "smaller)")  # fmt: skip
    add_propagation_options(p)
    p.add_argument("--max-clips", type=int, default=None, metavar="N",
                   help="N clips spread over the split (default: all)")  # fmt: skip
    p.add_argument("--pictures", type=int, default=4, metavar="N",
                   help="picture strips of the first N clips (default 4); with --davis/--vot, "
                   "sheets of the first N sequences: the given frame and 4 scored ones, tracked "
                   "mask tinted, ground truth outlined (OUT/pictures/SEQ.png)")  # fmt: skip
    g = p.add_argument_group("real ground truth (avssl/eval/tracking_bench.py; replaces the "
                             "synth set)")  # fmt: skip
    g.add_argument("--davis", default=None, metavar="DIR",
                   help="DAVIS-2017 semi-supervised J, F, J&F on DIR/JPEGImages/RES/SEQ + "
                   "DIR/Annotations/RES/SEQ, or on sequence folders holding masks/ and frames/ "
                   "(or a video file)")  # fmt: skip
    g.add_argument("--vot", default=None, metavar="DIR",
                   help="box IoU and success AUC on sequence folders holding groundtruth.txt "
                   "(x,y,w,h or 4 corners per frame) and frames/, color/ or images")  # fmt: skip
    g.add_argument("--resolution", default="480p", metavar="RES", help="DAVIS resolution (480p)")
    g.add_argument("--sequences", default=None, metavar="A,B", help="only these sequences")
    g.add_argument("--imageset", default=None, metavar="SET",
                   help="only the sequences listed in a DAVIS ImageSets file: 2017/val "
                   "(DIR/ImageSets/2017/val.txt), val (the newest year's) or a .txt "
                   "path")  # fmt: skip
    g.add_argument("--void", choices=("background", "ignore"), default="background",
                   help="DAVIS 255 pixels: background (what the official toolkit computes; "
                   "default) or left out of J and F")  # fmt: skip
    p.set_defaults(func=lambda args: run_cli("avssl-eval", lambda: run_tracking(args)))


def _table(title: str, rows: list[tuple[str, str, Any, Any]], keys: tuple[str, ...],
           heads: tuple[str, ...]) -> None:  # fmt: skip
    """Rows of ``(name, count text, tracker metrics, copy-first metrics)``."""
    print(f"  {title:<38}{'tracker':^24}{'copy first':^24}")
    print(f"  {'sequence':<26}{'':>12}" + "".join(f"{h:>8}" for h in heads) * 2)
    for name, count, a, b in rows:
        vals = "".join(f"{d[x]:>8.4f}" for d in (a, b) for x in keys)
        print(f"  {name:<26}{count:>12}{vals}")


def _print_tables(davis: list[dict[str, Any]], vot: list[dict[str, Any]],
                  metrics: dict[str, Any]) -> None:  # fmt: skip
    if davis:
        m = metrics["davis"]
        rows = [(s["sequence"], f"{s['objects']} obj {s['frames_scored']} fr", s["tracker"],
                 s["copy_first"]) for s in davis]  # fmt: skip
        rows.append(("all (mean over objects)", f"{int(m['tracker']['objects'])} obj",
                     m["tracker"], m["copy_first"]))  # fmt: skip
        _table("DAVIS-2017 semi-supervised", rows, ("J", "F", "J&F"), ("J", "F", "J&F"))
    if vot:
        rows = [(s["sequence"], f"{s['frames_scored']} fr", s["tracker"], s["copy_first"])
                for s in vot]  # fmt: skip
        if len(vot) > 1:
            m = metrics["vot"]
            rows.append(("all (mean over sequences)", "", m["tracker"], m["copy_first"]))
        _table("boxes (VOT ground truth)", rows, ("mIoU", "AUC", "success@0.5"),
               ("mIoU", "AUC", "S@0.5"))  # fmt: skip


def select_sequences(
    args: argparse.Namespace,
) -> tuple[list[MaskSequence], list[BoxSequence], list[tuple[str, str]]]:
    """The mask and box sequences that ``--davis``, ``--vot``, ``--sequences`` and ``--imageset``
    name, and ``(name, reason)`` of the folders skipped (printed)."""
    from avssl.eval.tracking_bench import find_davis, find_vot, read_imageset

    names = [s for s in (args.sequences or "").split(",") if s] or None
    dnames = names
    if getattr(args, "imageset", None):  # the DAVIS side only: --vot keeps --sequences
        if not args.davis:
            raise ValueError("--imageset needs --davis (a DAVIS tree with ImageSets/)")
        listed = read_imageset(Path(args.davis), args.imageset)
        dnames = [n for n in names if n in listed] if names else listed
        if not dnames:
            raise ValueError(f"--sequences: none of them is in --imageset {args.imageset}")
    dseqs, skipped = (
        find_davis(Path(args.davis), args.resolution, dnames) if args.davis else ([], [])
    )
    vseqs, vskip = find_vot(Path(args.vot), names) if args.vot else ([], [])
    found = {s.name for s in dseqs} | {b.name for b in vseqs}
    unknown = sorted(
        (set(names or ()) | set(dnames or ())) - found - {n for n, _ in skipped + vskip}
    )
    if unknown:
        raise ValueError(f"--sequences: no sequence {unknown} under --davis / --vot")
    reasons: dict[str, str] = {}  # one reason per folder; none for one the other flag scores
    for n, w in skipped + vskip:
        if n not in found:
            reasons.setdefault(n, w)
    for name, why in reasons.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    if not dseqs and not vseqs:
        raise ValueError("no sequence with ground truth to score (see the skipped reasons)")
    return dseqs, vseqs, list(reasons.items())


def run_bench(args: argparse.Namespace, out: Path) -> int:
    """``avssl-eval tracking MODEL --davis DIR --vot DIR``: evaluate, print, write
    ``OUT/tracking_bench.json``."""
    from avssl.eval.propagation import REAL_SIZE, PropagationOptions, load_embedder
    from avssl.eval.results import write_result
    from avssl.eval.tracking_bench import davis_summary, evaluate_davis, evaluate_vot, vot_summary

    t0 = time.monotonic()
    opts = PropagationOptions.from_args(args)
    dseqs, vseqs, skipped = select_sequences(args)
    embedder = load_embedder(args.model)
    size = args.size  # None: REAL_SIZE or the video's short side, per sequence
    davis, vot = [], []
    names_all = [q.name for q in dseqs] + [q.name for q in vseqs]
    pictured = names_all[: max(0, getattr(args, "pictures", 0) or 0)]

    def picture(name: str) -> Path | None:  # sheets of the first --pictures sequences
        return out / "pictures" / f"{name}.png" if name in pictured else None

    for s in dseqs:
        davis.append(evaluate_davis(embedder, s, size=size, opts=opts, void=args.void,
                                    picture=picture(s.name)))  # fmt: skip
        print(f"  {s.name}: J&F {davis[-1]['tracker']['J&F']:.4f}", file=sys.stderr)
    for b in vseqs:
        vot.append(evaluate_vot(embedder, b, size=size, opts=opts,
                                picture=picture(b.name)))  # fmt: skip
        print(f"  {b.name}: AUC {vot[-1]['tracker']['AUC']:.4f}", file=sys.stderr)
    metrics: dict[str, Any] = {}
    if davis:
        metrics["davis"] = davis_summary(davis)
    if vot:
        metrics["vot"] = vot_summary(vot)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tracking_bench.json"
    result = write_result(
        path, "tracking-bench", getattr(args, "argv", []), t0,
        model={"spec": args.model, "kind": embedder.kind, **embedder.info},
        dataset={"davis": args.davis, "vot": args.vot, "resolution": args.resolution,
                 "void": args.void, "sequences": [s["sequence"] for s in davis + vot],
                 "skipped": [{"sequence": n, "reason": w} for n, w in skipped]},
        metrics=metrics,
        extra={"size": size or f"{REAL_SIZE} or the video's short side",
               "settings": {**opts.settings(embedder), "similarity": embedder.similarity,
                            "stride": embedder.stride},
               "davis_sequences": davis, "vot_sequences": vot},
    )  # fmt: skip
    shown = size or f"{REAL_SIZE} (or the short side)"
    print(f"tracking: {args.model} on {len(davis)} mask and {len(vot)} box sequence(s), input "
          f"{shown} px, {result['seconds']:.0f} s")  # fmt: skip
    _print_tables(davis, vot, metrics)
    print(f"wrote {path}")
    return 0
