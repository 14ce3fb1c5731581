"""avssl-eval: evaluate a trained run, a checkpoint or a random-init baseline.

    avssl-eval linear    MODEL --manifest M   frozen features + logistic regression
    avssl-eval knn       MODEL --manifest M   frozen features + k-nearest-neighbour vote
    avssl-eval retrieval MODEL --manifest M   R@k, nDCG@k, mAP of one modality
    avssl-eval finetune  MODEL --manifest M   UCF-101-style fine-tuning: clip and video accuracy
    avssl-eval esc50     MODEL --manifest M   audio features + linear SVM over the official folds
    avssl-eval localization   RUN [--trials T]           heatmaps vs boxes: cIoU, AUC, pointing
    avssl-eval correspondence RUN --pairs P              audio-visual match accuracy
    avssl-eval cross-modal    RUN --images I --sounds S  audio <-> image retrieval
    avssl-eval tracking       MODEL [--manifest M]       label propagation: box IoU, AUC, J, F
                              [--davis D] [--vot D]      ... on real ground truth (DAVIS, VOT)

MODEL: a run directory, a checkpoint.pt, random:RUN or random:BACKBONE --like RUN (the run's
network at random initialisation: the baseline), random:BACKBONE, or a hand-crafted baseline
where the command has one (pixels for images, mfcc for audio); for the audio-visual commands
RUN is an ave_net / l3_net / avol_net / av_sync run, or random:RUN. Every command writes one
result JSON (docs/evaluation.md), prints its metrics and ends with 'wrote PATH': a run's under
RUN/eval/, its baseline's under RUN/eval/random/ (avssl-report RUN tables them side by side).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from avssl.cli import eval_finetune as finetune
from avssl.cli import eval_tracking
from avssl.errors import run_cli
from avssl.eval import audio, av, retrieval, vision
from avssl.eval.loading import MFCC_RECIPE
from avssl.eval.metrics import DEFAULT_C_GRID


def _call(fn: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
    """A command: ``fn`` called with the parsed options its parameters name; a ``features``
    parameter gets the :class:`~avssl.eval.vision.FeatureOptions` of the parsed options."""
    names = inspect.signature(fn).parameters

    def command(args: argparse.Namespace) -> int:
        kw = {k: getattr(args, k) for k in names if hasattr(args, k)}
        if "features" in names:
            opts = {f.name: getattr(args, f.name) for f in fields(vision.FeatureOptions)}
            kw["features"] = vision.FeatureOptions(**opts)
        return fn(**kw)

    return command


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _splits(text: str) -> list[str]:
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected split names such as train or train,val")
    return parts


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"channels\": [16]}'")
    return value


def _numbers(cast: Callable[[str], Any], example: str, text: str) -> list[Any]:
    try:
        return [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {example}, got {text!r}") from None


def _c_grid(text: str) -> list[float]:
    values = _numbers(float, "numbers such as 0.01,0.1,1", text)
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _ks(text: str) -> list[int]:
    ks = sorted(set(_numbers(int, "integers such as 1,5,10", text)))
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return ks


def _add_device(
    g: Any, batch: tuple[Callable[[str], int], int, str | None, str], device: str
) -> None:
    """``--batch-size`` (its type, default, metavar and help) and ``--device`` (its help)."""
    kind, default, metavar, help = batch
    g.add_argument("--batch-size", type=kind, default=default, metavar=metavar, help=help)
    g.add_argument("--device", default="cpu", help=device)


def _add_cache(g: Any, help: str) -> None:
    g.add_argument("--cache", type=Path, metavar="DIR", help=help)
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def add_feature_options(p: argparse.ArgumentParser) -> None:
    """MODEL, the manifest and the feature options shared by linear, knn and retrieval."""
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a checkpoint.pt, random:BACKBONE (random init; --like RUN "
        "for that run's network) or random:RUN (its network at random init), or pixels (the "
        "raw-pixel baseline)",
    )
    p.add_argument(
        "--model-kwargs",
        type=_json_dict,
        metavar="JSON",
        help="backbone keyword arguments for random:BACKBONE, e.g. "
        '\'{"channels": [16, 32, 64, 128], "spatial": 3}\'',
    )
    p.add_argument(
        "--like",
        metavar="RUN",
        help="random:BACKBONE: copy the backbone kwargs and the preprocessing of this trained "
        "run (the same as MODEL random:RUN); the result goes under RUN/eval/random/, where "
        "avssl-report RUN shows it beside the run's own",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random initialisation and of the probe (default 0)",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--manifest",
        type=Path,
        metavar="M",
        help="an image manifest (avssl-prep digits: images.jsonl), the built-in "
        "set's manifest.jsonl, or an avssl-prep video manifest (splitK/train.jsonl "
        "with its test.jsonl, videos.jsonl); a folder holding one. Default: "
        "$AVSSL_DATA/synth/manifest.jsonl",
    )
    g.add_argument(
        "--test-manifest", type=Path, metavar="M2", help="a second manifest with the test rows"
    )
    g.add_argument(
        "--split",
        metavar="K",
        help="videos.jsonl: which split's train/test roles to use (default 1)",
    )
    f = p.add_argument_group("features")
    f.add_argument(
        "--layer",
        default="out",
        help="convnet_tiny block1..blockN; caffenet conv1..conv5, pool5, fc6, fc7; "
        "resnet18 conv1, layer1..layer4; or out, the backbone's feature (default)",
    )
    for flag, default, metavar, help in (
        ("--pool", 1, "K", "average-pool conv maps to K x K before flattening (default 1: global)"),
        ("--size", None, "PX", "network input side (default: the run's aug.size, else 64)"),
        (
            "--frame-size",
            None,
            "PX",
            "videos: decode frames at PX x PX (default: the run's data.frame_size, else 64)",
        ),
        (
            "--frames",
            4,
            "K",
            "videos: frames per video, evenly spaced; features averaged (default 4)",
        ),
        ("--pixels-size", 16, "P", "pixels: average the input down to P x P (default 16)"),
    ):
        f.add_argument(flag, type=_positive, default=default, metavar=metavar, help=help)
    _add_device(
        f,
        (_positive, 128, "N", "frames per forward pass (default 128)"),
        "torch device (default cpu)",
    )
    _add_cache(f, "feature cache folder (default: <out dir>/features)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="result JSON (default RUN/eval/KIND-DATASET.json for a run, "
        "RUN/eval/random/KIND-DATASET.json for its baseline random:RUN or random:BACKBONE "
        "--like RUN, else evals/KIND-DATASET-MODEL.json)",
    )


def _add_split_options(p: argparse.ArgumentParser, *options: tuple[str, str, str]) -> None:
    """Options naming splits, ``S[,S]``: ``(flag, default split, help)``."""
    for flag, default, help in options:
        p.add_argument(flag, type=_splits, default=[default], metavar="S[,S]", help=help)


def _add_splits(p: argparse.ArgumentParser) -> None:
    _add_split_options(
        p,
        (
            "--train-splits",
            "train",
            "splits that train the probe (default train; the built-in "
            "set: train,val adds its validation clips)",
        ),
        ("--test-splits", "test", "splits it is scored on (default test)"),
    )


def _register_vision(sub: argparse._SubParsersAction) -> None:
    """``linear`` and ``knn``."""
    p = sub.add_parser(
        "linear",
        help="linear probe (logistic regression) on frozen features of an image/video set",
        description="Logistic-regression probe on frozen features from --layer of MODEL: C "
        "chosen on a held-out part of the training split only, then refitted and scored once "
        "on the test split. Writes accuracy, balanced accuracy and the confusion matrix. "
        "Features are cached (shared with knn and retrieval). See avssl/eval/vision.py.",
    )
    add_feature_options(p)
    _add_splits(p)
    p.add_argument(
        "--C-grid",
        dest="c_grid",
        type=_c_grid,
        default=list(DEFAULT_C_GRID),
        metavar="C[,C]",
        help="inverse regularisation strengths to choose from "
        f"(default {','.join(str(c) for c in DEFAULT_C_GRID)})",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of each class of the training split held out to choose C (default 0.2)",
    )
    p.add_argument(
        "--max-iter",
        type=_positive,
        default=1000,
        metavar="N",
        help="lbfgs iterations per fit (default 1000)",
    )
    p.set_defaults(func=_call(vision.run_linear))

    p = sub.add_parser(
        "knn",
        help="weighted k-nearest-neighbour accuracy on frozen features",
        description="Weighted kNN (cosine similarity, votes exp(s/T)) from the training split "
        "to the test split on frozen features from --layer of MODEL. Features are cached "
        "(shared with linear and retrieval). See avssl/eval/vision.py.",
    )
    add_feature_options(p)
    _add_splits(p)
    p.add_argument("--k", type=_positive, default=20, help="neighbours (default 20)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.07,
        metavar="T",
        help="vote weight exp(similarity / T) (default 0.07; 0: majority vote)",
    )
    p.set_defaults(func=_call(vision.run_knn))


def _register_retrieval(sub: argparse._SubParsersAction) -> None:
    """``retrieval``."""
    p = sub.add_parser(
        "retrieval",
        help="R@k, nDCG@k and mAP of frozen features (queries -> gallery by cosine similarity)",
        description="Intra-modal retrieval on frozen features from --layer of MODEL: each query "
        "row ranks the gallery rows by cosine similarity; relevance = same class, or graded by "
        "the AudioSet ontology for rows with label lists. Writes R@k, nDCG@k, mAP and the top "
        "lists of the first queries (for retrieval grids). Features are cached (shared with "
        "linear and knn). See avssl/eval/retrieval.py.",
    )
    add_feature_options(p)
    _add_split_options(
        p,
        ("--queries", "test", "splits whose rows are the queries (default test)"),
        ("--gallery", "train", "splits whose rows are ranked (default train)"),
    )
    p.add_argument(
        "--ks",
        type=_ks,
        default=[1, 5, 10, 30],
        metavar="K[,K]",
        help="cut-offs of R@k and nDCG@k (default 1,5,10,30)",
    )
    p.add_argument(
        "--exclude-self",
        action=argparse.BooleanOptionalAction,
        help="drop each query from its own ranking (default: on when queries and "
        "gallery are the same rows)",
    )
    p.add_argument(
        "--ontology",
        metavar="PATH",
        help="AudioSet ontology.json for rows with label lists (default: the shared "
        "data's); 'none': Jaccard overlap of the label sets",
    )
    p.add_argument(
        "--show",
        type=int,
        default=8,
        metavar="N",
        help="record the top lists of the first N queries in extra.top (default 8)",
    )
    p.add_argument(
        "--show-k",
        type=int,
        default=10,
        metavar="K",
        help="items per recorded top list (default 10)",
    )
    p.add_argument(
        "--cross-modal",
        action="store_true",
        help="image->audio and audio->image retrieval: see 'avssl-eval cross-modal' "
        "(exits with status 2)",
    )
    p.set_defaults(func=_call(retrieval.run_retrieval))


def _register_audio(sub: argparse._SubParsersAction) -> None:
    """``esc50``."""
    p = sub.add_parser(
        "esc50",
        help="audio features + linear SVM over a manifest's folds (ESC-50 protocol)",
        description=(
            "ESC-50 protocol (METHODS.md): features of the audio tower's block --layer on "
            "--window-s windows every --hop-s (short clips zero-padded to one window), "
            "max-pooled over frequency and time, averaged per clip; linear SVM, leave one "
            "fold out, C chosen on the training folds only; accuracy mean +- std over folds. "
            "MODEL: random:audio_tiny | random:audio_vgg (random-init baseline), a run dir or "
            "checkpoint with an audio tower, or mfcc (MFCC + deltas, mean/std over time). "
            "--manifest: clips.jsonl of avssl-prep esc50 / audio-folder (or its folder), or "
            "the synth manifest.jsonl (folds: class rank mod 5). See avssl/eval/audio.py."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="random:NAME, a run dir / checkpoint, or mfcc")
    p.add_argument(
        "--manifest",
        required=True,
        metavar="PATH",
        help="clips.jsonl (or its prep folder) or a synth manifest.jsonl",
    )
    p.add_argument(
        "--layer", type=int, help="conv block whose output is pooled (1..blocks; default the last)"
    )
    p.add_argument("--window-s", type=float, default=1.0, help="window length (s, default 1)")
    p.add_argument("--hop-s", type=float, default=0.5, help="hop between windows (s, default 0.5)")
    p.add_argument(
        "--pool",
        choices=("max", "avg"),
        default="max",
        help="pooling of a window's map over frequency and time (default max)",
    )
    p.add_argument(
        "--grid",
        default="1x1",
        metavar="FxT",
        help="pool to an F x T grid instead of one vector (L3 used 4x3; default 1x1)",
    )
    p.add_argument(
        "--folds", default="all", help="'all' or a comma list: evaluate on these folds only (>= 3)"
    )
    p.add_argument(
        "--c-grid",
        metavar="LIST",
        help="comma list of SVM C values (default 0.001,0.01,0.1,1,10,100)",
    )
    p.add_argument(
        "--no-standardize", action="store_true", help="do not standardise features before the SVM"
    )
    p.add_argument("--max-iter", type=int, default=10000, help="solver iterations per fit")
    p.add_argument("--seed", type=int, default=0, help="random-init and SVM seed (default 0)")
    p.add_argument(
        "--model-kwargs",
        metavar="JSON",
        help='audio tower keywords, e.g. \'{"width": 0.5, "blocks": 3}\'',
    )
    p.add_argument(
        "--frontend",
        metavar="JSON",
        help='front-end overrides, e.g. \'{"sample_rate": 16000, "n_fft": 256}\' or '
        '\'{"kind": "logmel", "n_mels": 64}\' (default: 48 kHz log-spectrogram)',
    )
    p.add_argument(
        "--like",
        metavar="RUN",
        help="random:NAME only: copy the tower and front-end settings of this run",
    )
    p.add_argument(
        "--n-mfcc",
        type=int,
        default=MFCC_RECIPE["n_mfcc"],
        help="mfcc only: number of coefficients (default 20)",
    )
    _add_device(
        p,
        (int, 16, None, "windows per forward pass"),
        "torch device for the features (default cpu)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="result JSON (default RUN/eval/esc50-DATASET.json for a run, "
        "RUN/eval/random/esc50-DATASET.json for random:RUN or random:NAME --like RUN, else "
        "evals/esc50-DATASET-MODELTAG.json)",
    )
    _add_cache(p, "feature cache folder (default OUT_DIR/features)")
    p.set_defaults(func=_call(audio.run_esc50))


def _register_av(sub: argparse._SubParsersAction) -> None:
    """``localization``, ``correspondence`` and ``cross-modal``."""
    out = {"metavar": "DIR", "help": "default: RUN/eval (random:RUN: RUN/eval/random)"}
    p = sub.add_parser(
        "localization",
        help="sound-source localization: cIoU@0.5, AUC, pointing game; silent and "
        "mismatched-sound trials",
        description="Heatmaps of an audio-visual run (ave_net, l3_net, avol_net, av_sync) on "
        "trials with ground-truth boxes: cIoU@0.5 and AUC (heatmap binarised at its median), "
        "pointing game, and the same trials with silent and with mismatched sound, where a "
        "model that follows the sound should say 'no match' and stop pointing at the object. "
        "Writes OUT/localization.json and heatmap sheets in OUT/heatmaps. See "
        "avssl/eval/av.py.",
    )
    p.add_argument("model", metavar="MODEL", help="an audio-visual run directory or checkpoint")
    p.add_argument(
        "--trials",
        metavar="JSONL",
        help="trials manifest (rows with bbox): avssl-data/synth/av/"
        "localization_test.jsonl, avssl-data/av-digits/localization_test.jsonl; "
        "default: the one beside the run's manifest",
    )
    p.add_argument("--out", **out)
    p.add_argument(
        "--frame-size",
        type=int,
        metavar="PX",
        help="decode frames at this size (default: the run's data.frame_size; "
        "the digit mosaics: twice it)",
    )
    p.add_argument(
        "--max-trials",
        type=int,
        metavar="N",
        help="evaluate N trials spread over the manifest (default: all)",
    )
    p.add_argument(
        "--pictures",
        type=int,
        default=av.PICTURES,
        metavar="N",
        help=f"heatmap sheets to write: one trial each of N clips spread over the trials "
        f"(default {av.PICTURES})",
    )
    p.set_defaults(func=_call(av.run_localization))

    p = sub.add_parser(
        "correspondence",
        help="audio-visual correspondence accuracy of a two-tower run on held-out pairs",
        description="Each positive of --pairs with its own sound or, half the time, another "
        "video's sound cut on its frame grid (av_sync runs: the same video's, shifted), as "
        "avssl-train validates; accuracy of 'match' = match logit > 0. MODEL: a run or "
        "random:RUN (the same network at random initialisation).",
    )
    run, pairs = (
        "an audio-visual run, or random:RUN",
        "a pair manifest, e.g. avssl-data/av-digits/avc_test.jsonl",
    )
    p.add_argument("model", metavar="MODEL", help=run)
    p.add_argument("--pairs", required=True, metavar="JSONL", help=pairs)
    p.add_argument(
        "--max-pairs",
        type=int,
        metavar="N",
        help="use N rows spread over the manifest (default: all)",
    )
    p.add_argument(
        "--grid",
        action=argparse.BooleanOptionalAction,
        help="cut the negatives on the frame grid (--grid) or anywhere (--no-grid); "
        "default: as the run was trained (the shortcut experiment crosses them)",
    )
    p.add_argument("--out", **out)
    p.set_defaults(func=_call(av.run_correspondence))

    p = sub.add_parser(
        "cross-modal",
        help="audio->image and image->audio retrieval with a two-tower audio-visual run",
        description="Embed the images of --images with the vision tower and the distinct sounds "
        "of --sounds (a pair manifest's positives) with the audio tower; rank by cosine "
        "similarity in both directions; relevance = same label. R@k, nDCG@k, mAP. MODEL: an "
        "audio-visual run, or random:RUN for the same network at random initialisation.",
    )
    p.add_argument("model", metavar="MODEL", help=run)
    p.add_argument(
        "--images",
        required=True,
        metavar="JSONL",
        help="the gallery of images, e.g. avssl-data/av-digits/gallery_test.jsonl",
    )
    p.add_argument("--sounds", required=True, metavar="JSONL", help=pairs)
    p.add_argument(
        "--ks",
        type=lambda t: [int(x) for x in t.split(",")],
        default=[1, 5, 10],
        metavar="K[,K]",
        help="cut-offs (default 1,5,10)",
    )
    p.add_argument("--out", **out)
    p.set_defaults(func=_call(av.run_cross_modal))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-eval",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="KIND", required=True)
    _register_vision(sub)
    _register_retrieval(sub)
    finetune.register(sub)
    _register_audio(sub)
    _register_av(sub)
    eval_tracking.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # the result's "command"
    return run_cli("avssl-eval", lambda: args.func(args))


def entry() -> None:
    sys.exit(main())
