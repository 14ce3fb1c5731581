"""The built-in synthetic audio-visual dataset (``avssl-prep synth``).

Clip ``i`` depends only on ``(seed, i)`` and the generator version; a re-run skips finished clips.
Design notes: docs/design/prep_tracking_cli.md, "data_prep/synth.py".
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avssl.data.manifest import atomic_write_text, read_manifest, remove_stale_temps, write_manifest

from .outputs import default_data_dir
from .parallel import default_workers, imap_progress
from .synth_scene import (
    CLASSES,
    SynthConfig,
    clip_container,
    clip_id,
    make_clip,
    plan_scene,
)

DEFAULT_NUM_CLIPS = 320  # 40 per class; builds in about a minute on 2 cores


def fingerprint(cfg: SynthConfig, seed: int, index: int) -> str:
    """What clip ``index`` depends on; a clip built with another fingerprint is rebuilt."""
    text = json.dumps([asdict(cfg), seed, index], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paths(root: Path, cfg: SynthConfig, index: int) -> tuple[Path, Path, Path]:
    cid = clip_id(index)
    video = root / "videos" / f"{cid}.{clip_container(cfg, index)}"
    return video, root / "boxes" / f"{cid}.json", root / ".done" / f"{cid}.json"


def _is_done(root: Path, cfg: SynthConfig, seed: int, index: int) -> bool:
    """A clip is done when its completion record (written last) names this fingerprint and the
    size of the video and boxes files on disk."""
    video, boxes, done = _paths(root, cfg, index)
    try:
        rec = json.loads(done.read_text())
        return bool(
            rec["fingerprint"] == fingerprint(cfg, seed, index)
            and video.stat().st_size == rec["video_bytes"] > 0
            and boxes.stat().st_size == rec["boxes_bytes"] > 0
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_clip(job: tuple[Path, SynthConfig, int, int]) -> int:
    """Render and write one clip (video, then boxes, then the completion record)."""
    from avssl.data.encode import MP3_AVI_DELAY_SAMPLES, write_video

    root, cfg, seed, index = job
    frames, audio, truth = make_clip(cfg, seed, index)
    video, boxes, done = _paths(root, cfg, index)
    video.parent.mkdir(parents=True, exist_ok=True)
    if video.suffix == ".avi":
        # MP3 in AVI decodes late by the codec delay (AVI cannot signal it). Start the track that
        # much early -- the cut is the silent still margin -- so decoded sound lines up with the
        # frames and the onsets in boxes/ hold for both containers.
        d = MP3_AVI_DELAY_SAMPLES
        audio = np.concatenate([audio[:, d:], np.zeros((1, d), np.float32)], axis=1)
        write_video(video, frames, fps=cfg.fps, codec="mpeg4", gop=12, max_b_frames=1,
                    packed_b_frames=True, audio=audio, sample_rate=cfg.sample_rate)  # fmt: skip
    else:
        write_video(video, frames, fps=cfg.fps, codec="h264", gop=12, max_b_frames=0,
                    audio=audio, sample_rate=cfg.sample_rate)  # fmt: skip
    atomic_write_text(boxes, json.dumps(truth, separators=(",", ":")) + "\n")
    record = {
        "fingerprint": fingerprint(cfg, seed, index),
        "video_bytes": video.stat().st_size,
        "boxes_bytes": boxes.stat().st_size,
    }
    atomic_write_text(done, json.dumps(record) + "\n")
    return index


def _splits(num_clips: int, seed: int, fractions: tuple[float, float] = (0.15, 0.15)) -> list[str]:
    """Per clip "train" / "val" / "test": 70/15/15 within each class, seeded."""
    out = ["train"] * num_clips
    n_cls = len(CLASSES)
    for c in range(n_cls):
        idx = np.arange(c, num_clips, n_cls)
        idx = np.random.default_rng([seed, 1_000_003, c]).permutation(idx)
        n_val, n_test = (round(f * len(idx)) for f in fractions)
        for i in idx[:n_test]:
            out[int(i)] = "test"
        for i in idx[n_test : n_test + n_val]:
            out[int(i)] = "val"
    return out


def _row(cfg: SynthConfig, seed: int, index: int, split: str) -> dict[str, Any]:
    """One line of labels.csv / manifest.jsonl (computed from the scene, without rendering)."""
    bodies, _ = plan_scene(cfg, seed, index)
    video, boxes, _ = _paths(Path("."), cfg, index)
    mp4 = video.suffix == ".mp4"
    return {
        "clip_id": clip_id(index),
        "file": video.as_posix(),
        "boxes": boxes.as_posix(),
        "split": split,
        "class_id": bodies[0].cls,
        "class_name": CLASSES[bodies[0].cls].name,
        "container": video.suffix[1:],
        "video_codec": "h264" if mp4 else "mpeg4",
        "audio_codec": "aac" if mp4 else "mp3",
        "sounding_object": 0,
        "num_objects": len(bodies),
        "distractors": ";".join(CLASSES[b.cls].name for b in bodies[1:]),
        "num_sounds": sum(t < cfg.duration_s for t, _ in bodies[0].impacts),
        "fps": cfg.fps,
        "num_frames": cfg.num_frames,
        "width": cfg.width,
        "height": cfg.height,
        "duration_s": cfg.duration_s,
        "sample_rate": cfg.sample_rate,
        "seed": seed,
    }


@dataclass
class BuildResult:
    root: Path
    num_clips: int
    built: int
    skipped: int
    seconds: float
    rows: list[dict[str, Any]]

    def summary(self) -> str:
        """A one-screen summary of the build."""
        n = self.num_clips
        rate = self.built / self.seconds if self.seconds > 0 and self.built else 0.0
        size = sum((self.root / r["file"]).stat().st_size for r in self.rows)
        splits = {s: sum(r["split"] == s for r in self.rows) for s in ("train", "val", "test")}
        kinds = {k: sum(r["container"] == k for r in self.rows) for k in ("mp4", "avi")}
        per_class = {c.name: sum(r["class_name"] == c.name for r in self.rows) for c in CLASSES}
        r0 = self.rows[0] if self.rows else {}
        lines = [
            f"synth dataset in {self.root}",
            f"  clips     {n} ({self.built} built, {self.skipped} already done) in "
            f"{self.seconds:.1f} s ({rate:.1f} clips/s)",
            f"  format    {r0.get('width')}x{r0.get('height')} @ {r0.get('fps')} fps, "
            f"{r0.get('num_frames')} frames, audio {r0.get('sample_rate')} Hz mono",
            f"  files     {kinds['mp4']} mp4 (H.264/AAC), {kinds['avi']} avi (Xvid packed-B/MP3), "
            f"{size / 1e6:.1f} MB",
            f"  splits    train {splits['train']}, val {splits['val']}, test {splits['test']}",
            "  classes   " + ", ".join(f"{k} {v}" for k, v in per_class.items()),
            "  labels    labels.csv, manifest.jsonl; boxes/{clip_id}.json; card dataset.json",
        ]
        return "\n".join(lines)


def _card(cfg: SynthConfig, seed: int, num_clips: int, rows: list[dict[str, Any]]) -> dict:
    return {
        "name": "avssl-synth",
        "version": cfg.version,
        "seed": seed,
        "num_clips": num_clips,
        "config": asdict(cfg),
        "classes": [
            {"id": i, "name": c.name, "rgb": list(c.rgb), "timbre": c.timbre, "f0_hz": c.f0_hz}
            for i, c in enumerate(CLASSES)
        ],
        "splits": {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")},
        "box_format": "[x1, y1, x2, y2]; 'boxes' normalised to [0, 1] by (W, H, W, H) like VGG-SS, "
        "'boxes_px' in pixels where pixel (i, j) covers [i, i+1) x [j, j+1)",
        "audio_alignment": "sample 0 of the decoded track is at video time 0 in both containers "
        "(the AVI's MP3 delay is pre-compensated)",
        "files": {
            "videos/": "{clip_id}.mp4 (H.264/AAC) or .avi (MPEG-4 ASP XVID, packed B, MP3)",
            "boxes/": "{clip_id}.json: per-object per-frame boxes, moving flags, impacts, onsets, "
            "still_runs",
            "labels.csv": "one row per clip (all values as text)",
            "manifest.jsonl": "the same rows with types (avssl.data.manifest.read_manifest)",
        },
        "description": (__doc__ or "").strip().split("\n\n")[0],
    }


def build_synth(
    root: str | os.PathLike[str] | None = None,
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    config: SynthConfig | None = None,
    progress: bool = True,
    on_clip: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build (or finish building) the synthetic set in ``root``; see the design notes.

    ``workers`` processes render and encode clips (default: all CPU cores, at most 8). Clips that
    are already complete are skipped, so an interrupted build resumes where it stopped.
    ``on_clip(index)`` is called in this process after each clip is written.
    """
    cfg = config or SynthConfig()
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(root) if root is not None else default_data_dir("synth")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # a killed run's half-written files
    workers = default_workers(workers)
    t0 = time.monotonic()
    todo = [i for i in range(num_clips) if not _is_done(out, cfg, seed, i)]
    intro = f"synth: building {len(todo)} of {num_clips} clips in {out} with {workers} worker(s)"
    jobs = [(out, cfg, seed, i) for i in todo]
    for index in imap_progress(_build_clip, jobs, workers, "synth", "clips built",
                               progress=progress, intro=intro):  # fmt: skip
        if on_clip is not None:
            on_clip(index)
    splits = _splits(num_clips, seed)
    rows = [_row(cfg, seed, i, splits[i]) for i in range(num_clips)]
    write_manifest(out / "labels.csv", rows)
    write_manifest(out / "manifest.jsonl", rows)
    card = _card(cfg, seed, num_clips, rows)
    atomic_write_text(out / "dataset.json", json.dumps(card, indent=1) + "\n")
    return BuildResult(
        out, num_clips, len(todo), num_clips - len(todo), time.monotonic() - t0, rows
    )


def ensure_synth(
    root: str | os.PathLike[str] | None = None,
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Return the root of a complete synthetic set, building it first when needed.

    Cheap when the set exists: it compares the dataset card with the arguments and checks that
    every file of the manifest is there; otherwise it (re)builds only what is missing.
    """
    out = Path(root) if root is not None else default_data_dir("synth")
    try:
        card = json.loads((out / "dataset.json").read_text())
        rows = read_manifest(out / "manifest.jsonl")
        if (
            card["seed"] == seed
            and card["num_clips"] == num_clips
            and card["config"] == asdict(SynthConfig())
            and len(rows) == num_clips
            and all((out / r["file"]).is_file() and (out / r["boxes"]).is_file() for r in rows)
        ):
            return out
    except (OSError, ValueError, KeyError):
        pass
    result = build_synth(out, num_clips=num_clips, seed=seed, workers=workers, progress=progress)
    if progress:
        print(result.summary(), file=sys.stderr)
    return out
