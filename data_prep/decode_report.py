"""``avssl-prep report DIR``: how the decoders see a prepared dataset (probes, then timed reads).

Design notes: docs/design/prep_tracking_cli.md, "data_prep/decode_report.py".
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avssl.data import decode
from avssl.data.manifest import read_manifest, resolve_under
from avssl.types import VideoInfo


@dataclass
class _Kind:
    files: int = 0
    frames: int = 0
    header_mismatch: int = 0
    expected_mismatch: int = 0  # counted frames != the manifest's num_frames
    keyframes: list[int] = field(default_factory=list)
    seek_points: list[int] = field(default_factory=list)
    with_audio: int = 0
    audible: int = 0
    audio_codecs: set[str] = field(default_factory=set)
    backends: set[str] = field(default_factory=set)
    tuple_s: list[float] = field(default_factory=list)


def _files(root: Path) -> list[tuple[Path, int | None]]:
    """(path, expected frame count or None): the manifest's rows, else every media file."""
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        out = []
        for r in read_manifest(manifest):
            n = r.get("num_frames")
            path = resolve_under(root, r["file"], where=f"{manifest}: row {r['file']!r}")
            out.append((path, int(n) if n not in (None, "") else None))
        return out
    from .scan import scan_folder  # the same rules as avssl-prep folder

    return [(root / e.relpath, None) for e in scan_folder(root).entries]


def _probe(path: Path) -> VideoInfo | str:
    try:
        return decode.probe(path)
    except Exception as e:  # noqa: BLE001 - a report lists every failure, then goes on
        return f"{path}: {type(e).__name__}: {e}"


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.1f} ({min(values)}-{max(values)})"


def decode_report(
    root: str | os.PathLike[str],
    *,
    tuples: int = 100,
    audio_reads: int = 4,
    seed: int = 0,
    workers: int | None = None,
) -> str:
    """Probe every video under ``root`` and time ``tuples`` random 3-frame reads; return a text
    report (one screen for a single-kind dataset).

    The files come from ``root/manifest.jsonl`` when there is one (its ``num_frames`` column is
    checked against the decoded count), else from every media file under ``root``. Probing
    runs in ``workers`` processes (default: one per core, at most 8); the reads are timed in
    this process, one at a time.
    """
    base = Path(root)
    files = _files(base)
    if not files:
        return f"decode report: {base}: no videos found"
    problems: list[str] = []
    t0 = time.monotonic()
    kinds, infos = _probe_all(files, workers, problems)
    probe_s = time.monotonic() - t0
    rng = np.random.default_rng(seed)
    t_all = _time_reads(kinds, infos, tuples, rng, problems)
    audio_lines = _read_audio(infos, audio_reads, rng, problems)
    lines = [
        f"decode report: {base}",
        f"  {len(infos)}/{len(files)} files probed in {probe_s:.1f} s; backends here: "
        + ", ".join(decode.available_backends()),
        "",
        *_kinds_table(kinds),
        "",
    ]
    n_reads = sum(len(k.tuple_s) for k in kinds.values())
    if n_reads:
        per_kind = ", ".join(
            f"{name} {len(k.tuple_s) / sum(k.tuple_s):.0f}/s"
            for name, k in sorted(kinds.items())
            if k.tuple_s
        )
        lines.append(
            f"  random 3-frame tuples (backend=auto, 1 thread): {n_reads} reads, "
            f"{n_reads / t_all:.0f} clips/s ({per_kind})"
        )
    if audio_lines:
        lines.append("  whole-track audio reads:")
        lines.extend(audio_lines)
    lines.append(f"  problems: {len(problems) or 'none'}")
    lines.extend(f"    {p}" for p in problems[:10])
    if len(problems) > 10:
        lines.append(f"    ... and {len(problems) - 10} more")
    return "\n".join(lines)


