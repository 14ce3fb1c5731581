"""Tracking that emerges from colourisation: the colour-copy loss, label propagation, the
tracking metrics, the ``colorization_tracking`` task, ``avssl-track`` and ``avssl-eval tracking``
(avssl/models/tracking.py, avssl/tasks/tracking.py, avssl/eval/propagation.py, avssl/track.py,
avssl/eval/tracking.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avssl import cli, track
from avssl.eval import propagation as prop
from avssl.eval import tracking as evt
from avssl.models.tracking import colour_copy_loss
from avssl.tasks.tracking import kmeans

# ------------------------------------------------------------------------------ the loss


def test_colour_copy_loss_reproduces_identical_frames_and_matches_formula() -> None:
    g = torch.Generator().manual_seed(0)
    b, d, h, w, k = 2, 16, 3, 4, 5
    feats = F.normalize(torch.randn(b, d, h, w, generator=g), dim=1)
    codes = torch.randint(k, (b, h, w), generator=g)
    # the reference is the target: a sharp pointer finds each location itself -> exact colours
    loss, logp = colour_copy_loss(feats[:, None], codes[:, None], feats, codes, k, 1e-3)
    assert loss.item() < 1e-4
    assert torch.equal(logp.argmax(1), codes)
    # a soft pointer: the loss equals -log sum_j softmax_j(f_i . f_j / T) [c_j = c_i], averaged
    tgt = F.normalize(torch.randn(b, d, h, w, generator=g), dim=1)
    tcodes = torch.randint(k, (b, h, w), generator=g)
    loss, _ = colour_copy_loss(feats[:, None], codes[:, None], tgt, tcodes, k, 0.5)
    want = []
    for bi in range(b):
        fr, cr = feats[bi].reshape(d, -1).T, codes[bi].reshape(-1)
        for ft, ct in zip(tgt[bi].reshape(d, -1).T, tcodes[bi].reshape(-1), strict=True):
            a = torch.softmax(fr @ ft / 0.5, 0)
            want.append(-torch.log(a[cr == ct].sum().clamp_min(1e-8)))
    assert loss.item() == pytest.approx(torch.stack(want).mean().item(), rel=1e-5)


def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[-50.0, 0.0], [0.0, 40.0], [60.0, -30.0]])
    pts = torch.cat([c + torch.randn(200, 2, generator=g) for c in centres])
    got = kmeans(pts, 3, seed=0)
    order = got[:, 0].argsort()
    assert torch.allclose(got[order], centres, atol=0.5)
    assert torch.equal(kmeans(pts, 3, seed=0), got)  # seeded


# ------------------------------------------------------------------------------ propagation


def _texture(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_propagation_of_identical_frames_keeps_the_labels() -> None:
    frames = np.stack([_texture(0)] * 3)
    emb = prop.load_embedder("lab-pixels")
    index = prop.boxes_to_index(np.array([[8.0, 12.0, 28.0, 40.0], [40, 40, 60, 56]]), 64, 64)
    opts = prop.PropagationOptions(context=1, radius=None, topk=1)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    labels = prop.track_features(emb, emb.embed(x), index, 2, opts)
    init = prop.init_labels(index, 2, (16, 16))
    for t in range(3):
        assert torch.allclose(labels[t], init, atol=1e-6)
    assert prop.boxes_from_index(prop.labels_to_index(labels[2], (64, 64)), 2) == [
        [8.0, 12.0, 28.0, 40.0], [40.0, 40.0, 60.0, 56.0]]  # fmt: skip


@pytest.mark.parametrize(("dy", "dx"), [(8, 4), (-4, 12)])
def test_propagation_follows_a_translation(dy: int, dx: int) -> None:
    """Raw-pixel features on a textured frame: frame 1 is frame 0 shifted by whole cells, so
    the box moves by exactly the shift."""
    f0 = _texture(3)
    f1 = np.roll(f0, (dy, dx), axis=(0, 1))
    frames = torch.from_numpy(np.stack([f0, f1])).permute(0, 3, 1, 2)
    box = [20.0, 16.0, 36.0, 40.0]
    index = prop.boxes_to_index(np.array([box]), 64, 64)
    for spec in ("lab-pixels", "pixels"):
        emb = prop.load_embedder(spec)
        opts = prop.PropagationOptions(context=1, radius=4, topk=1)
        labels = prop.track_features(emb, emb.embed(frames), index, 1, opts)
        got = prop.boxes_from_index(prop.labels_to_index(labels[1], (64, 64)), 1)[0]
        assert got == [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy], spec


# ------------------------------------------------------------------------------ metrics


def test_box_iou_and_success_auc() -> None:
    assert evt.box_iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert evt.box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert evt.box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert evt.box_iou(None, [0, 0, 1, 1]) == 0.0
    # thresholds 0, 0.05, ..., 1: IoU > theta; {0, 0.5, 1} -> 2/3 for 10 thresholds (0..0.45),
    # 1/3 for 10 (0.5..0.95), 0 at 1.0
    assert evt.success_auc([0.0, 0.5, 1.0]) == pytest.approx(10 / 21)
    curve = evt.success_curve([0.0, 0.5, 1.0])
    assert curve[0] == pytest.approx(2 / 3) and curve[10] == pytest.approx(1 / 3) and curve[20] == 0


def test_region_similarity_and_boundary_f() -> None:
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.zeros((40, 40), bool)
    b[10:20, 15:25] = True
    assert evt.region_similarity(a, b) == pytest.approx(50 / 150)
    assert evt.region_similarity(a, a) == 1.0
    assert evt.region_similarity(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert evt.boundary_f(a, a) == 1.0
    far = np.zeros((40, 40), bool)
    far[30:35, 30:35] = True
    assert evt.boundary_f(a, far) == 0.0
    assert evt.boundary_f(a, np.zeros_like(a)) == 0.0
    # a one-pixel shift lies within the tolerance (ceil(0.008 * 56.6) = 1 px)
    assert evt.boundary_f(a, np.roll(a, 1, axis=1)) == 1.0


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data_prep import synth

    root = tmp_path_factory.mktemp("synth_tracking")
    synth.build_synth(root, num_clips=8, seed=3, workers=1, progress=False)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    videos = [{"v": 1, "video": Path(r["file"]).name, "num_frames": r["num_frames"]} for r in rows]
    (root / "videos.jsonl").write_text("".join(json.dumps(v) + "\n" for v in videos))
    return root


TINY = ["--set", "backbone=convnet_tiny", "--set", "model.channels=[8,16]",
        "--set", "data.frame_size=32", "--set", "aug.size=32", "--set", "optim.batch_size=4",
        "--set", "optim.optimizer=adamw", "--set", "optim.epochs=1",
        "--set", "optim.steps_per_epoch=3", "--set", "run.tensorboard=false",
        "--set", "run.log_every=1", "--set", "run.device=cpu",
        "--set", "tracking.colour_frames=8", "--set", "tracking.per_video=2",
        "--set", "tracking.head_width=8", "--set", "tracking.embed_dim=8",
        "--set", "tracking.colours=6"]  # fmt: skip


@pytest.fixture(scope="module")
def run(synth_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "trk"
    argv = ["colorization-tracking", "--out", str(out),
            "--set", f"data.manifest={synth_set / 'videos.jsonl'}",
            "--set", f"data.root={synth_set / 'videos'}", *TINY]  # fmt: skip
    assert cli.train_main(argv) == 0
    return out


def test_task_trains_and_its_checkpoint_loads(run: Path, synth_set: Path) -> None:
    from avssl.eval.loading import load_encoder
    from avssl.models.backbones import ConvNetTiny

    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [0, 1, 2]
    assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in steps if "loss" in r)
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["task"] == "colorization_tracking" and ck["model"]["centres"].shape == (6, 2)
    net, info = load_encoder(str(run))  # the backbone for avssl-eval
    assert isinstance(net, ConvNetTiny) and info.task == "colorization_tracking"
    emb = prop.load_embedder(str(run))
    assert emb.stride == 4 and emb.size == 32 and emb.temperature == pytest.approx(0.05)
    feats = emb.embed(torch.zeros(3, 3, 32, 48, dtype=torch.uint8))
    assert feats.shape == (3, 8, 8, 12)
    assert torch.allclose(feats.norm(dim=1), torch.ones(3, 8, 12), atol=1e-5)
    default = prop.load_embedder("random:convnet_tiny")  # a default head on a backbone
    assert default.embed(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 32, 8, 8)
    rnd = prop.load_embedder(f"random:{run}")  # the same network at random init
    assert rnd.kind == "random" and rnd.embed(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape[
        1] == 8  # fmt: skip
    # the synth's own split: its test clips are never trained on
    rows = [json.loads(line) for line in (synth_set / "manifest.jsonl").read_text().splitlines()]
    from avssl.tasks.tracking import synth_split

    videos = [{"video": Path(r["file"]).name} for r in rows]
    train, val = synth_split(videos, synth_set / "videos")  # type: ignore[misc]
    test = {Path(r["file"]).name for r in rows if r["split"] == "test"}
    assert not test & {r["video"] for r in train + val}
    assert len(train) == sum(r["split"] == "train" for r in rows)


def test_eval_tracking_on_the_synth(run: Path, synth_set: Path, tmp_path: Path) -> None:
    from avssl.cli.eval import main as eval_main

    split = json.loads((synth_set / "manifest.jsonl").read_text().splitlines()[0])["split"]
    out = tmp_path / "ev"
    argv = ["tracking", str(run), "--manifest", str(synth_set / "manifest.jsonl"), "--split",
            split, "--max-clips", "1", "--out", str(out), "--pictures", "1"]  # fmt: skip
    assert eval_main(argv) == 0
    res = json.loads((out / "tracking.json").read_text())
    m = res["metrics"]
    assert set(m) == {"tracker", "copy_first"}
    for who in m.values():
        assert 0.0 <= who["box_mIoU"] <= 1.0 and 0.0 <= who["J&F"] <= 1.0
    # copy-first, recomputed from the boxes file
    row = json.loads((synth_set / "manifest.jsonl").read_text().splitlines()[0])
    truth = json.loads((synth_set / row["boxes"]).read_text())
    want = np.mean([np.mean([evt.box_iou(o["boxes_px"][0], b) for b in o["boxes_px"][1:]])
                    for o in truth["objects"]])  # fmt: skip
    assert m["copy_first"]["box_mIoU"] == pytest.approx(want)
    assert len(list((out / "pictures").glob("*.png"))) == 1
    # the baseline random:RUN goes beside the run's own results by default
    argv = ["tracking", f"random:{run}", "--manifest", str(synth_set / "manifest.jsonl"),
            "--split", split, "--max-clips", "1", "--pictures", "0"]  # fmt: skip
    assert eval_main(argv) == 0
    assert json.loads((run / "eval" / "random" / "tracking.json").read_text())["kind"] == "tracking"


# ------------------------------------------------------------------------------ avssl-track


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bright square moving right over a dark textured background, 12 frames, lossless."""
    from avssl.data.encode import write_video

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], 12, axis=0)
    for i in range(12):
        frames[i, 16:32, 4 + 2 * i : 20 + 2 * i] = (240, 200, 40)
    path = tmp_path_factory.mktemp("video") / "square.mkv"
    write_video(path, frames, fps=10, codec="ffv1")
    return path


