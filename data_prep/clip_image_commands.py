"""The ``avssl-prep`` subcommands over audio clips and images: esc50, audio-folder, digits,
images and av-digits."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from avssl.data.suffixes import AUDIO_SUFFIXES

from . import options as opt
from .audio_folder import prep_audio_folder
from .av_digits import DEFAULT_DIGITS, DEFAULT_FSDD, DEFAULT_MOSAICS, prep_av_digits
from .digits import CELL, ROWS_PER_CLASS, prep_digits
from .esc50 import prep_esc50
from .image_folder import prep_images
from .options import Command, call_with_options, positive_int, rerun_with_results
from .shards import SHARD_HELP


def _runner(prep: Callable[..., Any], *names: str, **renamed: str) -> Callable[..., str]:
    """``run(args)``: ``prep`` on the options ``names``, ``renamed`` (parameter -> option) and
    the options named like its other keyword-only parameters."""

    def run(args: argparse.Namespace) -> str:
        kw = {k: getattr(args, v) for k, v in renamed.items()}
        return call_with_options(prep, args, *(getattr(args, n) for n in names), **kw)

    return run


def _audio_common(command: str) -> tuple[Any, ...]:
    """The options of the audio preps after their own."""
    return (
        ("--out", opt.OUT,
         "output directory for the manifests (created; files in it are replaced)"),
        ("--workers", opt.WORKERS, "probing processes (default: one per CPU core, at most 8, and "
         "at most one per 500 files: each worker takes a few seconds to start)"),
        ("--timeout", {**opt.TIMEOUT, "default": 120.0}, "per-file decode time limit in seconds "
         "(default 120); a file that exceeds it is quarantined"),
        ("--shard", opt.SHARD, SHARD_HELP.format(command=command)),
    )  # fmt: skip


_ESC50_OPTIONS = (
    ("root", {"type": Path, "metavar": "ROOT"},
     "the ESC-50-master folder (holding audio/ and meta/), or the folder that holds it"),
    *_audio_common("esc50"),
)  # fmt: skip


ESC50 = Command(
    "esc50",
    "ESC-50 as downloaded -> clip manifest with the official 5 folds",
    "Read ESC-50 in its published layout (ESC-50-master/audio/*.wav and "
    "ESC-50-master/meta/esc50.csv), validate the csv (folds 1-5, targets 0-49 with one "
    "category each, unique file names; errors name file:line), probe every listed wav "
    "that is on disk (decoded duration, rate, channels, audibility) and quarantine bad "
    "files with a reason. Folds are kept exactly as the csv gives them: evaluate with "
    "5-fold cross-validation, never a re-split. Writes OUT/clips.jsonl, "
    "OUT/quarantine.csv, OUT/missing.csv (listed, not on disk), OUT/unlisted.csv (on "
    "disk, not listed) and OUT/prep.json (docs/manifests.md); re-running gives "
    "identical files. Probing takes about 5 ms per 5 s clip on one core.",
    _ESC50_OPTIONS,
    _runner(prep_esc50, "root", "out", timeout_s="timeout"),
    partial(rerun_with_results, prep_esc50, "probed"),
)


def _run_audio_folder(args: argparse.Namespace) -> str:
    suffixes = [s for s in args.suffixes.split(",") if s.strip()]
    kw = {"suffixes": suffixes, "dataset": args.name, "timeout_s": args.timeout}
    return call_with_options(prep_audio_folder, args, args.root, args.out, **kw)


_AUDIO_FOLDER_OPTIONS = (
    ("root", {"type": Path, "metavar": "ROOT"}, "the folder of audio files"),
    ("--pattern", {"required": True, "metavar": "TEMPLATE"},
     "path template with named fields, e.g. '{label}_{speaker}_{take}' (quote it)"),
    ("--label-field", {"default": "label", "metavar": "NAME"},
     "the pattern field that holds the class label (default: label)"),
    ("--fold-field", {"default": None, "metavar": "NAME"},
     "the pattern field that decides the fold: one fold per distinct value (e.g. speaker: "
     "leave-one-speaker-out), or with --num-folds K the sorted values cut into K contiguous "
     "groups (e.g. take with K=5: takes 0-9 in fold 1, ...)"),
    ("--num-folds", {"type": positive_int, "default": None, "metavar": "K"},
     "number of folds; without --fold-field each file's fold comes from a hash of its path "
     "(stable, but files from one recording may land in different folds). Without either "
     "option every clip is in fold 1"),
    ("--suffixes", {"default": ",".join(AUDIO_SUFFIXES), "metavar": "LIST"},
     "comma-separated audio file suffixes to consider, case-insensitive (default "
     f"{','.join(AUDIO_SUFFIXES)}); hidden files and folders are always skipped"),
    ("--name", {"default": "audio-folder", "metavar": "NAME"},
     "the dataset's name in prep.json and the summary (default audio-folder)"),
    *_audio_common("audio-folder"),
)  # fmt: skip


AUDIO_FOLDER = Command(
    "audio-folder",
    "any labelled folder of audio files -> clip manifest (labels and folds from paths)",
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
    "(linear SVM over the folds) runs on the result.",
    _AUDIO_FOLDER_OPTIONS,
    _run_audio_folder,
    partial(rerun_with_results, prep_audio_folder, "probed"),
)


_DIGITS_OPTIONS = (
    ("png", {"type": Path, "metavar": "PNG"}, "the digits sheet (digits.png)"),
    ("--out", opt.OPTIONAL_OUT,
     "output directory (default: $AVSSL_DATA/digits, else ./avssl-data/digits)"),
    ("--cell", {"type": int, "default": CELL, "metavar": "PX"},
     f"side of one digit cell in pixels (default {CELL})"),
    ("--rows-per-class", {"type": int, "default": ROWS_PER_CLASS, "metavar": "N"},
     f"grid rows per digit, digit k in rows N*k..N*k+N-1 (default {ROWS_PER_CLASS})"),
)  # fmt: skip


DIGITS = Command(
    "digits",
    "the OpenCV handwritten-digits sheet -> 5,000 PNG images + an image manifest",
    "Slice the OpenCV digits sheet (digits.png: 100 columns x 50 rows of 20x20 "
    "handwritten digits, rows 5k..5k+4 holding digit k) into OUT/images/{digit}/"
    "{row}_{col}.png and write OUT/images.jsonl (path, class_id, label, split, fold) and "
    "OUT/prep.json. Split: columns 0-49 train, 50-99 test (the OpenCV tutorial); fold "
    "1 + (col // 10) % 5, 500 train and 500 test images each. Re-running gives "
    "identical files. The image set for 'avssl-eval linear | knn | retrieval'. No "
    "--shard: one sheet sliced in about a second, nothing to spread over machines.",
    _DIGITS_OPTIONS,
    _runner(prep_digits, "png", "out"),
)


_IMAGES_OPTIONS = (
    ("root", {"type": Path, "metavar": "ROOT"}, "the folder of images"),
    ("--out", {**opt.OUT, "metavar": "DIR"}, "where the manifest goes"),
    ("--test-fraction", {"type": float, "default": 0.2, "metavar": "F"},
     "share of the images held out as 'test' when ROOT has no split folders (default 0.2; "
     "by a hash of the path, so it is stable as the folder grows)"),
    ("--seed", opt.SEED, "seed of the split hash (default 0)"),
    ("--name", {"default": None}, "dataset name in reports (default: ROOT's name)"),
    ("--workers", {**opt.WORKERS, "type": int},
     "processes that open the images (default: one per core, at most 8)"),
    ("--shard", opt.SHARD, SHARD_HELP.format(command="images")),
)  # fmt: skip


IMAGES = Command(
    "images",
    "a folder of images (ImageFolder or flat) -> an image manifest, in place",
    "Index the images under ROOT (ROOT/<class>/..., ROOT/<train|val|test>/<class>/..., "
    "or files directly in ROOT without a class) into OUT/images.jsonl (path relative to "
    "ROOT, class_id, label, split, fold) with OUT/prep.json (root, classes, counts) and "
    "OUT/quarantine.csv (files that would not read: empty, unreadable, not 8-bit). The "
    "images are not copied. Without split folders, a hash of the path puts "
    "--test-fraction of them in 'test'. Re-running changes nothing. For 'avssl-train "
    "rotation|relative-position|colorization|exemplar|simclr|mae|multi-task' and "
    "'avssl-eval linear | knn | retrieval'.",
    _IMAGES_OPTIONS,
    _runner(prep_images, "root", "out"),
    partial(rerun_with_results, prep_images, "checked"),
)


_AV_DIGITS_OPTIONS = (
    ("--digits", {"type": Path, "default": DEFAULT_DIGITS, "metavar": "PNG"},
     "the OpenCV digits sheet (default: ../shared/data/digits/opencv-doc__digits.png beside "
     "the repository)"),
    ("--fsdd", {"type": Path, "default": DEFAULT_FSDD, "metavar": "DIR"},
     "the FSDD recordings folder, {digit}_{speaker}_{take}.wav (default: "
     "../shared/data/fsdd/recordings beside the repository)"),
    ("--out", opt.OPTIONAL_OUT,
     "output directory (default: $AVSSL_DATA/av-digits, else ./avssl-data/av-digits)"),
    ("--seed", opt.SEED, "seed of the pairing, negatives, mosaics and gallery (default 0)"),
    ("--mosaics", {"type": int, "default": DEFAULT_MOSAICS, "metavar": "M"},
     f"number of test localization mosaics (default {DEFAULT_MOSAICS})"),
)  # fmt: skip


AV_DIGITS = Command(
    "av-digits",
    "handwritten digits + spoken digits (FSDD) -> an audio-visual correspondence set",
    "Build a real audio-visual set for AVE-Net / AVOL-Net: a 'video' is a handwritten "
    "digit (the OpenCV digits sheet) shown for 1 s while its name is spoken (FSDD, "
    "8 kHz, resampled to 16 kHz with scipy's resample_poly and centred in exactly 1 s). "
    "Writes OUT/frames.npy (uint8 N x 20 x 20 x 3, sheet cells row-major), "
    "OUT/audio.npy (int16, recording j at samples [j*16000, (j+1)*16000)), "
    "OUT/mosaics.npy (2x2 mosaics of four different test digits), "
    "OUT/avc_{train,test}.jsonl, OUT/localization_test.jsonl (+ .json in the VGG-SS "
    "format), OUT/gallery_test.jsonl (10 test images per digit) and OUT/prep.json. "
    "Split: sheet columns 0-49 train, 50-99 test; recordings take 0-4 test, 5-49 train. "
    "Pairing: per split and digit, max(images, recordings) pairs, image i with "
    "recording i of a seeded permutation (both cycled), so every image and every "
    "recording is used: 2,500 train and 2,500 test pairs. Each positive is followed by "
    "a negative: the same image with the sound of another pair of the same split "
    "drawn at random (never the same recording), so about 10% of negatives say the "
    "same digit, as an unlabelled method would draw them. Re-running gives identical "
    "files (unchanged files are not rewritten); about 10 s. No --shard: one sheet and "
    "3,000 one-second recordings, seconds on one core.",
    _AV_DIGITS_OPTIONS,
    _runner(prep_av_digits, "digits", "fsdd", "out"),
)
