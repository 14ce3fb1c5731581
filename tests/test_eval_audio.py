"""The audio front end and towers (avssl.models.audio) and ``avssl-eval esc50`` (avssl.eval.audio).

The front end is checked against librosa; the command end to end on a generated two-tone
audio-folder set, on a small built-in synth set, and (skipped when absent) on an FSDD subset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from avssl.cli.eval import main as eval_main
from avssl.eval.audio import (
    average_by_clip,
    clip_features,
    load_audio_set,
    mfcc_features,
    pool_map,
    split_windows,
    stratified_folds,
    window_count,
)
from avssl.eval.loading import load_audio_model
from avssl.models.audio import (
    AUDIO_BACKBONES,
    AudioConvNet,
    AudioEncoder,
    LogMel,
    LogSpectrogram,
    build_audio_backbone,
    build_frontend,
    frontend_config,
)

# 16 kHz, 10 ms window (160), hop 80, n_fft 256: 129 x 201 per second; a fast test front end.
FAST_FE = '{"sample_rate": 16000, "n_fft": 256}'


def _test_signal(sr: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(round(sr * seconds)) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
    y = y + 0.05 * rng.standard_normal(t.size)
    y[: sr // 10] = 0.0  # a silent start: the log floor must match too
    return y.astype(np.float32)


# --------------------------------------------------------------------------- front end


@pytest.mark.parametrize(
    ("sr", "n_fft", "shape"), [(48000, 512, (257, 201)), (16000, 256, (129, 201))]
)
def test_log_spectrogram_matches_librosa(sr: int, n_fft: int, shape: tuple[int, int]) -> None:
    y = _test_signal(sr)
    fe = LogSpectrogram(sample_rate=sr, win_s=0.01, n_fft=n_fft)
    assert fe.win_length == sr // 100 and fe.hop == sr // 200
    out = fe(torch.from_numpy(y)[None])
    assert out.shape == (1, 1, *shape) and out.dtype == torch.float32
    o = out[0, 0].double().numpy()
    ref_mag = np.abs(
        librosa.stft(
            y.astype(np.float64), n_fft=n_fft, hop_length=fe.hop, win_length=fe.win_length,
            window="hann", center=True, pad_mode="constant",
        )
    )  # fmt: skip
    peak = ref_mag.max()
    # magnitudes: 1e-5 of the peak everywhere (measured ~3e-7)
    assert np.abs(np.exp(o) - 1e-7 - ref_mag).max() <= 1e-5 * peak
    # log: 1e-3 nats wherever the reference is within 100 dB of its peak (measured ~2e-4)
    ref = np.log(ref_mag + 1e-7)
    loud = ref_mag >= peak * 1e-5
    assert loud.mean() > 0.5
    assert np.abs(o - ref)[loud].max() <= 1e-3
    # the silent start sits on the floor log(1e-7)
    assert np.allclose(o[:, 2], np.log(1e-7), atol=1e-3)


def test_log_mel_matches_librosa() -> None:
    sr = 48000
    y = _test_signal(sr)
    fe = LogMel(sample_rate=sr, n_mels=64, fmin=50.0, fmax=20000.0)
    fb = librosa.filters.mel(sr=sr, n_fft=512, n_mels=64, fmin=50.0, fmax=20000.0)
    assert np.abs(fe.get_buffer("mel_fb").numpy() - fb).max() <= 1e-6
    out = fe(torch.from_numpy(y)[None])
    assert out.shape == (1, 1, 64, 201)
    ref_mel = librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=sr, n_fft=512, hop_length=240, win_length=480,
        center=True, pad_mode="constant", n_mels=64, fmin=50.0, fmax=20000.0,
    )  # fmt: skip
    o = out[0, 0].double().numpy()
    loud = ref_mel >= ref_mel.max() * 1e-10  # power: 100 dB
    assert np.abs(o - np.log(ref_mel + 1e-7))[loud].max() <= 1e-3


def test_frontend_config_and_batch() -> None:
    fe = build_frontend(None)
    assert isinstance(fe, LogSpectrogram) and not isinstance(fe, LogMel)
    cfg = frontend_config(fe)
    assert cfg["sample_rate"] == 48000 and cfg["n_fft"] == 512 and cfg["hop"] == 240
    assert frontend_config(build_frontend(cfg)) == cfg  # round trip
    mel = build_frontend('{"kind": "logmel", "n_mels": 40, "sample_rate": 16000, "n_fft": 256}')
    assert isinstance(mel, LogMel) and mel.num_bins == 40
    # batch and (B, 1, N) input, rows independent
    x = torch.randn(3, 1, 16000)
    both = mel(x)
    assert both.shape == (3, 1, 40, 201)
    assert torch.allclose(both[1], mel(x[1:2])[0], atol=1e-5)
    assert fe.state_dict() == {}  # no persistent front-end entries in checkpoints
    with pytest.raises(ValueError, match="kind"):
        build_frontend({"kind": "cqt"})
    with pytest.raises(ValueError, match="n_fft"):
        LogSpectrogram(sample_rate=48000, n_fft=256)  # window 480 > n_fft
    with pytest.raises(ValueError, match="bad front-end option"):
        build_frontend({"nfft": 512})


# --------------------------------------------------------------------------- towers


def test_audio_tower_shapes() -> None:
    assert set(AUDIO_BACKBONES) >= {"audio_vgg", "audio_tiny"}
    torch.manual_seed(0)
    tiny = build_audio_backbone("audio_tiny").eval()
    assert tiny.channels == (16, 32, 64, 128) and tiny.feature_dim == 128
    x = torch.randn(2, 1, 257, 201)
    expect = {1: (16, 128, 100), 2: (32, 64, 50), 3: (64, 32, 25), 4: (128, 16, 12)}
    with torch.no_grad():
        for layer, shape in expect.items():
            assert tiny.features(x, layer).shape == (2, *shape)
            assert tiny.layer_dim(layer) == shape[0]
        assert tiny(x).shape == (2, 128)
        # forward = global max pool of the last block
        assert torch.allclose(tiny(x), tiny.features(x).amax((2, 3)))
    vgg = build_audio_backbone("audio_vgg")
    assert vgg.channels == (64, 128, 256, 512) and vgg.feature_dim == 512
    with torch.no_grad():
        assert vgg.eval().features(torch.randn(1, 1, 64, 48), 4).shape == (1, 512, 4, 3)
    small = build_audio_backbone("audio_vgg", width=0.125, blocks=2, pool="avg")
    assert small.channels == (8, 16) and small.num_layers == 2
    with pytest.raises(ValueError, match="layer"):
        small.features(x, 3)
    with pytest.raises(ValueError, match="unknown audio backbone"):
        build_audio_backbone("convnet_tiny")
    with pytest.raises(ValueError, match="blocks"):
        AudioConvNet(blocks=5)
    # fewer pools than blocks: the later blocks keep their input's size (a finer map)
    fine = AudioConvNet(width=0.25, blocks=3, pools=2, in_channels=3).eval()
    with torch.no_grad():
        assert fine.features(torch.randn(1, 3, 64, 64)).shape == (1, 64, 16, 16)
    with pytest.raises(ValueError, match="pools"):
        AudioConvNet(blocks=2, pools=3)
    with pytest.raises(ValueError, match="bad keyword"):
        build_audio_backbone("audio_tiny", depth=3)
    # input standardisation: a shift of the log-spectrogram (a gain change) changes nothing
    with torch.no_grad():
        assert torch.allclose(tiny.features(x + 3.0, 2), tiny.features(x, 2), atol=1e-4)
        raw = build_audio_backbone("audio_tiny", input_norm="none").eval()
        assert not torch.allclose(raw.features(x + 3.0, 1), raw.features(x, 1), atol=1e-2)
    with pytest.raises(ValueError, match="input_norm"):
        build_audio_backbone("audio_tiny", input_norm="batch")
    # random init is seeded by the caller
    torch.manual_seed(3)
    a = build_audio_backbone("audio_tiny").state_dict()
    torch.manual_seed(3)
    b = build_audio_backbone("audio_tiny").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- windows, pooling


def test_windows_and_padding() -> None:
    sr, win, hop = 1000, 1000, 500
    short = np.arange(1, 301, dtype=np.float32)  # 0.3 s
    w = split_windows(short, win, hop)
    assert w.shape == (1, 1000)
    assert np.array_equal(w[0, :300], short) and not w[0, 300:].any()
    long = np.arange(2200, dtype=np.float32)  # 2.2 s: windows at 0, 0.5, 1.0 s
    w = split_windows(long, win, hop)
    assert w.shape == (3, 1000)
    assert [int(r[0]) for r in w] == [0, 500, 1000] and w[2, -1] == 1999
    assert window_count(round(5.0 * sr), win, hop) == 9  # an ESC-50 clip
    assert window_count(1000, win, hop) == 1
    assert window_count(1499, win, hop) == 1 and window_count(1500, win, hop) == 2
    with pytest.raises(ValueError):
        window_count(100, 0, 1)


def test_pool_map_and_clip_average() -> None:
    fmap = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    assert torch.equal(pool_map(fmap, "max"), fmap.amax((2, 3)))
    assert torch.allclose(pool_map(fmap, "avg"), fmap.mean((2, 3)))
    g = pool_map(fmap, "max", (2, 3))
    assert g.shape == (2, 3 * 2 * 3)
    assert g[0, 0] == fmap[0, 0, :2, :2].max() and g[0, 5] == fmap[0, 0, 2:, 4:].max()
    feats = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [5.0, 5.0], [7.0, 9.0]])
    avg = average_by_clip(feats, np.array([0, 0, 1, 2, 2]), 3)
    assert np.allclose(avg, [[2.0, 3.0], [10.0, 0.0], [6.0, 7.0]])
    with pytest.raises(ValueError, match="at least one window"):
        average_by_clip(feats, np.array([0, 0, 2, 2, 2]), 3)


def test_clip_features_batches_and_average() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(build_frontend(FAST_FE), build_audio_backbone("audio_tiny", blocks=2))
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (4000, 35200, 16000, 24000)]
    kw = {"layer": 2, "window": 16000, "hop": 8000}
    a = clip_features(enc, waves, batch_size=1, **kw)
    b = clip_features(enc, iter(waves), batch_size=5, **kw)
    assert a.shape == (4, 32) and np.allclose(a, b, atol=1e-5)
    # clip 1 (2.2 s) = mean of its 3 windows' max-pooled block-2 maps
    with torch.no_grad():
        w = torch.from_numpy(split_windows(waves[1], 16000, 8000))
        manual = enc.features(w, 2).amax((2, 3)).mean(0).numpy()
    assert np.allclose(a[1], manual, atol=1e-5)


# --------------------------------------------------------------------------- manifests, models


def test_stratified_folds_rule() -> None:
    ids = [0, 1, 0, 0, 1, 0, 0, 0, 1]
    assert stratified_folds(ids).tolist() == [1, 1, 2, 3, 2, 4, 5, 1, 3]


def test_checkpoint_with_audio_tower(tmp_path: Path) -> None:
    torch.manual_seed(5)
    net = build_audio_backbone("audio_tiny", blocks=2)
    for prefix in ("audio.net.", "audio_net."):
        model = {prefix + k: v for k, v in net.state_dict().items()}
        model["audio.fc1.weight"] = torch.zeros(3, 3)  # a head: ignored
        model["video.net.0.weight"] = torch.zeros(1)
        ck = tmp_path / "checkpoint.pt"
        torch.save(
            {
                "model": model,
                "audio_backbone": "audio_tiny",
                "audio_backbone_kwargs": json.dumps({"blocks": 2}),
                "audio_frontend": {"kind": "logmel", "n_mels": 32, "sample_rate": 16000},
                "task": "ave-net",
            },
            ck,
        )
        enc, info = load_audio_model(str(tmp_path))
        assert info.source == "run" and info.task == "ave-net" and info.in_channels == 1
        assert enc.frontend.config["kind"] == "logmel" and enc.sample_rate == 16000
        x = torch.randn(1, 1, 32, 50)
        with torch.no_grad():
            assert torch.equal(enc.net.features(x, 2), net.eval().features(x, 2))
    # a random baseline shaped like the run
    enc, info = load_audio_model("random:audio_tiny", like=str(tmp_path), seed=1)
    assert info.kwargs == {"blocks": 2} and enc.frontend.config["n_mels"] == 32
    torch.save({"model": {"encoder.net.x": torch.zeros(1)}, "backbone": "convnet_tiny"}, ck)
    with pytest.raises(ValueError, match="no audio tower"):
        load_audio_model(str(ck))
    torch.save({"model": {"audio.other.w": torch.zeros(1)}, "audio_backbone": "audio_tiny"}, ck)
    with pytest.raises(ValueError, match="no audio_tiny weights"):
        load_audio_model(str(ck))
    with pytest.raises(ValueError, match="unknown audio backbone"):
        load_audio_model("random:resnet18")


# --------------------------------------------------------------------------- the command


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = eval_main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _tone_set(root: Path, takes: int = 10) -> None:
    """Two classes of tones (low 300-420 Hz sines vs high 2-2.6 kHz square-ish) of 0.3-1.8 s."""
    rng = np.random.default_rng(0)
    sr = 8000
    for label, base in (("low", 300.0), ("high", 2000.0)):
        for take in range(takes):
            n = int(sr * rng.uniform(0.3, 1.8))
            t = np.arange(n) / sr
            f = base * (1 + 0.4 * rng.random())
            y = np.sin(2 * np.pi * f * t)
            if label == "high":
                y = np.sign(y) * 0.5
            y = 0.5 * y + 0.02 * rng.standard_normal(n)
            sf.write(root / f"{label}_{take}.wav", y.astype(np.float32), sr, subtype="PCM_16")


RESULT_KEYS = {
    "format", "version", "kind", "dataset", "model", "layer", "metrics", "classes", "confusion",
    "per_fold", "extra", "command", "seconds",
}  # fmt: skip


def test_esc50_end_to_end_audio_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_prep.audio_folder import prep_audio_folder

    wav = tmp_path / "wav"
    wav.mkdir()
    _tone_set(wav)
    prep = tmp_path / "prep"
    prep_audio_folder(
        wav, prep, pattern="{label}_{take}", fold_field="take", num_folds=5, dataset="tones",
        workers=1, progress=False,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    argv = ["esc50", "random:audio_tiny", "--manifest", str(prep), "--frontend", FAST_FE,
            "--layer", "2", "--c-grid", "0.1,1"]  # fmt: skip
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    res_path = tmp_path / "evals" / "esc50-tones-random-audio_tiny.json"
    res = json.loads(res_path.read_text())
    assert set(res) >= RESULT_KEYS
    assert res["format"] == "avssl-eval" and res["version"] == 1 and res["kind"] == "esc50"
    assert res["dataset"]["name"] == "tones" and res["dataset"]["num_test"] == 20
    assert res["dataset"]["num_train"] == 16 and res["dataset"]["folds"] == [1, 2, 3, 4, 5]
    assert res["layer"] == 2 and res["model"]["source"] == "random"
    assert res["model"]["frontend"]["sample_rate"] == 16000
    assert res["model"]["tower"] == {"channels": [16, 32, 64, 128], "input_norm": "instance"}
    assert res["classes"] == ["high", "low"]
    assert np.array(res["confusion"]).sum() == 20
    assert [f["fold"] for f in res["per_fold"]] == [1, 2, 3, 4, 5]
    m = res["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and m["chance"] == 0.5
    assert m["accuracy"] >= 0.9  # two tone classes: far above chance
    assert "accuracy" in out and res["extra"]["cache_hit"] is False
    cache = Path(res["extra"]["cache"])
    assert cache.parent == tmp_path / "evals" / "features" and cache.is_file()
    with np.load(cache) as z:
        assert z["feats"].shape == (20, 32) and z["feats"].dtype == np.float32
        assert z["labels"].dtype == np.int64 and z["ids"][0].endswith(".wav")
        assert sorted(set(z["split"].tolist())) == ["1", "2", "3", "4", "5"]
    # re-run: the cache is hit and the numbers repeat
    mtime = cache.stat().st_mtime_ns
    rc, out, _ = _run(argv, capsys)
    assert rc == 0 and "loaded from cache" in out
    res2 = json.loads(res_path.read_text())
    assert res2["extra"]["cache_hit"] is True and res2["metrics"] == m
    assert cache.stat().st_mtime_ns == mtime
    # another layer is another cache entry; fold subset reuses the features
    rc, out, _ = _run([*argv[:-4], "--layer", "1", "--folds", "1,2,3", "--out", "l1.json"], capsys)
    assert rc == 0 and "loaded from cache" not in out
    assert json.loads((tmp_path / "l1.json").read_text())["dataset"]["num_test"] == 12
    # the hand-crafted baseline
    rc, out, err = _run(["esc50", "mfcc", "--manifest", str(prep / "clips.jsonl")], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "evals" / "esc50-tones-mfcc.json").read_text())
    assert res["model"]["source"] == "mfcc" and res["layer"] is None
    assert res["metrics"]["accuracy"] >= 0.9
    # bad input: exit 2 with one line
    rc, _, err = _run(["esc50", "mfcc", "--manifest", str(tmp_path / "nope")], capsys)
    assert rc == 2 and err.startswith("avssl-eval: ") and err.count("\n") == 1
    rc, _, err = _run([*argv, "--folds", "1,2"], capsys)
    assert rc == 2 and "at least 3" in err
    rc, _, err = _run([*argv[:-4], "--layer", "9"], capsys)
    assert rc == 2 and "--layer" in err


def test_esc50_on_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_prep.synth import build_synth

    root = tmp_path / "synth"
    build_synth(root, num_clips=24, seed=1, workers=1, progress=False)
    data = load_audio_set(root / "manifest.jsonl")
    assert len(data) == 24 and data.fold_rule == "class-rank-mod-5"
    assert data.folds.tolist() == stratified_folds(data.labels.tolist()).tolist()
    assert data.classes[0] == "disc" and data.name == "synth"
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(["esc50", "mfcc", "--manifest", str(root), "--c-grid", "1"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "evals" / "esc50-synth-mfcc.json").read_text())
    assert res["dataset"]["folds"] == [1, 2, 3] and res["dataset"]["num_test"] == 24
    assert res["metrics"]["accuracy"] > 2 * res["metrics"]["chance"]  # 8 timbres


def test_mfcc_recipe_shape() -> None:
    y = _test_signal(16000, 0.14)
    v = mfcc_features(y)
    assert v.shape == (80,) and np.isfinite(v).all()
    assert mfcc_features(np.zeros(10, np.float32)).shape == (80,)  # shorter than one frame


def _fsdd() -> Path:
    env = os.environ.get("AVSSL_SHARED_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    rec = d / "fsdd" / "recordings"
    if not rec.is_dir():
        pytest.skip(f"../shared/data absent: no FSDD recordings at {rec}")
    return rec


def test_esc50_fsdd_subset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 speakers x 3 digits x takes 0-9 (60 real recordings), 5 folds by take."""
    from data_prep.audio_folder import prep_audio_folder

    rec = _fsdd()
    sub = tmp_path / "rec"
    sub.mkdir()
    for digit in (1, 5, 9):
        for speaker in ("george", "jackson"):
            for take in range(10):
                name = f"{digit}_{speaker}_{take}.wav"
                (sub / name).symlink_to(rec / name)
    prep = tmp_path / "prep"
    prep_audio_folder(
        sub, prep, pattern="{label}_{speaker}_{take}", fold_field="take", num_folds=5,
        dataset="fsdd-subset", workers=1, progress=False,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for model, extra in (("mfcc", []), ("random:audio_tiny", ["--frontend", FAST_FE])):
        rc, out, err = _run(["esc50", model, "--manifest", str(prep), *extra], capsys)
        assert rc == 0, err
    for tag in ("mfcc", "random-audio_tiny"):
        res = json.loads((tmp_path / "evals" / f"esc50-fsdd-subset-{tag}.json").read_text())
        assert res["dataset"]["num_test"] == 60
        assert res["metrics"]["accuracy"] >= 0.8, (tag, res["metrics"])  # chance 1/3
