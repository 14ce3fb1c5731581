"""Frozen-feature evaluation of vision backbones (avssl/eval/vision.py, avssl/eval/retrieval.py)
and the digits image set (data_prep/digits.py).

Commands run end to end through a local argparse (``register(sub)``), on a 16-clip synthetic set
and on tiny generated PNG sheets; expected numbers are worked out by hand in the comments.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from media import shared_data_dir

from avssl.cli.eval import main as eval_main
from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from avssl.eval import retrieval as R
from avssl.eval import vision as V
from avssl.models.backbones import build_backbone
from data_prep.cli import add_command
from data_prep.digits import prep_digits, slice_grid

TINY = '{"channels": [8, 16]}'
FAST = ["--frames", "2", "--size", "32", "--frame-size", "32"]


def run_cmd(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    if argv[0] != "digits":
        code = eval_main(argv)
    else:
        p = argparse.ArgumentParser()
        add_command(p.add_subparsers(), "digits")
        args = p.parse_args(argv)
        code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- layers and pooling


def test_layer_hooks_convnet_tiny() -> None:
    net = build_backbone("convnet_tiny", channels=(8, 16, 32), spatial=2).eval()
    assert list(V.available_layers(net, "convnet_tiny")) == ["block1", "block2", "block3", "out"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # stride-2 blocks: 32 -> 16 -> 8 -> 4 px, channels 8, 16, 32
        for layer, ch in (("block1", 8), ("block2", 16), ("block3", 32)):
            mod = V.resolve_layer(net, "convnet_tiny", layer)
            assert V._Extractor(net, mod, 1)(x).shape == (2, ch)
            assert V._Extractor(net, mod, 2)(x).shape == (2, ch * 4)
        # out: the backbone's own feature, 32 channels x 2 x 2 (spatial=2)
        out = V._Extractor(net, V.resolve_layer(net, "convnet_tiny", "out"), 1)(x)
        assert out.shape == (2, 128)
        assert torch.allclose(out, net(x))
        # block1 by its module name gives the same numbers as its friendly name
        a = V._Extractor(net, V.resolve_layer(net, "convnet_tiny", "features.2"), 1)(x)
        b = V._Extractor(net, V.resolve_layer(net, "convnet_tiny", "block1"), 1)(x)
        assert torch.equal(a, b)
        # the pass stops at the hooked layer: the last block never runs
        ran = []
        net.features[-1].register_forward_hook(lambda *_: ran.append(1))
        V._Extractor(net, V.resolve_layer(net, "convnet_tiny", "block1"), 1)(x)
        assert ran == []
    with pytest.raises(ValueError, match="unknown layer 'block9'"):
        V.resolve_layer(net, "convnet_tiny", "block9")


def test_layer_hooks_caffenet_resnet_and_clip() -> None:
    torch.manual_seed(0)
    caffe = build_backbone("caffenet_small").eval()  # 24-64-96-96-64 channels, fc 1024
    names = list(V.available_layers(caffe, "caffenet_small"))
    assert names == ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "out"]
    want = {"conv1": 24, "conv2": 64, "conv3": 96, "conv4": 96, "conv5": 64, "pool5": 64,
            "fc6": 1024, "fc7": 1024, "out": 1024}  # fmt: skip
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for layer, dim in want.items():
            ext = V._Extractor(caffe, V.resolve_layer(caffe, "caffenet_small", layer), 1)
            assert ext(x).shape == (2, dim), layer
        # fc7 hooked == the forward output (relu7 is the last module)
        fc7 = V._Extractor(caffe, V.resolve_layer(caffe, "caffenet_small", "fc7"), 1)(x)
        assert torch.allclose(fc7, caffe(x))

        res = build_backbone("resnet18").eval()
        want = {"conv1": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512, "out": 512}
        assert list(V.available_layers(res, "resnet18")) == list(want)
        for layer, dim in want.items():
            ext = V._Extractor(res, V.resolve_layer(res, "resnet18", layer), 3)
            expect = dim if layer == "out" else dim * 9  # 3x3 pooled maps
            assert ext(torch.randn(1, 3, 64, 64)).shape == (1, expect), layer

        clip = build_backbone("r3d_18").eval()
        ext = V._Extractor(clip, V.resolve_layer(clip, "r3d_18", "layer2"), 2)
        assert ext(torch.randn(1, 3, 4, 32, 32)).shape == (1, 128 * 4)  # averaged over time


def test_pool_features_by_hand() -> None:
    t = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    assert V.pool_features(t, 1).tolist() == [[7.5]]  # mean of 0..15
    # 2x2 blocks: [0,1,4,5] -> 2.5, [2,3,6,7] -> 4.5, [8,9,12,13] -> 10.5, [10,11,14,15] -> 12.5
    assert V.pool_features(t, 2).tolist() == [[2.5, 4.5, 10.5, 12.5]]
    clip = torch.stack([t, t + 2], dim=2)  # (1, 1, T=2, 4, 4): time mean adds 1
    assert V.pool_features(clip, 1).tolist() == [[8.5]]
    vec = torch.randn(3, 5)
    assert torch.equal(V.pool_features(vec, 4), vec)


def test_frame_indices_are_segment_centres() -> None:
    assert V._frame_indices(100, 4) == [12, 37, 62, 87]  # floor(12.5), floor(37.5), ...
    assert V._frame_indices(10, 1) == [5]
    assert V._frame_indices(2, 4) == [0, 0, 1, 1]


# --------------------------------------------------------------------------- images


def write_sheet(path: Path, rows: int, cols: int) -> np.ndarray:
    """A grey sheet of 20x20 cells; cell (r, c) is filled with value 1 + r * cols + c."""
    sheet = np.zeros((rows * 20, cols * 20), np.uint8)
    for r in range(rows):
        for c in range(cols):
            sheet[r * 20 : (r + 1) * 20, c * 20 : (c + 1) * 20] = 1 + r * cols + c
    cv2.imwrite(str(path), sheet)
    return sheet


def test_digits_slicing_labels_positions_splits(tmp_path: Path) -> None:
    png = tmp_path / "sheet.png"
    write_sheet(png, rows=2, cols=10)  # 40 x 200 px: digit 0 in row 0, digit 1 in row 1
    out = tmp_path / "digits"
    res = prep_digits(png, out, rows_per_class=1)
    assert res.written == 20
    rows = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    for row in rows:
        digit, rc = row["path"].split("/")[1:]
        r, c = int(rc[:2]), int(rc[3:6])
        assert row["v"] == 1 and row["class_id"] == int(digit) == r and row["label"] == digit
        # left half of the columns is train; fold = 1 + (col // max(1, 10 // 10)) % 5
        assert row["split"] == ("train" if c < 5 else "test")
        assert row["fold"] == 1 + c % 5
        img = cv2.imread(str(out / row["path"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (20, 20) and (img == 1 + r * 10 + c).all()
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    card = json.loads((out / "prep.json").read_text())
    assert card["classes"] == ["0", "1"]
    assert card["counts"]["per_split"] == {"test": 10, "train": 10}
    # re-running: identical bytes, nothing rewritten (mtimes kept)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert prep_digits(png, out, rows_per_class=1).written == 0
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_digits_rejects_bad_sheets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="not a grid of 20x20"):
        slice_grid(np.zeros((30, 200), np.uint8))
    with pytest.raises(ValueError, match="multiple of rows_per_class=5"):
        slice_grid(np.zeros((40, 200), np.uint8))  # 2 rows, 5 per class
    code, _, err = run_cmd(["digits", str(tmp_path / "none.png"), "--out", str(tmp_path)], capsys)
    assert code == 2 and "avssl-prep digits:" in err and "none.png" in err


def test_digits_real_sheet(tmp_path: Path) -> None:
    png = shared_data_dir() / "digits" / "opencv-doc__digits.png"
    if not png.is_file():
        pytest.skip(f"../shared/data absent: {png} not found (set AVSSL_SHARED_DATA)")
    res = prep_digits(png, tmp_path / "digits")
    c = res.counts
    assert c["images"] == 5000
    assert c["per_split"] == {"test": 2500, "train": 2500}
    assert c["per_fold"] == {str(k): 1000 for k in range(1, 6)}
    assert c["per_class"] == {str(k): 500 for k in range(10)}
    rows = [json.loads(x) for x in (tmp_path / "digits" / "images.jsonl").read_text().split("\n")
            if x]  # fmt: skip
    first = {r["path"]: r for r in rows}
    assert first["images/1/05_000.png"]["class_id"] == 1  # rows 5..9 hold digit 1
    assert first["images/9/49_099.png"] == {"v": 1, "path": "images/9/49_099.png",
                                             "class_id": 9, "label": "9", "split": "test",
                                             "fold": 5}  # fmt: skip


def test_pixel_baseline_by_hand(tmp_path: Path) -> None:
    # an 8x8 grey image with quadrants 0, 64, 128, 255; size 8 keeps it as is, P = 2 averages
    # each 4x4 quadrant: feature = (v / 255 - mean_c) / std_c per channel c, channel-major
    img = np.zeros((8, 8), np.uint8)
    img[:4, 4:], img[4:, :4], img[4:, 4:] = 64, 128, 255
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "images.jsonl").write_text(
        json.dumps({"v": 1, "path": "a.png", "class_id": 0, "label": "a", "split": "train"}) + "\n"
    )
    ev = V.load_eval_set(tmp_path / "images.jsonl")
    model = V.load_model("pixels", pixels_size=2)
    spec = V.FeatureSpec(size=8, pixels_size=2)
    feats = V.extract_features(ev, model, spec, progress=False)
    quad = np.array([0, 64, 128, 255]) / 255.0
    want = np.concatenate(
        [(quad - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    )
    assert feats.shape == (1, 12)
    np.testing.assert_allclose(feats[0], want, atol=1e-5)


# --------------------------------------------------------------------------- synthetic videos


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 clips (2 per class, all 'train' in the generated manifest) with a manifest that puts
    clips 0-11 in train (classes 0-7, then 0-3 again) and 12-15 (classes 4-7) in test."""
    from data_prep.synth import build_synth

    root = tmp_path_factory.mktemp("synth16")
    build_synth(root, num_clips=16, seed=1, workers=1, progress=False)
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "train" if i < 12 else "test"
    (root / "split.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_linear_and_knn_end_to_end(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["random:convnet_tiny", "--model-kwargs", TINY, "--manifest",
              str(synth / "split.jsonl"), *FAST, "--cache", str(tmp_path / "cache")]  # fmt: skip
    out = tmp_path / "linear.json"
    code, stdout, err = run_cmd(["linear", *common, "--val-fraction", "0.5", "--out", str(out)],
                                capsys)  # fmt: skip
    assert code == 0, err
    assert "extracted" in stdout and "accuracy" in stdout
    r = json.loads(out.read_text())
    assert r["format"] == "avssl-eval" and r["version"] == 1 and r["kind"] == "linear"
    assert r["dataset"]["num_train"] == 12 and r["dataset"]["num_test"] == 4
    assert r["dataset"]["name"] == "synth" and r["dataset"]["kind"] == "video"
    assert r["model"]["source"] == "random" and r["model"]["backbone"] == "convnet_tiny"
    assert r["layer"] == "out"
    assert 0.0 <= r["metrics"]["accuracy"] <= 1.0 and r["metrics"]["C"] > 0
    assert r["classes"][:2] == ["disc", "square"] and len(r["classes"]) == 8
    cm = np.array(r["confusion"])
    assert cm.shape == (8, 8) and cm.sum() == 4 and cm[:4].sum() == 0  # test: classes 4-7
    assert np.trace(cm) / 4 == pytest.approx(r["metrics"]["accuracy"])
    assert r["extra"]["features"]["dim"] == 16 and r["extra"]["features"]["frames"] == 2
    assert r["extra"]["refit_accuracy"] == r["metrics"]["accuracy"]
    assert r["seconds"] > 0 and r["command"].startswith("avssl-eval linear random:convnet_tiny")
    [cache] = (tmp_path / "cache").glob("*.npz")
    with np.load(cache) as z:
        assert z["feats"].shape == (16, 16) and z["feats"].dtype == np.float32
        assert z["labels"].tolist() == [i % 8 for i in range(16)]
        assert z["ids"][0] == "videos/disc_00000.mp4" and z["split"][15] == "test"

    # the same features serve knn: a cache hit, no decoding
    out2 = tmp_path / "knn.json"
    code, stdout, err = run_cmd(["knn", *common, "--k", "3", "--out", str(out2)], capsys)
    assert code == 0, err
    assert "loaded from cache" in stdout
    k = json.loads(out2.read_text())
    assert k["kind"] == "knn" and k["extra"]["k"] == 3 and k["extra"]["features"]["cache_hit"]
    assert np.array(k["confusion"]).sum() == 4

    # a changed feature option misses the cache
    code, stdout, _ = run_cmd(["knn", *common, "--layer", "block1", "--out", str(out2)], capsys)
    assert code == 0 and "extracted" in stdout
    assert json.loads(out2.read_text())["extra"]["features"]["dim"] == 8

    # the pixel baseline on video frames: 3 * 4 * 4 values per video
    code, _, err = run_cmd(["knn", "pixels", "--pixels-size", "4", "--manifest",
                            str(synth / "split.jsonl"), *FAST, "--no-cache", "--out",
                            str(out2)], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads(out2.read_text())["extra"]["features"]["dim"] == 48


def test_baselines_go_under_their_run(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``random:BACKBONE --like RUN`` and ``random:RUN`` (the same network) write to
    RUN/eval/random/, beside the run's own RUN/eval/ results, where avssl-report finds them."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "rot"
    run.mkdir(parents=True)
    torch.manual_seed(3)
    net = build_backbone("convnet_tiny", channels=[8, 16])
    torch.save({"model": {f"encoder.net.{k}": v for k, v in net.state_dict().items()},
                "backbone": "convnet_tiny", "backbone_kwargs": TINY, "task": "rotation"},
               run / "checkpoint.pt")  # fmt: skip
    (run / "config.yaml").write_text("task: rotation\n")
    m = ["--manifest", str(synth / "split.jsonl"), *FAST]
    for model in (["runs/rot"], ["random:convnet_tiny", "--like", "runs/rot"]):
        code, out, err = run_cmd(["linear", *model, "--val-fraction", "0.5", *m], capsys)
        assert code == 0, err
    own, base = run / "eval" / "linear-synth.json", run / "eval" / "random" / "linear-synth.json"
    assert out.splitlines()[-1] == "wrote runs/rot/eval/random/linear-synth.json"
    b = json.loads(base.read_text())
    assert json.loads(own.read_text())["model"]["source"] == "run"
    assert b["model"]["source"] == "random" and b["model"]["like"] == "runs/rot"
    assert b["model"]["kwargs"] == {"channels": [8, 16]}
    code, out, err = run_cmd(["knn", "random:runs/rot", "--k", "3", *m], capsys)
    assert code == 0, err
    assert "loaded from cache" in out  # the same network as random:convnet_tiny --like runs/rot
    k = json.loads((run / "eval" / "random" / "knn-synth.json").read_text())
    assert k["model"]["fingerprint"] == b["model"]["fingerprint"]
    assert not (tmp_path / "evals").exists()
    code, _, err = run_cmd(["knn", "random:runs/nope", *m], capsys)
    assert code == 2 and "nor a run directory" in err
    from avssl.report import main as report_main

    assert report_main(["runs/rot"]) == 0
    text = (run / "report" / "README.md").read_text()
    assert "| [linear-synth](../eval/linear-synth.json) | linear | synth |" in text
    assert "](../eval/random/linear-synth.json) |" in text
    assert "| [knn-synth (baseline only)](../eval/random/knn-synth.json) | knn |" in text


def test_refusals(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = ["--manifest", str(synth / "split.jsonl"), "--out", str(tmp_path / "r.json")]
    code, _, err = run_cmd(["linear", "random:convnet_tiny", "--model-kwargs",
                            '{"channels": [8], "in_channels": 6}', *m], capsys)  # fmt: skip
    assert code == 2 and err.startswith("avssl-eval: ") and "6 input channels" in err
    code, _, err = run_cmd(["knn", "random:convnet_tiny", "--model-kwargs", TINY,
                            "--layer", "fc7", *m], capsys)  # fmt: skip
    assert code == 2 and "unknown layer 'fc7'" in err
    # the generated manifest has no test split
    code, _, err = run_cmd(["knn", "pixels", "--manifest", str(synth / "manifest.jsonl"),
                            "--out", str(tmp_path / "r.json")], capsys)  # fmt: skip
    assert code == 2 and "no test rows" in err and "splits present: train" in err
    code, _, err = run_cmd(["knn", "pixels", "--manifest", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "no such manifest" in err
    assert not (tmp_path / "r.json").exists()


def test_prep_style_split_manifests(synth: Path, tmp_path: Path) -> None:
    """``avssl-prep ucf101``-style layout: prep.json (root) + split1/train.jsonl, test.jsonl."""
    prep = tmp_path / "prep"
    (prep / "split1").mkdir(parents=True)
    (prep / "prep.json").write_text(json.dumps({"dataset": "fake", "root": str(synth)}))
    rows = [json.loads(x) for x in (synth / "manifest.jsonl").read_text().splitlines()]
    for name, part in (("train", rows[:12]), ("test", rows[12:])):
        (prep / "split1" / f"{name}.jsonl").write_text("".join(
            json.dumps({"v": 1, "video": r["file"], "class_id": r["class_id"],
                        "class_name": r["class_name"], "num_frames": r["num_frames"]}) + "\n"
            for r in part))  # fmt: skip
    ev = V.load_eval_set(prep / "split1" / "train.jsonl")
    assert ev.name == "fake-split1" and ev.kind == "video" and ev.root == synth
    assert [s.split for s in ev.samples] == ["train"] * 12 + ["test"] * 4
    assert ev.samples[0].path == synth / "videos" / "disc_00000.mp4"
    assert ev.classes[:3] == ["disc", "square", "triangle"]
    # videos.jsonl with per-split roles
    (prep / "videos.jsonl").write_text("".join(
        json.dumps({"v": 1, "video": r["file"], "class_id": r["class_id"],
                    "splits": {"1": "train" if i % 2 else "test", "2": "train"}}) + "\n"
        for i, r in enumerate(rows)))  # fmt: skip
    ev = V.load_eval_set(prep / "videos.jsonl")
    assert [s.split for s in ev.samples[:4]] == ["test", "train", "test", "train"]
    assert {s.split for s in V.load_eval_set(prep / "videos.jsonl", split="2").samples} == {"train"}
    (prep / "bad.jsonl").write_text(json.dumps({"v": 2, "video": "x.mp4"}) + "\n")
    with pytest.raises(ValueError, match="version 2"):
        V.load_eval_set(prep / "bad.jsonl")


# --------------------------------------------------------------------------- retrieval


def test_retrieve_by_hand() -> None:
    # query q0 = (1, 0); gallery g0 = (1, 0.1) [cos .995, class 0], g1 = (0, 1) [cos 0, class 1],
    # g2 = (1, -0.5) [cos .894, class 1], g3 = (-1, 0) [cos -1, class 0]
    # ranking: g0, g2, g1, g3 with relevance 1, 0, 0, 1
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.1], [0.0, 1.0], [1.0, -0.5], [-1.0, 0.0]])
    rel = np.array([[1.0, 0.0, 0.0, 1.0]])
    m, top = R.retrieve(q, g, rel, ks=(1, 2), show=[0], show_k=3)
    assert top[0]["items"] == [0, 2, 1] and top[0]["relevance"] == [1.0, 0.0, 0.0]
    assert m["R@1"] == 1.0 and m["R@2"] == 1.0
    # DCG@2 = 1 / log2(2) = 1; IDCG@2 = 1 + 1 / log2(3)
    assert m["nDCG@2"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))
    # AP: relevant at ranks 1 and 4 -> (1/1 + 2/4) / 2 = 0.75
    assert m["mAP"] == pytest.approx(0.75)
    # exclude self: query i never retrieves item i
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    m, top = R.retrieve(x, x, np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1.0]]), ks=(1,),
                        exclude_self=True, show=[0, 1, 2])  # fmt: skip
    assert [t["items"][0] for t in top] == [1, 0, 1]
    assert all(t["query"] not in t["items"] for t in top)
    assert m["num_excluded"] == 1  # item 2 has no other relevant item


