"""``avssl-localize``: sound-source heatmaps of an audio-visual run on your own videos.
What it writes: ``avssl-localize --help``.

Design notes: docs/design/prep_tracking_cli.md, "avssl/localize.py".
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from avssl.checks import int_arg
from avssl.errors import run_cli
from avssl.eval.av import LoadedAV, load_av_model
from avssl.eval.pictures import annotated_frame
from avssl.eval.tracking_pictures import write_overlays
from avssl.types import VideoInfo

#: Seconds of sound given to the model, centred on the frame (the pair tasks' window).
AUDIO_S = 1.0
#: AAC encodes these rates; other source rates are resampled to 48 kHz for the output video.
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


@torch.no_grad()
def localize_video(
    loaded: LoadedAV,
    video: Path,
    out_dir: Path,
    *,
    every: int = 1,
    batch_size: int = 32,
    png_every: int = 10,
    device: torch.device | None = None,
    write_mp4: bool = True,
) -> dict[str, object]:
    """Heatmaps of ``video`` into ``out_dir`` (see the module); returns a summary."""
    from avssl.data import decode
    from avssl.data.manifest import atomic_output, atomic_write_text

    t0 = time.monotonic()
    device = device or torch.device("cpu")
    info = decode.probe(video)
    if info.num_frames < 1:
        raise ValueError("no decodable frames")
    wanted = list(range(0, info.num_frames, every))
    heat, probs = _heatmaps(loaded, video, info, wanted, batch_size, device)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "heatmaps.npy") as tmp:
        np.save(tmp, heat.astype(np.float16))
    lines = ["frame,time_s,match_prob"]
    lines += [f"{i},{info.pts_s[i]:.6f},{p:.6f}" for i, p in zip(wanted, probs, strict=True)]
    atomic_write_text(out_dir / "scores.csv", "\n".join(lines) + "\n")

    pngs = {wanted[k] for k in range(0, len(wanted), png_every)} if png_every > 0 else set()
    slot = {i: k for k, i in enumerate(wanted)}

    def overlays() -> Iterator[tuple[int, np.ndarray, bool]]:
        k = 0
        for i, frame in decode.iter_frames(video, info=info):
            k = slot.get(i, k)  # frames between computed ones keep the last map
            yield (
                i,
                annotated_frame(frame, heat[k], probs[k], note=_note(info, i, wanted[k])),
                i in pngs,
            )

    mp4 = out_dir / f"{video.stem}_heatmap.mp4" if write_mp4 else None
    if mp4 is not None:
        t_first = info.pts_s[0]
        track, track_sr = _sound_track(video, info, t_first)
        pts = [t - t_first for t in info.pts_s] if info.vfr else None
        write_overlays(
            overlays(), out_dir, mp4, fps=info.fps, pts_s=pts, audio=track, sample_rate=track_sr
        )
    else:  # a previous run's PNGs go (other --every); the video is decoded for new ones only
        write_overlays(overlays() if pngs else (), out_dir, None)
    return {
        "video": str(video), "out": str(out_dir), "frames": info.num_frames,
        "heatmaps": len(wanted), "grid": tuple(heat.shape[1:]), "pngs": len(pngs),
        "mp4": None if mp4 is None else str(mp4), "has_audio": info.has_audio,
        "mean_match_prob": float(np.mean(probs)), "seconds": time.monotonic() - t0,
    }  # fmt: skip


def _note(info: VideoInfo, i: int, computed: int) -> str:
    """The second line of frame ``i``'s banner: which frame and time, whose map it shows."""
    text = f"frame {i}, t = {info.pts_s[i] - info.pts_s[0]:.2f} s"
    if computed != i:
        text += f" (heatmap of frame {computed})"
    return text if info.has_audio else text + "; no sound track: scored against silence"