def test_track_cli_writes_boxes_masks_overlays(run: Path, video: Path, tmp_path: Path) -> None:
    init = tmp_path / "boxes.json"
    init.write_text(json.dumps({"frame": 0, "boxes": [[4, 16, 20, 32]], "names": ["square"]}))
    for spec in ("pixels", str(run)):
        out = tmp_path / Path(spec).name
        argv = [spec, str(video), "--init", str(init), "--out", str(out), "--png-every", "5",
                "--device", "cpu"]  # fmt: skip
        assert track.main(argv) == 0
        rec = json.loads((out / "boxes.json").read_text())
        boxes = rec["objects"][0]["boxes"]
        assert rec["frames"] == 12 and len(boxes) == 12 and rec["objects"][0]["name"] == "square"
        masks = np.load(out / "masks.npz")["masks"]
        assert masks.shape == (12, 48, 64) and masks.dtype == np.uint8 and masks[0].max() == 1
        assert sorted(p.name for p in (out / "frames").glob("*.png")) == [
            "00000.png", "00005.png", "00010.png"]  # fmt: skip
        from avssl.data import decode

        assert decode.probe(out / "square_track.mp4").num_frames == 12
    # raw pixels follow the square: 2 px per frame to the right
    rec = json.loads((tmp_path / "pixels" / "boxes.json").read_text())
    last = rec["objects"][0]["boxes"][-1]
    assert evt.box_iou(last, [26, 16, 42, 32]) > 0.6