def _probe_all(
    files: list[tuple[Path, int | None]], workers: int | None, problems: list[str]
) -> tuple[dict[str, _Kind], list[tuple[Path, VideoInfo]]]:
    """Every file probed (in ``workers`` processes), tallied by kind; failures to ``problems``."""
    kinds: dict[str, _Kind] = defaultdict(_Kind)
    infos: list[tuple[Path, VideoInfo]] = []
    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(files)))
    paths = [p for p, _ in files]
    if workers == 1:
        probed = [_probe(p) for p in paths]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            probed = pool.map(_probe, paths, chunksize=4)
    for (path, expected), info in zip(files, probed, strict=True):
        if isinstance(info, str):
            problems.append(info)
            continue
        k = kinds[info.kind]
        k.files += 1
        k.frames += info.num_frames
        k.header_mismatch += info.header_num_frames not in (0, info.num_frames)
        k.expected_mismatch += expected is not None and expected != info.num_frames
        k.keyframes.append(len(info.keyframes))
        # every image of a frame folder is read on its own: all are exact "seek points"
        k.seek_points.append(info.num_frames if info.is_frame_folder else len(info.seek_points))
        k.with_audio += info.has_audio
        k.audible += info.audible
        k.audio_codecs.update(a.codec for a in info.audio)
        k.backends.add(decode.choose_backend(info))
        infos.append((path, info))
    return kinds, infos


def _time_reads(
    kinds: dict[str, _Kind],
    infos: list[tuple[Path, VideoInfo]],
    tuples: int,
    rng: np.random.Generator,
    problems: list[str],
) -> float:
    """Time ``tuples`` random 3-frame reads (per kind in ``kinds``); the total seconds."""
    t_all = 0.0
    for _ in range(tuples if infos else 0):
        path, info = infos[int(rng.integers(len(infos)))]
        idx = np.sort(rng.choice(info.num_frames, size=min(3, info.num_frames), replace=False))
        t = time.perf_counter()
        try:
            decode.read_frames(path, idx, info=info)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{path}: read_frames{idx.tolist()}: {type(e).__name__}: {e}")
            continue
        dt = time.perf_counter() - t
        kinds[info.kind].tuple_s.append(dt)
        t_all += dt
    return t_all


def _read_audio(
    infos: list[tuple[Path, VideoInfo]], count: int, rng: np.random.Generator, problems: list[str]
) -> list[str]:
    """One line per whole-track read of ``count`` random files with sound."""
    lines = []
    with_audio = [(p, i) for p, i in infos if i.has_audio]
    for j in rng.permutation(len(with_audio))[:count]:
        path, info = with_audio[int(j)]
        sr = info.audio[0].sample_rate
        t = time.perf_counter()
        try:
            a = decode.read_audio(path, 0.0, info.duration_s, sample_rate=sr)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{path}: read_audio: {type(e).__name__}: {e}")
            continue
        peak = float(a.data.abs().max())
        db = 20 * np.log10(peak) if peak > 0 else -np.inf
        lines.append(
            f"    {path.name}: {a.data.shape[1]} samples at {sr} Hz, peak {db:.1f} dBFS, "
            f"{(time.perf_counter() - t) * 1e3:.0f} ms"
        )
    return lines


def _kinds_table(kinds: dict[str, _Kind]) -> list[str]:
    lines = [
        f"  {'kind':<22}{'files':>6}{'frames':>8}{'hdr!=count':>11}{'!=manifest':>11}"
        f"{'keyframes/file':>17}{'seekable':>9}{'audible':>9}  audio   auto",
    ]
    for name, k in sorted(kinds.items()):
        lines.append(
            f"  {name:<22}{k.files:>6}{k.frames:>8}{k.header_mismatch:>11}"
            f"{k.expected_mismatch:>11}{_spread(k.keyframes):>17}"
            f"{100 * sum(k.seek_points) / max(1, sum(k.keyframes)):>8.0f}%"
            f"{f'{k.audible}/{k.files}':>9}  {','.join(sorted(k.audio_codecs)) or '-':<7} "
            f"{','.join(sorted(k.backends))}"
        )
    lines.append(
        "  (hdr!=count: header frame count differs from the decoded count -- normal for packed-B "
        "AVI; seekable: keyframes verified as exact seek targets)"
    )
    return lines
