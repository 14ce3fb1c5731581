"""The audio-visual pair tasks: models, negatives, the reader's sound, training end to end,
localization and cross-modal evaluation (avssl/models/av.py, tasks/av.py, eval/av.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avssl import cli
from avssl.cli import eval as eval_cli
from avssl.data import decode
from avssl.data.dataset import FrameReader
from avssl.models.av import AVNet, ranking_loss
from avssl.tasks.av import AudioAug, PairMaker, read_sound
from data_prep import synth
from data_prep.synth_av import prep_synth_av

SMALL = {
    "backbone_kwargs": {"width": 0.125, "blocks": 2, "convs": 1},
    "audio_backbone": "audio_tiny",
    "audio_kwargs": {"blocks": 2, "convs": 1},
    "frontend": {"kind": "logmel", "sample_rate": 8000, "win_s": 0.025, "hop": 200,
                 "n_fft": 256, "n_mels": 16},
}  # fmt: skip


def _batch(b: int = 4, frames: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "frames": torch.randn(b, frames, 3, 32, 32, generator=g),
        "audio": torch.randn(b, 8000, generator=g) * 0.1,
        "target": torch.tensor([1, 0, 1, 0][:b]),
        "video_id": torch.arange(b),
    }


@pytest.mark.parametrize("head", ["ave", "l3", "avol"])
def test_heads_shapes_and_pairwise_consistency(head: str) -> None:
    torch.manual_seed(0)
    m = AVNet(head, frames=2, **SMALL).eval()  # type: ignore[arg-type]
    b = _batch(4, frames=2)
    loss, logs = m(b)
    assert loss.ndim == 0 and torch.isfinite(loss) and logs["logits"].shape == (4, 2)
    with torch.no_grad():
        pair = m.pair_logits(b["frames"], b["audio"])
        own = m.match_logit(b["frames"], b["audio"])
        heat = m.localize(b["frames"], b["audio"])
    assert pair.shape == (4, 4)
    # the diagonal of the all-pairs scores is each pair's own score
    torch.testing.assert_close(torch.diagonal(pair), own, atol=1e-4, rtol=1e-4)
    assert heat.shape == (4, 8, 8) and float(heat.min()) >= 0 and float(heat.max()) <= 1
    assert m.encode_video(b["frames"]).norm(dim=1).allclose(torch.ones(4), atol=1e-5)
    assert m.encode_audio(b["audio"]).norm(dim=1).allclose(torch.ones(4), atol=1e-5)
    m.train()
    m.batch_negatives = True
    loss, _ = m(b)
    loss.backward()
    assert all(p.grad is not None for p in m.net.parameters() if p.requires_grad)


def test_when_stream_adds_a_global_term_to_the_where_map() -> None:
    torch.manual_seed(0)
    m = AVNet("avol", frames=3, when_stream=True, batch_negatives=True, **SMALL).eval()
    b = _batch(4, frames=3)
    first = [
        next(c for c in t.modules() if isinstance(c, torch.nn.Conv2d)) for t in (m.net, m.when_net)
    ]
    assert [c.in_channels for c in first] == [3, 9]
    with torch.no_grad():
        where, when = m.pair_logits(b["frames"], b["audio"], parts=True)
        own = m.match_logit(b["frames"], b["audio"])
        heat = m.localize(b["frames"], b["audio"])
        # the map's tower sees the stack's centre frame, or the extra T+1-th frame when given
        extra = torch.cat([b["frames"], b["frames"][:, :1]], 1)
        where_x, when_x = m.pair_logits(extra, b["audio"], parts=True)
        first = torch.cat([b["frames"][:, :1]] * 3, 1)
        where_f, _ = m.pair_logits(first, b["audio"], parts=True)
    torch.testing.assert_close(torch.diagonal(where + when), own, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(when_x, when)  # the stack is the same
    torch.testing.assert_close(where_x, where_f)  # the map reads the extra frame
    assert not torch.allclose(where_x, where)
    # the when term moves the whole map, never where its maximum is
    w_only = m.score(torch.einsum(
        "bdhw,bd->bhw", F.normalize(m.v_embed(m.vision_map(b["frames"])), dim=1),
        F.normalize(m.a_embed(m.audio_feature(b["audio"])), dim=1))[:, None])[:, 0]  # fmt: skip
    assert torch.equal(heat.flatten(1).argmax(1), w_only.flatten(1).argmax(1))
    _every_tower_learns(m, b)
    with pytest.raises(ValueError, match="when_stream"):
        AVNet("avol", frames=1, when_stream=True, **SMALL)
    with pytest.raises(ValueError, match="when_stream"):
        AVNet("l3", frames=3, when_stream=True, **SMALL)


def _every_tower_learns(m: AVNet, b: dict) -> None:
    """One training step reaches every parameter of the frame, when and sound towers."""
    m.train()
    loss, _ = m(b)
    loss.backward()
    for tower in (m.net, m.when_net, m.audio_net):
        assert all(p.grad is not None for p in tower.parameters() if p.requires_grad)


@pytest.mark.parametrize("per_place", [True, False])
def test_ave_net_with_a_when_stream(per_place: bool) -> None:
    """The main job's model: AVE-Net's distance head, scored per place (cells pooled by
    log-mean-exp) or on the paper's one pooled embedding, plus the when stream's term."""
    torch.manual_seed(0)
    opts = {"map_pool": 3.0, "map_smooth": 3} if per_place else {}
    m = AVNet("ave", frames=3, when_stream=True, batch_negatives=True, when_size=16,
              **opts, **SMALL).eval()  # type: ignore[arg-type]  # fmt: skip
    b = _batch(4, frames=3)
    with torch.no_grad():
        where, when = m.pair_logits(b["frames"], b["audio"], parts=True)
        own = m.match_logit(b["frames"], b["audio"])
        cells = m._logit_maps(b["frames"], b["audio"])[1]
        heat = m.localize(b["frames"], b["audio"])
    torch.testing.assert_close(torch.diagonal(where + when), own, atol=1e-4, rtol=1e-4)
    assert heat.shape == (4, 8, 8) and cells is not None
    if per_place:  # the clip's logit is the pooled map; the when term lifts the map as a whole
        where_cells = cells - torch.diagonal(when)[:, None, None]
        torch.testing.assert_close(
            m._pool_cells(where_cells.flatten(1)), torch.diagonal(where), atol=1e-4, rtol=1e-4
        )
    _every_tower_learns(m, b)
    with pytest.raises(ValueError, match="map_smooth"):
        AVNet("ave", map_smooth=3, **SMALL)
    with pytest.raises(ValueError, match="when_size"):
        AVNet("ave", frames=3, when_stream=True, when_size=-1, **SMALL)


def test_ave_head_starts_with_the_right_sign() -> None:
    m = AVNet("ave", **SMALL)
    w, b = m.fc.weight.detach()[:, 0], m.fc.bias.detach()
    match = lambda d: float((w[1] - w[0]) * d + (b[1] - b[0]))  # noqa: E731
    assert match(0.0) > 0 > match(2.0)  # near -> "match", far -> "no match"


def test_ranking_loss_is_symmetric_infonce_over_the_kept_cells() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 4, generator=g)
    target = torch.tensor([1, 1, 0, 1])  # row 2 is a sampled negative: no positive of its own
    vid = torch.tensor([0, 1, 2, 0])  # 0 and 3 are one video: neither negative of the other
    pos = torch.diag(target == 1)
    neg = (vid[:, None] != vid[None, :]) & (target == 1)[None, :] | torch.diag(target == 0)
    got = ranking_loss(logits, pos, neg)
    terms = []
    for i in (0, 1, 3):  # direct formula: -log softmax of the positive among its row / column
        for line, keep in ((logits[i], pos[i] | neg[i]), (logits[:, i], pos[:, i] | neg[:, i])):
            z = line[keep]
            terms.append(float(torch.logsumexp(z, 0) - line[i]))
    assert math.isclose(float(got), sum(terms) / len(terms), rel_tol=1e-5)
    # a model that scores every positive far above the rest has ~0 loss
    assert float(ranking_loss(torch.eye(4) * 50, pos, neg)) < 1e-6
    with pytest.raises(ValueError, match="batch_negatives"):
        AVNet("ave", contrastive=1.0, **SMALL)


def test_audio_aug_keeps_timing_and_is_seeded() -> None:
    x = np.zeros(16000, np.float32)
    x[7990:8010] = 1.0  # an onset at the centre
    aug = AudioAug(gain_db=6.0, speed=0.1, time_mask=0.0)
    y = aug(x, np.random.default_rng(3))
    assert y.shape == x.shape and y is not x and x.max() == 1.0  # the input is left alone
    peak = np.flatnonzero(y > 0.3)
    assert abs(peak.mean() - 7999.5) < 2  # rate changes about the centre: the onset stays
    assert 10 ** (-6 / 20) - 1e-3 <= y.max() <= 10 ** (6 / 20) + 1e-3
    np.testing.assert_array_equal(y, aug(x, np.random.default_rng(3)))
    masked = AudioAug(time_mask=0.5)(np.ones(1000, np.float32), np.random.default_rng(0))
    assert 0 < (masked == 0).sum() <= 500 and not AudioAug() and AudioAug(gain_db=1.0)


def _rows() -> list[dict]:
    rows = []
    for v, (fps, origin) in enumerate([(25.0, 0.0), (30.0, 0.1), (25.0, 0.0)]):
        for f in (30, 40, 50):
            rows.append({"video": f"v{v}.mp4", "frame": f, "audio_s": 1.0, "fps": fps,
                         "span": [origin, 0.0, 4.0], "audio_start_s": origin + (f - 12) / fps,
                         "target": 1})  # fmt: skip
    return rows


def test_negatives_follow_the_grid_rule_and_the_curriculum() -> None:
    rows = _rows()
    maker = PairMaker(rows, negatives="other")
    for i in range(200):
        rng = np.random.default_rng([0, 0, i])
        row = rows[i % len(rows)]
        src, start, kind = maker.negative(row, rng)
        assert kind == "other" and src["video"] != row["video"]
        m = (start - src["span"][0]) * row["fps"]  # on the *frame's* grid, from the other origin
        assert abs(m - round(m)) < 1e-6 and 0.0 <= start and start + 1.0 <= 4.0 + 1e-9
    off = PairMaker(rows, negatives="other", grid=False)
    ms = []
    for i in range(100):
        row = rows[0]
        src, start, _ = off.negative(row, np.random.default_rng([1, i]))
        m = (start - src["span"][0]) * row["fps"]
        ms.append(abs(m - round(m)))
    assert np.mean(ms) > 0.1  # anywhere, not on the grid
    sync = PairMaker(rows, negatives="sync", curriculum_epochs=4, sync_offset_s=(0.5, 1.0))
    for epoch, share in [(0, 0.0), (2, 0.5), (4, 1.0), (9, 1.0)]:
        assert sync.hard_share(epoch) == share
    for i in range(50):
        row = rows[1]
        src, start, kind = sync.negative(row, np.random.default_rng([2, i]), 4)
        assert kind == "sync" and src is row
        shift = (start - row["audio_start_s"]) * row["fps"]
        assert abs(shift - round(shift)) < 1e-6 and 0.5 <= abs(shift) / row["fps"] <= 1.0 + 1e-9


class _FakeReader(FrameReader):
    def __init__(self) -> None:
        super().__init__(".", (8, 8), sample_rate=1000)

    def audio(self, rel: str, start_s: float, seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * self.sample_rate), np.float32)


class _IndexReader:
    """Frames whose pixels hold their index; sound that is all zeros."""

    infos: dict = {}
    sample_rate = 8000

    def __call__(self, video: str, idx: list[int]) -> torch.Tensor:
        return torch.tensor(idx, dtype=torch.uint8)[:, None, None, None].expand(-1, 3, 4, 4)

    def audio(self, video: str, start_s: float, seconds: float) -> np.ndarray:
        return np.zeros(round(seconds * self.sample_rate), np.float32)


def test_frame_jitter_moves_the_shown_frame_or_adds_the_where_frame() -> None:
    rows, reader = _rows(), _IndexReader()
    seen, extra = set(), set()
    for i in range(60):
        row = rows[i % len(rows)]
        f = int(row["frame"])
        plain = PairMaker(rows, frames=3, frame_step=2)(row, reader, np.random.default_rng(i))
        assert plain["frames"][:, 0, 0, 0].tolist() == [f - 2, f, f + 2]
        moved = PairMaker(rows, jitter=4)(row, reader, np.random.default_rng(i))
        seen.add(int(moved["frames"][0, 0, 0, 0]) - f)
        both = PairMaker(rows, frames=3, frame_step=2, jitter=4, where_frame=True)(
            row, reader, np.random.default_rng(i)
        )
        got = both["frames"][:, 0, 0, 0].tolist()
        assert got[:3] == [f - 2, f, f + 2]  # the stack stays on the row's frame
        extra.add(got[3] - f)
    assert seen <= set(range(-4, 5)) and len(seen) >= 6
    assert extra <= set(range(-4, 5)) and len(extra) >= 6


class _LoudReader(_IndexReader):
    """The index frames, and sound at a constant 0.5 (-6 dBFS)."""

    def audio(self, video: str, start_s: float, seconds: float) -> np.ndarray:
        return np.full(round(seconds * self.sample_rate), 0.5, np.float32)


def test_silent_negatives_replace_a_share_of_the_negatives_sound() -> None:
    rows, reader = _rows(), _LoudReader()

    def levels(maker: PairMaker) -> list[tuple[int, float]]:
        out = []
        for i in range(200):
            ex = maker(rows[i % len(rows)], reader, np.random.default_rng([7, i]))
            a = ex["audio"].numpy().astype(np.float64)
            assert a.shape == (round(float(rows[0]["audio_s"]) * 8000),)
            out.append((int(ex["target"]), 20 * math.log10(math.sqrt(np.mean(a * a)))))
        return out

    half = levels(PairMaker(rows, neg_fraction=1.0, silent_negatives=0.5))
    quiet = [db for t, db in half if db < -40]
    assert all(t == 0 for t, _ in half) and 70 <= len(quiet) <= 130
    assert all(-91 < db < -49 for db in quiet) and np.std(quiet) > 5  # levels drawn in a range
    assert all(abs(db + 6.02) < 0.01 for _, db in half if db >= -40)  # the rest: other sound
    # positives keep their own sound; without the option no negative is silent
    assert all(db > -7 for t, db in levels(PairMaker(rows, neg_fraction=0.0, silent_negatives=1.0)))
    assert all(db > -7 for _, db in levels(PairMaker(rows, neg_fraction=1.0)))
    with pytest.raises(ValueError, match="silent_negatives"):
        PairMaker(rows, silent_negatives=1.5)


def test_grid_ticks_land_on_the_source_grid() -> None:
    src = {"video": "a.mp4", "fps": 10.0, "span": [0.05, 0.0, 4.0]}
    x = read_sound(src, 0.12, 1.0, _FakeReader(), tick=0.5)
    k = np.flatnonzero(x)
    assert (x[k] == 0.5).all()
    assert k.tolist() == [round((0.05 + m / 10 - 0.12) * 1000) for m in range(1, 11)]


def test_reader_audio_equals_a_window_read(media: dict) -> None:
    f = next(m for m in media.values() if m.has_audio and m.audible and not m.audio_delay)
    path = Path(f.path)
    reader = FrameReader(path.parent, (16, 16), cache_mb=64, sample_rate=16000)
    for start in (0.0, 0.37, 1.2):
        ours = reader.audio(path.name, start, 0.5)
        ref = decode.read_audio(path, start, 0.5, sample_rate=16000).data.numpy()[0]
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert (reader.audio(path.name, -0.25, 0.5)[:4000] == 0).all()  # before the track: zeros


@pytest.fixture(scope="module")
def av_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_av")
    synth.build_synth(root, num_clips=32, seed=5, workers=1, progress=False)
    prep_synth_av(root, workers=1, progress=False)
    return root / "av"


def test_synth_pairs_and_trials(av_set: Path) -> None:
    rows = [json.loads(x) for x in (av_set / "avc_train.jsonl").read_text().splitlines()]
    pos = [r for r in rows if r["target"] == 1]
    assert pos and all("fps" in r and "span" in r for r in pos)
    trials = [json.loads(x) for x in (av_set / "localization_test.jsonl").read_text().splitlines()]
    assert trials and all(len(t["bbox"]) == 1 and len(t["bbox"][0]) == 4 for t in trials)
    card = json.loads((av_set / "prep.json").read_text())
    assert card["config"]["min_window_peak_dbfs"] == -30.0


def test_synth_temporal_prep_sees_classes_and_split(av_set: Path, tmp_path: Path) -> None:
    """'avssl-prep synth' mines the temporal samples of the synth's train clips, by class; a
    temporal prep made the old way (the video folder: no class, every clip train) is re-made."""
    from avssl.data.manifest import read_manifest
    from data_prep.scan import scan_folder
    from data_prep.synth_av import scan_synth
    from data_prep.videos import MineConfig, prep_videos

    root, out = av_set.parent, tmp_path / "temporal"
    fast = MineConfig(tuples_per_video=24, questions_per_video=8, clips_per_video=8)
    old = prep_videos(scan_folder(root / "videos"), out, config=fast, workers=1, progress=False)
    assert "all: no classes (no video is in a class sub-folder)" in old.summary()
    res = prep_videos(scan_synth(root), out, config=fast, workers=1, progress=False)
    rows = read_manifest(root / "manifest.jsonl")
    train = {Path(r["file"]).name for r in rows if r["split"] == "train"}
    assert res.counts.get("processed") == len(rows)  # records of the old scan are not reused
    text = res.summary()
    assert f"{len(train)} train videos; {len(rows) - len(train)} test videos" in text, text
    assert "all: 8 classes; fewest shuffle_learn" in text and "(none)" not in text, text
    assert text.splitlines()[-1].startswith(f"wrote {out.resolve()}: videos.jsonl")
    samples = read_manifest(out / "shuffle_learn.jsonl")
    assert samples and {r["video"] for r in samples} <= train  # val and test clips held out
    assert (out / "shuffle_learn.jsonl").is_file() and not (out / "splitall").exists()
    videos = read_manifest(out / "videos.jsonl")
    assert len(videos) == len(rows) and {v["synth_split"] for v in videos} == {
        "train", "val", "test"}  # fmt: skip
    again = prep_videos(scan_synth(root), out, config=fast, workers=1, progress=False)
    assert again.counts.get("reused") == len(rows)


TINY_AV = [
    "--set", "model.width=0.125", "--set", "model.blocks=2", "--set", "audio.blocks=2",
    "--set", "data.frame_size=32", "--set", "aug.size=32", "--set", "optim.batch_size=8",
    "--set", "run.tensorboard=false", "--set", "data.localization_trials=12",
    "--set", "data.max_val_rows=32",
]  # fmt: skip


@pytest.mark.parametrize("task", ["ave_net", "avol_net", "av_sync", "l3_net"])
def test_pair_tasks_train_localize_and_evaluate(
    av_set: Path, tmp_path: Path, task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / task
    argv = [task.replace("_", "-"), "--out", str(run),
            "--set", f"data.manifest={av_set / 'avc_train.jsonl'}",
            "--set", f"data.val_manifest={av_set / 'avc_test.jsonl'}",
            "--set", "optim.epochs=1", "--set", "optim.steps_per_epoch=3", *TINY_AV]  # fmt: skip
    assert cli.train_main(argv) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if "val_balanced_acc" in r]
    assert ev and ev[-1]["val_samples"] == 32
    loc = json.loads((run / "localization.json").read_text())
    assert loc["metrics"]["trials"] == 12 and 0 <= loc["metrics"]["pointing_matched"] <= 1
    # the closing check's figures are the run's last metrics.jsonl record; the run is named
    assert rows[-1]["loc_pointing_matched"] == loc["metrics"]["pointing_matched"]
    assert f"run in {run}/: config.yaml, checkpoint.pt" in capsys.readouterr().err
    sheets = sorted(p.name for p in (run / "heatmaps").glob("*.png"))
    assert sheets == sorted(loc["pictures"]) and 2 <= len(sheets) <= 12
    assert len({s[4:].rsplit("_", 1)[0] for s in sheets}) == len(sheets)  # one per clip
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["audio_backbone"] == "audio_tiny" and "audio_net.blocks.0.0.weight" in ck["model"]
    assert ck["backbone"] == "vgg_av" and json.loads(ck["backbone_kwargs"])["in_channels"] == 3
    if task != "ave_net":
        return
    # the towers load where the evaluations look for them
    from avssl.eval.loading import load_audio_model, load_encoder

    net, info = load_encoder(str(run))
    assert info.backbone == "vgg_av" and net(torch.zeros(1, 3, 32, 32)).shape == (1, 16)
    tower, ainfo = load_audio_model(str(run))
    assert tower.sample_rate == 16000 and tower(torch.zeros(2, 16000)).shape == (2, 32)
    capsys.readouterr()
    out = tmp_path / "ev"
    code = eval_cli.main(["localization", str(run), "--out", str(out), "--max-trials", "10",
                          "--pictures", "2"])  # fmt: skip
    assert (
        code == 0 and json.loads((out / "localization.json").read_text())["metrics"]["trials"] == 10
    )
    code = eval_cli.main(
        ["cross-modal", f"random:{run}", "--images", str(av_set / "localization_test.jsonl"),
         "--sounds", str(av_set / "avc_test.jsonl"), "--out", str(out)]
    )  # fmt: skip
    res = json.loads((out / "cross_modal.json").read_text())
    assert code == 0 and 0 <= res["metrics"]["audio->image/R@1"] <= 1
    assert res["model"]["path"].startswith("random:")
    for grid in ([], ["--no-grid"]):  # held-out pairs as the run validates, or cut anywhere
        code = eval_cli.main(["correspondence", str(run), "--pairs", str(av_set / "avc_test.jsonl"),
                              "--max-pairs", "16", "--out", str(out), *grid])  # fmt: skip
        res = json.loads((out / "correspondence.json").read_text())
        assert code == 0 and res["metrics"]["pairs"] > 0 and 0 <= res["metrics"]["accuracy"] <= 1


def test_localization_metrics_reward_following_the_sound(av_set: Path) -> None:
    """A stand-in model whose map is the true box when the sound is the trial's own and flat
    otherwise: perfect pointing, chance-free mismatched/silent trials."""
    from avssl.eval.av import LoadedAV, evaluate_localization, trial_reader
    from avssl.train import TrainConfig

    trials = [json.loads(x) for x in (av_set / "localization_test.jsonl").read_text().splitlines()]
    trials = trials[:: max(1, len(trials) // 10)][:10]  # several clips (labels differ)

    class Oracle(torch.nn.Module):
        sample_rate = 16000

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def localize(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
            out = torch.full((len(frames), 8, 8), 0.5)
            for k in range(len(frames)):
                if float(audio[k].abs().sum()) and torch.equal(audio[k], self.own[k]):
                    ((x1, y1, x2, y2),) = self.boxes[k]
                    cy, cx = int((y1 + y2) / 2 * 8), int((x1 + x2) / 2 * 8)
                    out[k, cy, cx] = 1.0
            return out

        def match_logit(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
            return torch.tensor([5.0 if torch.equal(audio[k], self.own[k]) else -5.0
                                 for k in range(len(frames))])  # fmt: skip

    cfg = TrainConfig()
    cfg.data.frame_size = 32
    oracle = Oracle()
    loaded = LoadedAV(oracle, cfg, "oracle")
    reader = trial_reader(av_set / "localization_test.jsonl", loaded)
    from avssl.eval.av import _sound

    oracle.own = torch.from_numpy(np.stack([_sound(t, reader) for t in trials]))  # type: ignore[attr-defined]
    oracle.boxes = [t["bbox"] for t in trials]  # type: ignore[attr-defined]
    res, _ = evaluate_localization(loaded, trials, reader, batch_size=16)
    assert res["pointing_matched"] == 1.0 and res["match_rate_matched"] == 1.0
    assert res["match_rate_silent"] == 0.0 and res["match_rate_mismatched"] == 0.0
    assert res["pointing_silent"] < 1.0 and math.isclose(res["trials"], 10)


def test_av_sync_resume_after_kill_equals_uninterrupted(av_set: Path, tmp_path: Path) -> None:
    """The per-sample negatives (and the sync curriculum's clock) come from (seed, epoch, index),
    so a run killed mid-epoch and resumed ends where an uninterrupted one does."""
    import os
    import signal
    import subprocess
    import sys

    from avssl.engine import TIMING_KEYS

    repo = Path(__file__).resolve().parents[1]
    common = ["--set", f"data.manifest={av_set / 'avc_train.jsonl'}",
              "--set", f"data.val_manifest={av_set / 'avc_test.jsonl'}",
              "--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=4",
              "--set", "run.ckpt_every_steps=2", "--set", "run.device=cpu",
              "--set", "data.sync_curriculum_epochs=1", "--set", "data.localization_trials=0",
              *TINY_AV]  # fmt: skip

    def run(out: Path, *extra: str) -> int:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "avssl.cli", "train", "av_sync", "--out", str(out)]
        p = subprocess.run([*argv, *common, *extra], cwd=repo, env=env, capture_output=True,
                           timeout=300)  # fmt: skip
        return p.returncode

    def metrics(out: Path) -> list[dict]:
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert run(ref) == 0
    assert run(cut, "--set", "run.crash_at_step=6") == -signal.SIGKILL
    c = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (c["epoch"], c["step_in_epoch"]) == (1, 2), "not killed mid-epoch"
    assert run(cut, "--resume") == 0
    assert metrics(cut) == metrics(ref)
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _av_configs() -> list[Path]:
    import yaml

    root = Path(__file__).resolve().parents[1] / "configs"
    tasks = {"ave_net", "l3_net", "avol_net", "av_sync"}
    return [
        p for p in sorted(root.glob("*.yaml")) if yaml.safe_load(p.read_text()).get("task") in tasks
    ]


@pytest.mark.parametrize("path", _av_configs(), ids=lambda p: p.name)
def test_av_configs_load_and_build(path: Path) -> None:
    """Every audio-visual config resolves over its task's defaults and its model builds (the
    paper-size ones only resolve: their VGG towers are large)."""
    import yaml

    from avssl.config import load_config
    from avssl.tasks import TASKS
    from avssl.tasks.av import build_pair_model
    from avssl.train import TrainConfig

    task = yaml.safe_load(path.read_text())["task"]
    cfg = load_config(TrainConfig, path, [f"task={task}"], base=TASKS[task].defaults)
    assert cfg.task == task
    if "audioset" not in path.name:
        model = build_pair_model(cfg)
        assert isinstance(model, AVNet) and model.when_stream == cfg.options.when_stream


def test_random_baseline_results_never_overwrite_the_runs_own(tmp_path: Path) -> None:
    from avssl.eval.av import default_out

    run = tmp_path / "run"
    run.mkdir()
    assert default_out(str(run)) == run / "eval"
    assert default_out(str(run / "checkpoint.pt")) == run / "eval"
    assert default_out(f"random:{run}") == run / "eval" / "random"
    assert default_out(f"random:{run / 'checkpoint.pt'}") == run / "eval" / "random"


def test_map_pool_is_log_mean_exp_and_tends_to_the_max() -> None:
    cells = torch.tensor([[0.0, 1.0, 3.0, -2.0]])
    m = AVNet("avol", map_pool=1.0, **SMALL)
    want = torch.log(torch.exp(cells).mean(-1))
    torch.testing.assert_close(m._pool_cells(cells), want)
    m.map_pool = 200.0
    assert abs(float(m._pool_cells(cells)) - 3.0) < 0.01
    m.map_pool = 0.0
    assert float(m._pool_cells(cells)) == 3.0
    b = _batch(4)
    with torch.no_grad():  # the clip logit is the pooled map, with or without the option
        for r in (0.0, 1.0):
            m.map_pool = r
            m.eval()
            own = m.match_logit(b["frames"], b["audio"])
            cells_ = m._logit_maps(b["frames"], b["audio"])[1]
            torch.testing.assert_close(own, m._pool_cells(cells_.flatten(1)))
    with pytest.raises(ValueError, match="map_pool"):
        AVNet("l3", map_pool=1.0, **SMALL)