def test_cross_modal_metric_path() -> None:
    # three clips: images i0 = (1,0), i1 = (0,1), i2 = (1,1); sounds a0 = (1,0.2), a1 = (0.2,1),
    # a2 = (-1,0). Relevance: image i <-> its own sound only.
    img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    aud = np.array([[1.0, 0.2], [0.2, 1.0], [-1.0, 0.0]])
    rel = np.eye(3)
    res = R.cross_modal(img, aud, rel, ks=(1, 3))
    # image->audio: i0 ranks a0 first, i1 ranks a1 first, i2 ranks a0/a1 (tie at .832 -> a0),
    # its own a2 last (rank 3): R@1 = 2/3, R@3 = 1
    assert res["image->audio"]["R@1"] == pytest.approx(2 / 3)
    assert res["image->audio"]["R@3"] == 1.0
    # audio->image: a0 -> i0 (.98), a1 -> i1 (.98), a2 -> i1 (0) before i2 (-.71) before... :
    # cos(a2, i0) = -1, cos(a2, i1) = 0, cos(a2, i2) = -.707 -> i1, i2, i0: own i2 at rank 2
    assert res["audio->image"]["R@1"] == pytest.approx(2 / 3)
    # mAP audio->image: (1 + 1 + 1/2) / 3; image->audio: (1 + 1 + 1/3) / 3
    assert res["audio->image"]["mAP"] == pytest.approx(2.5 / 3)
    assert res["image->audio"]["mAP"] == pytest.approx((2 + 1 / 3) / 3)
    with pytest.raises(ValueError, match="num_images, num_audio"):
        R.cross_modal(img, aud[:2], rel)


