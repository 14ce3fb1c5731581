"""``avssl-localize``: sound-source heatmaps of an audio-visual run on your own videos.

For every ``--every``-th frame of each video, the run's model (:class:`avssl.models.av.AVNet`:
``ave_net``, ``l3_net``, ``avol_net``, ``av_sync``) gets the frame -- ``T = data.av_frames``
frames centred on it, ``data.av_frame_step`` apart, clipped to the video, exactly as training
reads them (:func:`avssl.tasks.av.read_frames` through a :class:`~avssl.data.dataset.FrameReader`)
-- and the second of sound centred on the frame's presentation time, and returns its heatmap
(:meth:`~avssl.models.av.AVNet.localize`) and match probability (the sigmoid of
:meth:`~avssl.models.av.AVNet.match_logit`). Written to ``OUT/<video stem>/``:

* ``heatmaps.npy``: float16 ``(N, h, w)``, one grid map per computed frame (values in [0, 1]);
* ``scores.csv``: ``frame, time_s, match_prob`` per computed frame;
* ``frames/NNNNN.png``: the heatmap over the full-size frame for every ``--png-every``-th
  computed frame (NNNNN: the frame index);
* ``<stem>_heatmap.mp4``: the whole video at its own size with the heatmap on top (frames
  between computed ones reuse the last map) and the original sound track.

A model trained on the built-in synthetic set has never seen real footage: its heatmaps on
such videos show what the pipeline produces, not how good the model is. The scored check is
``avssl-eval localization`` (docs/evaluation.md).
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

from avssl.eval.av import LoadedAV, load_av_model, overlay
from avssl.types import VideoInfo

__all__ = ["entry", "localize_video", "main"]

#: Seconds of sound given to the model, centred on the frame (the pair tasks' window).
AUDIO_S = 1.0
#: AAC encodes these rates; other source rates are resampled to 48 kHz for the output video.
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    import cv2

    from avssl.data import decode
    from avssl.data.encode import write_video
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

    png_dir = out_dir / "frames"
    png_dir.mkdir(exist_ok=True)
    for old in png_dir.glob("*.png"):  # a previous run's pictures (other --every)
        old.unlink()
    pngs = {wanted[k] for k in range(0, len(wanted), png_every)} if png_every > 0 else set()
    slot = {i: k for k, i in enumerate(wanted)}
    # 4:2:0 video needs even sides: an odd last row/column is left out of the video.
    h2, w2 = info.height - info.height % 2, info.width - info.width % 2
    t_first = info.pts_s[0]

    def overlays() -> Iterator[np.ndarray]:
        k = 0
        for i, frame in decode.iter_frames(video, info=info):
            k = slot.get(i, k)  # frames between computed ones keep the last map
            pic = overlay(frame, heat[k])
            if i in pngs:
                ok, png = cv2.imencode(".png", pic[..., ::-1])
                if not ok:
                    raise ValueError("PNG encoding failed")
                (png_dir / f"{i:05d}.png").write_bytes(png.tobytes())
            yield pic[:h2, :w2]

    mp4 = out_dir / f"{video.stem}_heatmap.mp4"
    if write_mp4:
        track, track_sr = _sound_track(video, info, t_first)
        pts = [t - t_first for t in info.pts_s] if info.vfr else None
        write_video(mp4, overlays(), fps=info.fps, pts_s=pts, audio=track,
                    sample_rate=track_sr)  # fmt: skip
    elif pngs:
        for _ in overlays():
            pass
    return {
        "video": str(video), "out": str(out_dir), "frames": info.num_frames,
        "heatmaps": len(wanted), "grid": tuple(heat.shape[1:]), "pngs": len(pngs),
        "mp4": str(mp4) if write_mp4 else None, "has_audio": info.has_audio,
        "mean_match_prob": float(np.mean(probs)), "seconds": time.monotonic() - t0,
    }  # fmt: skip


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
        "  frames/NNNNN.png      overlay at full size, every --png-every-th computed frame\n"
        "  <stem>_heatmap.mp4    the whole video with the heatmap on top (frames between\n"
        "                        computed ones reuse the last map) and the original sound\n\n"
        "Videos without sound are scored against silence (with a warning). A video that cannot "
        "be read gives a one-line error and the others go on; the exit status is then 1.",
        epilog="Caveat: a model trained on the built-in synthetic set (avssl-train ave-net with "
        "no data) has never seen real footage; its heatmaps on your videos show what the "
        "pipeline produces, not a measure of quality. For numbers use avssl-eval localization "
        "(docs/evaluation.md).\n\n"
        "example: avssl-localize runs/ave_net clip.mp4 other.mkv --out heatmaps --every 5",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="an audio-visual run directory or its checkpoint.pt",
    )
    p.add_argument(
        "videos",
        metavar="VIDEO",
        nargs="+",
        type=Path,
        help="video files, animated GIFs or folders of numbered images (a folder has no "
        "sound: it is scored against silence)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="output folder (one subfolder per video, named after its stem)",
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="K",
        help="compute a heatmap for every K-th frame (default 1: all)",
    )
    p.add_argument(
        "--png-every",
        type=int,
        default=10,
        metavar="P",
        help="write a PNG for every P-th computed heatmap (default 10; 0: none)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="B",
        help="frames per forward pass (default 32)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device: cpu, cuda, cuda:1, ... (default: cuda if available)",
    )
    p.add_argument(
        "--no-video",
        action="store_true",
        help="skip the overlay .mp4 (heatmaps, scores and PNGs only)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("every", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.png_every < 0:
        print("error: --png-every must be >= 0", file=sys.stderr)
        return 2
    try:
        loaded = load_av_model(args.checkpoint)
        device = _device(args.device)
        loaded.model.to(device)
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
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
            msg = _one_line(e)
            print(f"error: {msg if msg.startswith(str(video)) else f'{video}: {msg}'}",
                  file=sys.stderr)  # fmt: skip
            continue
        print(f"{video}: {res['heatmaps']}/{res['frames']} frames, grid {res['grid']}, "
              f"mean match p={res['mean_match_prob']:.2f}, {res['pngs']} PNGs, "
              f"{res['seconds']:.1f} s -> {res['out']}")  # fmt: skip
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed", file=sys.stderr)
    return 1 if failed else 0


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def entry() -> None:
    """Console-script entry point (``avssl-localize``)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