def test_track_cli_mask_init_and_errors(
    video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    mask = np.zeros((48, 64), np.uint8)
    mask[16:32, 4:20] = 3
    Image.fromarray(mask, mode="L").save(tmp_path / "mask.png")
    out = tmp_path / "m"
    argv = ["pixels", str(video), "--init", str(tmp_path / "mask.png"), "--out", str(out),
            "--no-video", "--png-every", "0", "--max-frames", "4"]  # fmt: skip
    assert track.main(argv) == 0
    assert np.load(out / "masks.npz")["masks"].shape == (4, 48, 64)
    assert not (out / "square_track.mp4").exists()

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    argv = ["pixels", str(bad), "--init", str(tmp_path / "mask.png"), "--out", str(out)]
    assert track.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("avssl-track: ") and str(bad) in err

    argv = ["runs/no-such-run", str(video), "--init", str(tmp_path / "mask.png"), "--out",
            str(out)]  # fmt: skip
    assert track.main(argv) == 2
    assert "no checkpoint" in capsys.readouterr().err

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"boxes": []}))
    assert track.main(["pixels", str(video), "--init", str(empty), "--out", str(out)]) == 2
    assert "non-empty list" in capsys.readouterr().err


def test_lab_input_and_colour_dropout() -> None:
    """input=lab: the network sees L, a, b; colour_dropout zeroes a frame's a and b in training
    only (dropout 1: the same embedding as the frame's grey copy), never at tracking time."""
    from avssl.models.tracking import ColourTracker, TrackingOptions

    torch.manual_seed(0)
    model = ColourTracker(
        "convnet_tiny", centres=torch.randn(6, 2) * 30, embed_dim=8, head_width=8,
        channels=(8, 16), input="lab", colour_dropout=1.0,
    )  # fmt: skip
    rgb = torch.rand(1, 2, 3, 32, 32)
    grey = rgb.mean(2, keepdim=True).expand_as(rgb)
    x, lab = model.grey_lab(rgb)
    assert torch.allclose(x[:, :, 0], (lab[:, :, 0] - 50) / 25) and x[:, :, 1:].abs().sum() > 0
    model.eval()  # BN in eval: the embedding depends on the input only
    with torch.no_grad():
        seen = model.encoder(model._drop_colour(x))
        assert torch.equal(seen, model.encoder(x))  # no dropout outside training
        model.encoder.train(False)
        model.training = True  # the dropout step alone, in training mode
        dropped = model._drop_colour(x)
        assert torch.equal(dropped[:, :, 1:], torch.zeros_like(dropped[:, :, 1:]))
        assert torch.equal(dropped[:, :, 0], x[:, :, 0])
    xg, _ = model.grey_lab(grey)  # a grey frame's ab are (near) zero: dropout = its grey copy
    assert xg[:, :, 1:].abs().max() < 0.05
    with pytest.raises(ValueError, match="colour_dropout with input=grey"):
        TrackingOptions(colour_dropout=0.5).check()
    with pytest.raises(ValueError, match="grey or lab"):
        ColourTracker("convnet_tiny", centres=torch.zeros(4, 2), input="rgb")