def test_retrieval_end_to_end(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ret.json"
    base = ["retrieval", "random:convnet_tiny", "--model-kwargs", TINY, "--manifest",
            str(synth / "split.jsonl"), *FAST, "--out", str(out)]  # fmt: skip
    code, stdout, err = run_cmd([*base, "--ks", "1,5", "--show", "3", "--show-k", "4"], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["kind"] == "retrieval" and r["dataset"]["num_test"] == 4
    assert r["dataset"]["num_train"] == 12
    assert set(r["metrics"]) == {"R@1", "R@5", "nDCG@1", "nDCG@5", "mAP"}
    assert r["extra"]["exclude_self"] is False and r["extra"]["num_queries"] == 4
    top = r["extra"]["top"]
    # one query per class first: the 4 test clips are of classes 4-7
    assert len(top) == 3 and [t["query_label"] for t in top] == ["ring", "cross", "diamond"]
    assert all(len(t["ids"]) == 4 and t["ids"][0].startswith("videos/") for t in top)
    ex = r["extra"]["retrieval_examples"]  # what avssl-report draws
    assert [e["query"] for e in ex] == [t["query_id"] for t in top]
    assert all(
        e["relevant"] == [x > 0 for x in t["relevance"]] for e, t in zip(ex, top, strict=True)
    )
    assert Path(r["extra"]["root"]).is_absolute() and r["extra"]["id_kind"] == "video"
    assert "R@1" in stdout and (tmp_path / "features").is_dir()  # default cache: out dir

    # queries == gallery: self excluded by default
    code, _, err = run_cmd([*base, "--queries", "train", "--gallery", "train"], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["extra"]["exclude_self"] is True
    assert all(t["query_id"] not in t["ids"] for t in r["extra"]["top"])

    code, _, err = run_cmd([*base, "--cross-modal"], capsys)
    assert code == 2 and "avssl-eval cross-modal" in err and "two-tower audio-visual run" in err


def test_retrieval_multilabel_ontology(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 4 images with label lists; ontology: /m/root -> /m/a, /m/b (siblings); /m/c unrelated
    onto = [{"id": "/m/root", "name": "root", "child_ids": ["/m/a", "/m/b"]},
            {"id": "/m/a", "name": "a", "child_ids": []},
            {"id": "/m/b", "name": "b", "child_ids": []},
            {"id": "/m/c", "name": "c", "child_ids": []}]  # fmt: skip
    (tmp_path / "onto.json").write_text(json.dumps(onto))
    labels = [["/m/a"], ["/m/b"], ["/m/c"], ["/m/a", "/m/c"]]
    rows = []
    for i, lab in enumerate(labels):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), 40 * i, np.uint8))
        rows.append({"v": 1, "path": f"{i}.png", "class_id": -1, "labels": lab, "split": "all"})
    (tmp_path / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["retrieval", "pixels", "--pixels-size", "2", "--size", "8", "--manifest",
            str(tmp_path / "images.jsonl"), "--queries", "all", "--gallery", "all",
            "--no-cache", "--out", str(tmp_path / "r.json")]  # fmt: skip
    code, _, err = run_cmd([*base, "--ontology", str(tmp_path / "onto.json")], capsys)
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["extra"]["relevance"].startswith("ontology") and "classes" not in r
    # every query has a relevant other item (a~b siblings 1/3, a in 0 and 3, c in 2 and 3)
    assert r["extra"]["num_excluded"] == 0
    # hand-check the relevance the command used
    ev = V.load_eval_set(tmp_path / "images.jsonl")
    idx = np.arange(4)
    rel, _ = R._relevance(ev.samples, idx, idx, str(tmp_path / "onto.json"))
    np.testing.assert_allclose(rel[0], [1, 1 / 3, 0, 1])
    rel, kind = R._relevance(ev.samples, idx, idx, "none")
    assert kind.startswith("jaccard") and rel[0, 3] == 0.5
    code, _, err = run_cmd([*base, "--ontology", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "ontology" in err
    # classification needs one class per row
    for i, r in enumerate(rows):
        r["split"] = "train" if i < 2 else "test"
    (tmp_path / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cmd(["knn", "pixels", "--manifest", str(tmp_path / "images.jsonl"),
                            "--no-cache", "--out", str(tmp_path / "k.json")], capsys)  # fmt: skip
    assert code == 2 and "class_id -1" in err


def test_digits_commands_on_generated_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "sheet.png"
    write_sheet(png, rows=4, cols=10)  # 4 digits, one row each
    code, stdout, err = run_cmd(["digits", str(png), "--out", str(tmp_path / "d"),
                                 "--rows-per-class", "1"], capsys)  # fmt: skip
    assert code == 0, err
    assert "40 images" in stdout
    out = tmp_path / "knn.json"
    code, _, err = run_cmd(["knn", "pixels", "--manifest", str(tmp_path / "d"), "--k", "1",
                            "--size", "20", "--pixels-size", "4", "--out", str(out)],
                           capsys)  # fmt: skip
    assert code == 0, err
    r: dict[str, Any] = json.loads(out.read_text())
    assert r["dataset"]["name"] == "digits" and r["dataset"]["kind"] == "image"
    assert r["dataset"]["num_train"] == 20 and r["classes"] == ["0", "1", "2", "3"]
    shutil.rmtree(tmp_path / "d" / "images")
    code, _, err = run_cmd(["knn", "pixels", "--manifest", str(tmp_path / "d"), "--no-cache",
                            "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and "image not found" in err
