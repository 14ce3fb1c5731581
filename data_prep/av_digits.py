"""``avssl-prep av-digits``: a real audio-visual "digits" set for audio-visual correspondence
(OpenCV digit images paired by rule with FSDD spoken digits; deterministic, re-runs are no-ops).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/av_digits.py".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import remove_stale_temps

from .digits import CELL, ROWS_PER_CLASS, _split_fold, read_sheet, slice_grid
from .outputs import (
    PrepResult,
    default_data_dir,
    json_bytes,
    jsonl_bytes,
    write_if_changed,
)

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIGITS = _REPO / "../shared/data/digits/opencv-doc__digits.png"
DEFAULT_FSDD = _REPO / "../shared/data/fsdd/recordings"

SAMPLE_RATE = 16000  # audio.npy
WINDOW_S = 1.0  # one recording = one 1 s video
TEST_TAKES = 5  # takes 0..4 are test
DEFAULT_MOSAICS = 500
GALLERY_PER_CLASS = 10
SPLITS = ("train", "test")
#: normalised [x1, y1, x2, y2] of each quadrant of a 2x2 mosaic
QUADRANT_BOX = (
    [0.0, 0.0, 0.5, 0.5],
    [0.5, 0.0, 1.0, 0.5],
    [0.0, 0.5, 0.5, 1.0],
    [0.5, 0.5, 1.0, 1.0],
)
_FSDD_NAME = re.compile(r"(\d+)_([A-Za-z0-9-]+)_(\d+)")
# independent seeded streams: np.random.default_rng([seed, STREAM, ...])
_PAIRING, _NEGATIVES, _MOSAICS, _GALLERY = 1, 2, 3, 4


def _summary(out: Path, c: dict[str, Any], written: list[str]) -> str:
    return (
        f"av-digits: {c['images']} images, {c['recordings']} recordings -> "
        f"{c['pairs']['train']} train / {c['pairs']['test']} test pairs (+ as many "
        f"negatives; same digit {c['same_digit_negatives']['train']} / "
        f"{c['same_digit_negatives']['test']}), {c['mosaics']} mosaics, "
        f"{c['gallery']} gallery images in {out}; "
        f"{len(written)} files written" + (f" ({', '.join(written)})" if written else "")
    )


@dataclass(frozen=True)
class _Image:
    index: int  # row in frames.npy
    digit: int
    id: str  # "{row:02d}_{col:03d}", as avssl-prep digits names its PNGs
    split: str


@dataclass(frozen=True)
class _Recording:
    index: int  # j: samples [j * 16000, (j + 1) * 16000) of audio.npy
    digit: int
    stem: str
    split: str


def load_recording(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One recording as exactly ``WINDOW_S`` at ``sample_rate``, int16 (design notes: audio)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(str(path), dtype="int16", always_2d=True)
    y = x.astype(np.float64).mean(axis=1)
    if sr != sample_rate:
        g = math.gcd(sample_rate, sr)
        y = resample_poly(y, sample_rate // g, sr // g)
    n = round(WINDOW_S * sample_rate)
    if len(y) >= n:
        a = (len(y) - n) // 2
        y = y[a : a + n]
    else:
        a = (n - len(y)) // 2
        y = np.pad(y, (a, n - len(y) - a))
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _scan_fsdd(folder: Path) -> list[tuple[int, str, int, Path]]:
    """``(digit, speaker, take, path)`` of every ``{digit}_{speaker}_{take}.wav``, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such folder (the FSDD recordings, {{digit}}_{{speaker}}_{{take}}.wav)"
        )
    found = []
    for p in folder.iterdir():
        if p.suffix.lower() != ".wav" or p.name.startswith("."):
            continue
        m = _FSDD_NAME.fullmatch(p.stem)
        if m is None:
            raise ValueError(f"{p}: not an FSDD name {{digit}}_{{speaker}}_{{take}}.wav")
        found.append((int(m[1]), m[2], int(m[3]), p))
    if not found:
        raise FileNotFoundError(f"{folder}: no .wav recordings in it")
    return sorted(found)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _pairs(
    images: list[_Image], recs: list[_Recording], seed: int, num_classes: int
) -> dict[str, list[tuple[_Image, _Recording]]]:
    """Per split, the positive pairs (design notes: pairing), by digit then pair index."""
    out: dict[str, list[tuple[_Image, _Recording]]] = {}
    for s, split in enumerate(SPLITS):
        out[split] = []
        for d in range(num_classes):
            imgs = [im for im in images if im.split == split and im.digit == d]
            rs = [r for r in recs if r.split == split and r.digit == d]
            if not imgs or not rs:
                raise ValueError(
                    f"digit {d} has {len(imgs)} {split} images and {len(rs)} {split} recordings; "
                    "every digit needs both in both splits"
                )
            perm = np.random.default_rng([seed, _PAIRING, s, d]).permutation(len(rs))
            n = max(len(imgs), len(rs))
            out[split] += [(imgs[i % len(imgs)], rs[int(perm[i % len(rs)])]) for i in range(n)]
    return out