@pytest.mark.parametrize(
    "name",
    [
        "colorization_tracking_synth.yaml",
        "colorization_tracking_kinetics.yaml",
        "colorization_tracking_real.yaml",
    ],
)
def test_configs_load_and_build(name: str) -> None:
    """Both configs resolve; the paper's network (ResNet-18 at stride 8 + the location + a
    5-layer 3-D conv head, plain dot products) builds and runs on 4 small frames."""
    from avssl.config import load_config
    from avssl.models.tracking import ColourTracker
    from avssl.tasks import TASKS
    from avssl.train import TrainConfig

    path = Path(__file__).resolve().parents[1] / "configs" / name
    task = "colorization_tracking"
    cfg = load_config(TrainConfig, path, [f"task={task}"], base=TASKS[task].defaults)
    o = cfg.tracking
    o.check()
    torch.manual_seed(0)
    model = ColourTracker(
        cfg.backbone, centres=torch.randn(o.colours, 2) * 30, temperature=o.temperature,
        normalize=o.normalize, embed_dim=o.embed_dim, head=o.head, head_layers=o.head_layers,
        head_width=o.head_width, coords=o.coords, input=o.input, colour_dropout=o.colour_dropout,
        **cfg.model.kwargs(cfg.backbone),
    )  # fmt: skip
    loss, logs = model({"frames": torch.randn(1, o.refs + 1, 3, 64, 64)})
    stride = 8 if cfg.backbone == "resnet18" else 4
    assert model.encoder.stride == stride and torch.isfinite(loss)
    assert logs["logits"].shape == (1, o.colours, 64 // stride, 64 // stride)


def test_track_cli_on_a_frame_folder_and_a_gif(video: Path, tmp_path: Path) -> None:
    """The same square as numbered JPEGs (mmaction2 rawframes names) and as an animated GIF."""
    from media import write_frame_folder, write_gif

    from avssl.data import decode

    frames = [f for _, f in decode.iter_frames(video)]
    seq = write_frame_folder(tmp_path / "square_frames", frames, "img_{:05d}.png", start=1)
    gif = write_gif(tmp_path / "square.gif", frames, 10)
    init = tmp_path / "boxes.json"
    init.write_text(json.dumps({"frame": 0, "boxes": [[4, 16, 20, 32]], "names": ["square"]}))
    for src in (seq, gif):
        out = tmp_path / ("out_" + src.stem)
        argv = ["pixels", str(src), "--init", str(init), "--out", str(out), "--device", "cpu"]
        assert track.main(argv) == 0
        rec = json.loads((out / "boxes.json").read_text())
        assert rec["frames"] == 12
        last = rec["objects"][0]["boxes"][-1]
        assert evt.box_iou(last, [26, 16, 42, 32]) > 0.6, (src, last)
        assert decode.probe(out / f"{src.stem}_track.mp4").num_frames == 12