def _heatmaps(
    loaded: LoadedAV,
    video: Path,
    info: VideoInfo,
    wanted: list[int],
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, list[float]]:
    """Heatmaps ``(len(wanted), h, w)`` and match probabilities of the frames ``wanted``."""
    from avssl.data.dataset import FrameReader
    from avssl.data.transforms import to_float_normalized
    from avssl.tasks.av import read_frames

    model, cfg = loaded.model, loaded.cfg
    sr = int(model.sample_rate)
    size = int(cfg.data.frame_size)
    # The whole video at the model's size plus its sound track, decoded once and kept.
    need = info.num_frames * size * size * 3 + (info.duration_s + 2 * AUDIO_S) * sr * 4
    reader = FrameReader(
        video.parent,
        (size, size),
        infos={video.name: info},
        cache_mb=int(need // 2**20) + 16,
        sample_rate=sr,
    )
    if not info.has_audio:
        warnings.warn(f"{video}: no audio stream; heatmaps against silence", stacklevel=3)
    silence = np.zeros(round(AUDIO_S * sr), np.float32)

    def sound(t: float) -> np.ndarray:
        # the window centred on the frame's time; zeros where it runs past the track
        return reader.audio(video.name, t - AUDIO_S / 2, AUDIO_S) if info.has_audio else silence

    maps: list[np.ndarray] = []
    probs: list[float] = []
    for lo in range(0, len(wanted), batch_size):
        part = wanted[lo : lo + batch_size]
        rows = [{"video": video.name, "frame": i} for i in part]
        clips = torch.stack(
            [read_frames(r, reader, loaded.frames, loaded.frame_step) for r in rows]
        )
        x = to_float_normalized(clips, cfg.aug).to(device)
        audio = torch.from_numpy(np.stack([sound(info.pts_s[i]) for i in part])).to(device)
        maps.append(model.localize(x, audio).float().cpu().numpy())
        probs += torch.sigmoid(model.match_logit(x, audio).float()).cpu().tolist()
    return np.concatenate(maps), probs


def _sound_track(video: Path, info: VideoInfo, t_first: float) -> tuple[np.ndarray | None, int]:
    """The video's first audio stream from its first frame's time to its last frame's end, at
    its own rate (48 kHz where AAC cannot take that rate), mono or stereo (more channels: mixed
    to mono); ``(None, 0)`` without audio."""
    from avssl.data import decode

    if not info.audio:
        return None, 0
    a = info.audio[0]
    rate = a.sample_rate if a.sample_rate in _AAC_RATES else 48000
    end = info.pts_s[-1] + 1.0 / max(info.fps, 1e-6)
    got = decode.read_audio(video, t_first, end - t_first, sample_rate=rate, mono=a.channels > 2)
    return got.data.numpy(), rate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avssl-localize",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sound-source localization heatmaps of an audio-visual run (ave_net, "
        "l3_net, avol_net, av_sync) on your own videos.\n\n"
        "For every K-th frame (--every) the model sees the frame (data.av_frames frames "
        "centred on it, as in training) and the 1 s of sound centred on the frame's time, and "
        "gives a heatmap (where the sound comes from) and a match probability (does the sound "
        "belong with the picture).\n\n"
        "Writes, per video, OUT/<video stem>/:\n"
        "  heatmaps.npy          float16 (N, h, w) grid maps in [0, 1], N = computed frames\n"
        "  scores.csv            frame, time_s, match_prob of each computed frame\n"
        "  frames/NNNNN.png      the picture of every --png-every-th computed frame: a\n"
        "                        banner with the verdict ('no match heard (p=0.03)'), the\n"
        "                        heatmap over the frame (at least 512 px wide) and a colour\n"
        "                        bar: p(sound comes from here), 0 to 1, one absolute scale\n"
        "  <stem>_heatmap.mp4    the whole video drawn so (frames between computed ones\n"
        "                        reuse the last map) with the original sound\n\n"
        "Colours: each cell's score capped at the sound's p(match), so a sound the model "
        "rejects leaves the frame dark (heatmaps.npy keeps the uncapped scores).\n\n"
        "Videos without sound are scored against silence (with a warning). A video that cannot "
        "be read gives a one-line error and the others go on; the exit status is then 1.",
        epilog="Caveat: a model trained on the built-in synthetic set (avssl-train ave-net with "
        "no data) has never seen real footage; its heatmaps on your videos show what the "
        "pipeline produces, not a measure of quality. For numbers use avssl-eval localization "
        "(docs/evaluation.md).\n\n"
        "example: avssl-localize runs/ave_net clip.mp4 other.mkv --out heatmaps --every 5",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="an audio-visual run directory or its checkpoint.pt")  # fmt: skip
    p.add_argument("videos", metavar="VIDEO", nargs="+", type=Path,
                   help="video files, animated GIFs or folders of numbered images (a folder has "
                   "no sound: it is scored against silence)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (one "
                   "subfolder per video, named after its stem)")  # fmt: skip
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="compute a heatmap for every K-th frame (default 1: all)")  # fmt: skip
    p.add_argument("--png-every", type=int, default=10, metavar="P", help="write a PNG for "
                   "every P-th computed heatmap (default 10; 0: none)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32, metavar="B",
                   help="frames per forward pass (default 32)")  # fmt: skip
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, cuda:1, ... "
                   "(default: cuda if available)")  # fmt: skip
    p.add_argument("--no-video", action="store_true",
                   help="skip the overlay .mp4 (heatmaps, scores and PNGs only)")  # fmt: skip
    return p


def _run(args: argparse.Namespace) -> int:
    int_arg("--every", args.every, 1)
    int_arg("--batch-size", args.batch_size, 1)
    int_arg("--png-every", args.png_every, 0)
    loaded = load_av_model(args.checkpoint)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    loaded.model.to(device)
    print(f"{loaded.cfg.task} from {loaded.path} on {device}: grid of the "
          f"{loaded.cfg.data.frame_size}px input, {loaded.frames} frame(s), "
          f"{AUDIO_S:g} s of sound at {loaded.model.sample_rate} Hz")  # fmt: skip
    failed, used = 0, set()
    for video in args.videos:
        stem = video.stem
        n = 2
        while stem in used:  # two videos with one stem: a.mp4, a.mkv -> a, a-2
            stem, n = f"{video.stem}-{n}", n + 1
        used.add(stem)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = localize_video(
                    loaded, video, args.out / stem, every=args.every,
                    batch_size=args.batch_size, png_every=args.png_every, device=device,
                    write_mp4=not args.no_video,
                )  # fmt: skip
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - report, go on with the other videos
            failed += 1
            msg = " ".join(str(e).split()) or type(e).__name__
            msg = msg if len(msg) <= 400 else msg[:400] + "..."
            print(f"error: {msg if msg.startswith(str(video)) else f'{video}: {msg}'}",
                  file=sys.stderr)  # fmt: skip
            continue
        print(f"{video}: {res['heatmaps']}/{res['frames']} frames, grid {res['grid']}, "
              f"mean match p={res['mean_match_prob']:.2f}, {res['seconds']:.1f} s -> "
              f"{res['out']}: {res['pngs']} pictures in {Path(str(res['out'])) / 'frames'}"
              + (f", video {res['mp4']}" if res["mp4"] else ""))  # fmt: skip
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("avssl-localize", lambda: _run(_parser().parse_args(argv)))


def entry() -> None:
    """Console-script entry point (``avssl-localize``)."""
    sys.exit(main())