def _video_id(split: str, im: _Image, rec: _Recording) -> str:
    return f"{split}/{im.digit}/{im.id}+{rec.stem}"


def _avc_rows(
    split: str, pairs: list[tuple[_Image, _Recording]], seed: int
) -> tuple[list[dict[str, Any]], int]:
    """Positive and negative rows of one split, and the number of same-digit negatives."""
    n_pairs = len(pairs)
    if len({r.index for _, r in pairs}) < 2:
        raise ValueError(f"the {split} split needs at least 2 recordings for negatives")
    rng = np.random.default_rng([seed, _NEGATIVES, SPLITS.index(split)])
    rows: list[dict[str, Any]] = []
    same = 0
    for i, (im, rec) in enumerate(pairs):
        video = _video_id(split, im, rec)
        base = {"v": 1, "video": video, "frame": 0, "frame_s": 0.5, "fps": 1.0,
                "span": [0.0, 0.0, WINDOW_S], "audio_s": WINDOW_S, "labels": [str(im.digit)],
                "class_id": im.digit, "image": im.id, "recording": rec.stem,
                "cache_frames": "frames.npy", "cache_row": im.index}  # fmt: skip
        rows.append({**base, **_audio_ref(video, rec), "target": 1, "kind": "pos"})
        while True:  # another pair, uniformly, whose recording differs
            b = int(rng.integers(n_pairs - 1))
            b += b >= i
            o_im, o_rec = pairs[b]
            if o_rec.index != rec.index:
                break
        same += o_rec.digit == im.digit
        rows.append({**base, **_audio_ref(_video_id(split, o_im, o_rec), o_rec), "target": 0,
                     "kind": "other", "audio_labels": [str(o_rec.digit)]})  # fmt: skip
    return rows, same


def _audio_ref(video: str, rec: _Recording) -> dict[str, Any]:
    """The audio fields of a row whose sound is ``rec``, as the sound of ``video`` (which starts
    at its time 0: sample 0 of audio.npy is at time ``-j`` on that video's axis)."""
    j = rec.index
    return {"audio_video": video, "audio_start_s": 0.0, "cache_audio": "audio.npy",
            "cache_audio_sample": j * SAMPLE_RATE, "cache_audio_start_s": -float(j)}  # fmt: skip


