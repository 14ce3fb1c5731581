"""avssl-localize: heatmaps of an audio-visual run on whole videos (avssl/localize.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avssl import localize
from avssl.data import decode
from avssl.data.encode import write_video
from avssl.eval.pictures import annotated_frame

FPS, N_FRAMES, SIDE, SR = 12, 24, 64, 16000


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained ave_net run (3 frames 2 apart, 32 px, the when stream at 16 px), saved as
    training saves it."""
    from avssl.config import load_config
    from avssl.tasks import TASKS
    from avssl.tasks.av import build_pair_model
    from avssl.train import TrainConfig, save_checkpoint

    overrides = ["task=ave_net", "data.frame_size=32", "aug.size=32", "data.av_frames=3",
                 "data.av_frame_step=2", "options.when_size=16"]  # fmt: skip
    cfg = load_config(TrainConfig, None, overrides, base=TASKS["ave_net"].defaults)
    torch.manual_seed(0)
    model = build_pair_model(cfg)  # the main job's model: a when stream on the 3 frames
    out = tmp_path_factory.mktemp("run")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(out / "checkpoint.pt", {"model": model, "opt": opt}, cfg, 0, 0)
    return out


def _picture_shape() -> tuple[int, int]:
    """(height, width) of an overlay of a SIDE x SIDE frame (banner, frame, colour bar)."""
    pic = annotated_frame(np.zeros((SIDE, SIDE, 3), np.uint8), np.zeros((4, 4)), 0.5)
    return pic.shape[0], pic.shape[1]


def _frames() -> np.ndarray:
    """A bright square moving left to right over a dark, slowly changing background."""
    v = np.zeros((N_FRAMES, SIDE, SIDE, 3), np.uint8)
    for i in range(N_FRAMES):
        v[i, ..., 2] = 8 * i
        x = 2 * i
        v[i, 20:36, x : x + 16] = (240, 200, 40)
    return v


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    t = np.arange(2 * SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * (200 * t + 400 * t**2))).astype(np.float32)  # a chirp
    write_video(d / "tone.mp4", _frames(), fps=FPS, audio=tone, sample_rate=SR)
    write_video(d / "mute.mkv", _frames()[:10], fps=FPS)
    return {"tone": d / "tone.mp4", "mute": d / "mute.mkv"}


def test_outputs_and_failures(
    run: Path, videos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "no_such_video.mp4"
    argv = [str(run), str(missing), str(videos["tone"]), str(videos["mute"]), "--out", str(out),
            "--every", "2", "--png-every", "5", "--batch-size", "5", "--device", "cpu"]  # fmt: skip
    assert localize.main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(missing) in errors[0] and "no such file" in errors[0]
    assert any("no audio" in line for line in err.splitlines() if line.startswith("warning:"))

    d = out / "tone"
    loaded = localize.load_av_model(str(run))
    grid = loaded.model.localize(torch.zeros(1, 3, 3, 32, 32), torch.zeros(1, SR)).shape[1:]
    heat = np.load(d / "heatmaps.npy")
    assert heat.dtype == np.float16 and heat.shape == (N_FRAMES // 2, *grid)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    with open(d / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(0, N_FRAMES, 2))
    assert float(rows[3]["time_s"]) == pytest.approx(6 / FPS, abs=1e-6)
    assert all(0.0 <= float(r["match_prob"]) <= 1.0 for r in rows)
    assert sorted(p.name for p in (d / "frames").glob("*.png")) == [
        "00000.png", "00010.png", "00020.png"
    ]  # fmt: skip
    # each picture: the verdict banner (red: no match, green: match), the 64 px frame enlarged
    # to 512 px with the heatmap, the colour bar; the mp4 carries the same pictures
    h, w = _picture_shape()
    for name, row in (("00000.png", rows[0]), ("00010.png", rows[5])):
        png = cv2.imread(str(d / "frames" / name))[..., ::-1]
        assert png.shape[:2] == (h, w) and h > w > SIDE
        bg = (70, 20, 20) if float(row["match_prob"]) < 0.5 else (20, 55, 30)
        assert tuple(png[2, 2]) == bg
    info = decode.probe(d / "tone_heatmap.mp4")
    assert (info.num_frames, info.width, info.height) == (N_FRAMES, w, h // 2 * 2)
    assert info.fps == pytest.approx(FPS, rel=1e-3)
    assert info.audio and info.audio[0].audible and info.audio[0].sample_rate == SR

    mute = out / "mute"
    assert np.load(mute / "heatmaps.npy").shape[0] == 5
    assert not decode.probe(mute / "mute_heatmap.mp4").audio


def test_heatmap_is_the_models_on_the_centred_window(
    run: Path, videos: dict[str, Path], tmp_path: Path
) -> None:
    """Frame 22 of 24 with 3 frames 2 apart reads frames 20, 22 and 23 (clipped) and the sound
    from 22/12 - 0.5 s to 22/12 + 0.5 s: recomputed here from the decoder directly."""
    from avssl.data.transforms import to_float_normalized

    out = tmp_path / "out"
    code = localize.main([str(run), str(videos["tone"]), "--out", str(out), "--no-video",
                          "--png-every", "0", "--device", "cpu"])  # fmt: skip
    assert code == 0
    assert not (out / "tone" / "tone_heatmap.mp4").exists()
    assert not list((out / "tone" / "frames").glob("*.png"))
    heat = np.load(out / "tone" / "heatmaps.npy")
    loaded = localize.load_av_model(str(run))
    clip = decode.read_frames(videos["tone"], [20, 22, 23], size=(32, 32)).data.contiguous()
    sound = decode.read_audio(videos["tone"], 22 / FPS - 0.5, 1.0, sample_rate=SR).data
    with torch.no_grad():
        x = to_float_normalized(clip[None], loaded.cfg.aug)
        want = loaded.model.localize(x, sound).numpy()[0]
    np.testing.assert_allclose(heat[22].astype(np.float32), want, atol=5e-4)


def test_help_and_bad_arguments(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        localize.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--every" in text and "heatmaps.npy" in text and "synthetic" in text
    assert localize.main([str(run), "x.mp4", "--out", "o", "--every", "0"]) == 2
    assert "avssl-localize: --every must be >= 1" in capsys.readouterr().err
    assert localize.main(["/no/such/run", "x.mp4", "--out", "o"]) == 2
    assert "avssl-localize: " in capsys.readouterr().err


def test_frame_folder_and_gif(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of numbered images and an animated GIF are videos here too (no sound: scored
    against silence, with the warning)."""
    from media import write_frame_folder, write_gif

    seq = write_frame_folder(tmp_path / "seq", _frames(), "img_{:05d}.png", start=1)
    gif = write_gif(tmp_path / "square.gif", _frames(), round(100 / FPS))
    out = tmp_path / "out"
    argv = [str(run), str(seq), str(gif), "--out", str(out), "--every", "4", "--device", "cpu"]
    assert localize.main(argv) == 0
    assert "no audio" in capsys.readouterr().err
    for stem in ("seq", "square"):
        assert np.load(out / stem / "heatmaps.npy").shape[0] == N_FRAMES // 4
        info = decode.probe(out / stem / f"{stem}_heatmap.mp4")
        assert (info.num_frames, info.width) == (N_FRAMES, _picture_shape()[1])