def _mosaics(
    frames: np.ndarray, images: list[_Image], recs: list[_Recording], count: int, seed: int,
    num_classes: int, cell: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:  # fmt: skip
    if num_classes < 4:
        raise ValueError(f"mosaics need 4 different digits, the sheet has {num_classes}")
    test_imgs = [[im for im in images if im.split == "test" and im.digit == d]
                 for d in range(num_classes)]  # fmt: skip
    test_recs = [
        [r for r in recs if r.split == "test" and r.digit == d] for d in range(num_classes)
    ]
    rng = np.random.default_rng([seed, _MOSAICS])
    tiles = np.zeros((count, 2 * cell, 2 * cell, 3), np.uint8)
    rows = []
    for m in range(count):
        digits = [int(d) for d in rng.choice(num_classes, 4, replace=False)]
        chosen = [test_imgs[d][int(rng.integers(len(test_imgs[d])))] for d in digits]
        for q, im in enumerate(chosen):
            y, x = divmod(q, 2)
            tiles[m, y * cell : (y + 1) * cell, x * cell : (x + 1) * cell] = frames[im.index]
        q = int(rng.integers(4))
        rs = test_recs[digits[q]]
        rec = rs[int(rng.integers(len(rs)))]
        rows.append({"v": 1, "id": f"mosaic_{m:05d}", "cache_frames": "mosaics.npy",
                     "cache_row": m, "size": [2 * cell, 2 * cell], "cache_audio": "audio.npy",
                     "cache_audio_sample": rec.index * SAMPLE_RATE, "audio_s": WINDOW_S,
                     "labels": [str(digits[q])], "digits": digits, "target_quadrant": q,
                     "bbox": [QUADRANT_BOX[q]], "recording": rec.stem,
                     "images": [im.id for im in chosen],
                     "image_rows": [im.index for im in chosen]})  # fmt: skip
    return tiles, rows


def _gallery(images: list[_Image], seed: int, num_classes: int) -> list[dict[str, Any]]:
    rows = []
    for d in range(num_classes):
        imgs = [im for im in images if im.split == "test" and im.digit == d]
        perm = np.random.default_rng([seed, _GALLERY, d]).permutation(len(imgs))
        for k in perm[:GALLERY_PER_CLASS]:
            im = imgs[int(k)]
            rows.append({"v": 1, "cache_frames": "frames.npy", "cache_row": im.index,
                         "class_id": d, "labels": [str(d)], "image": im.id})  # fmt: skip
    return rows


def _digest(chunks: list[bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def prep_av_digits(
    digits_png: str | os.PathLike[str] = DEFAULT_DIGITS,
    fsdd_dir: str | os.PathLike[str] = DEFAULT_FSDD,
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    mosaics: int = DEFAULT_MOSAICS,
    cell: int = CELL,
    rows_per_class: int = ROWS_PER_CLASS,
) -> PrepResult:
    """Build the av-digits set in ``out`` (design notes). Raises FileNotFoundError for a
    missing source and ValueError for an unusable one."""
    if mosaics < 0:
        raise ValueError(f"mosaics must be >= 0, got {mosaics}")
    png, fsdd = Path(digits_png), Path(fsdd_dir)
    sheet, raw = read_sheet(png)
    wavs = _scan_fsdd(fsdd)
    cells = slice_grid(sheet, cell=cell, rows_per_class=rows_per_class)
    cols = sheet.shape[1] // cell
    num_classes = max(d for d, *_ in cells) + 1

    frames = np.stack([np.repeat(img[..., None], 3, axis=2) for *_, img in cells])
    images = [_Image(k, d, f"{r:02d}_{c:03d}", _split_fold(c, cols)[0])
              for k, (d, r, c, _) in enumerate(cells)]  # fmt: skip
    bad = sorted({d for d, *_ in wavs} - set(range(num_classes)))
    if bad:
        raise ValueError(f"{fsdd}: recordings of digits {bad}, the sheet has 0-{num_classes - 1}")
    recs = [_Recording(j, d, p.stem, "test" if take < TEST_TAKES else "train")
            for j, (d, _, take, p) in enumerate(wavs)]  # fmt: skip
    try:
        audio = np.concatenate([load_recording(p) for *_, p in wavs])
    except RuntimeError as e:  # soundfile's errors (LibsndfileError) are RuntimeErrors
        raise ValueError(f"{fsdd}: cannot read a recording: {e}") from e
    wav_digest = _digest([p.name.encode() + b"\0" + p.read_bytes() for *_, p in wavs])

    pairs = _pairs(images, recs, seed, num_classes)
    avc = {split: _avc_rows(split, pairs[split], seed) for split in SPLITS}
    tiles, loc_rows = _mosaics(frames, images, recs, mosaics, seed, num_classes, cell)
    gallery = _gallery(images, seed, num_classes)

    root = Path(out) if out is not None else default_data_dir("av-digits")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)  # a killed run's half-written files
    written: list[str] = []
    for name, arr in (("frames.npy", frames), ("audio.npy", audio), ("mosaics.npy", tiles)):
        if write_if_changed(root / name, _npy_bytes(arr)):
            written.append(name)
    manifests = {
        "avc_train.jsonl": avc["train"][0],
        "avc_test.jsonl": avc["test"][0],
        "localization_test.jsonl": loc_rows,
        "gallery_test.jsonl": gallery,
    }
    for name, rows in manifests.items():
        if write_if_changed(root / name, jsonl_bytes(rows, (",", ":"))):
            written.append(name)
    vggss = [{"file": r["id"], "class": r["labels"][0], "bbox": r["bbox"]} for r in loc_rows]
    text = "[\n" + ",\n".join(json.dumps(e) for e in vggss) + ("\n]\n" if vggss else "]\n")
    if write_if_changed(root / "localization_test.json", text.encode()):
        written.append("localization_test.json")

    counts = _counts(images, recs, pairs, avc, loc_rows, gallery)
    config = {"cache_sample_rate": SAMPLE_RATE, "window_s": WINDOW_S, "seed": seed,
              "mosaics": mosaics, "cell": cell, "rows_per_class": rows_per_class,
              "resampler": "scipy.signal.resample_poly"}  # fmt: skip
    sources = {
        "digits": {"path": str(png.resolve()),
                   "blake2b": hashlib.blake2b(raw, digest_size=16).hexdigest(),
                   "grid": {"columns": cols, "rows": sheet.shape[0] // cell}},
        "fsdd": {"path": str(fsdd.resolve()), "recordings": len(wavs),
                 "speakers": sorted({s for _, s, _, _ in wavs}), "blake2b": wav_digest},
    }  # fmt: skip
    card = _card(root, config, sources, num_classes, counts)
    if write_if_changed(root / "prep.json", json_bytes(card)):
        written.append("prep.json")
    return PrepResult(root, None, counts, _summary(root, counts, written), written)


def _counts(
    images: list[_Image],
    recs: list[_Recording],
    pairs: dict[str, list[tuple[_Image, _Recording]]],
    avc: dict[str, tuple[list[dict[str, Any]], int]],
    loc_rows: list[dict[str, Any]],
    gallery: list[dict[str, Any]],
) -> dict[str, Any]:
    img_split = Counter(im.split for im in images)
    rec_split = Counter(r.split for r in recs)
    return {
        "images": len(images),
        "images_per_split": {s: img_split[s] for s in SPLITS},
        "recordings": len(recs),
        "recordings_per_split": {s: rec_split[s] for s in SPLITS},
        "pairs": {s: len(pairs[s]) for s in SPLITS},
        "avc_rows": {s: len(avc[s][0]) for s in SPLITS},
        "same_digit_negatives": {s: avc[s][1] for s in SPLITS},
        "mosaics": len(loc_rows),
        "gallery": len(gallery),
        "per_class_pairs": {
            s: {str(d): n for d, n in sorted(Counter(im.digit for im, _ in pairs[s]).items())}
            for s in SPLITS
        },
    }


def _card(
    root: Path,
    config: dict[str, Any],
    sources: dict[str, Any],
    num_classes: int,
    counts: dict[str, Any],
) -> dict[str, Any]:
    """prep.json: the config, sources and counts, the layout of the arrays and the rules."""
    return {
        "format": "avssl-prep",
        "dataset": "av-digits",
        "version": 1,
        "cache_dir": str(root.resolve()),
        "config": config,
        "sources": sources,
        "classes": [str(d) for d in range(num_classes)],
        "counts": counts,
        "layout": {
            "frames.npy": "uint8 (N, cell, cell, 3), sheet cells row-major: row * columns + col",
            "audio.npy": f"int16, recording j (sorted by digit, speaker, take) at samples "
            f"[j * {SAMPLE_RATE}, (j + 1) * {SAMPLE_RATE})",
            "mosaics.npy": "uint8 (M, 2 cell, 2 cell, 3), quadrants TL, TR, BL, BR",
        },
        "rules": {
            "split": "images: sheet columns [0, columns/2) train, the rest test; recordings: "
            f"takes 0-{TEST_TAKES - 1} test, the rest train",
            "audio": "resample_poly to 16 kHz, centred in exactly 1 s (zero-padded equally "
            "both sides, or the centre 1 s), int16",
            "pairing": "per split and digit n = max(n_img, n_rec) pairs: image i % n_img with "
            "recording perm[i % n_rec], perm seeded by (seed, split, digit); every image and "
            "recording used",
            "negatives": "one per positive: the sound of another pair of the same split, uniform "
            "among pairs with a different recording (same digit about 10% of the time)",
            "mosaics": "4 different digits, a random test image each (TL, TR, BL, BR); the spoken "
            "quadrant uniform, a random test recording of its digit",
            "gallery": f"per digit the first {GALLERY_PER_CLASS} of a seeded permutation of its "
            "test images",
        },
    }
