"""``avssl-eval finetune``: video-level score averaging, clip and crop placement, train/test
separation, an end-to-end run through the sub-command (videos and images), and ``--resume``
after a kill giving the same result as an uninterrupted run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avssl.cli import eval_finetune
from avssl.data.manifest import read_manifest, write_manifest
from avssl.engine import TIMING_KEYS
from avssl.eval import clips
from avssl.eval import finetune as ft
from avssl.eval import finetune_task as task
from avssl.eval.loading import load_encoder
from data_prep import synth

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "data.frame_size=32", "--set", "data.frame_width=0", "--set", "data.cache_mb=64",
    "--set", "aug.size=28", "--set", "optim.batch_size=4", "--set", "optim.epochs=2",
    "--set", "optim.steps_per_epoch=3", "--set", "optim.lr=0.05", "--set", "eval.num_clips=2",
    "--set", "eval.num_crops=2", "--set", "eval.batch_size=3", "--set", "run.log_every=1",
    "--set", "run.device=cpu",
]  # fmt: skip
KWARGS = ["--model-kwargs", '{"channels": [8, 16], "spatial": 1}']
RESULT_KEYS = {"format", "version", "kind", "dataset", "model", "layer", "metrics", "classes",
               "confusion", "per_fold", "extra", "command", "seconds"}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 built-in clips (2 per class); ``split.jsonl``: the first of each class trains, the
    second is a test video (the 70/15/15 split of 16 clips leaves no test clip)."""
    root = tmp_path_factory.mktemp("synth_ft")
    synth.build_synth(root, num_clips=16, seed=1, workers=1, progress=False)
    rows = read_manifest(root / "manifest.jsonl")
    seen: set[int] = set()
    for r in rows:
        r["split"] = "test" if r["class_id"] in seen else "train"
        seen.add(r["class_id"])
    write_manifest(root / "split.jsonl", rows)
    return root


# ------------------------------------------------------------------------------ pure parts
def test_video_scores_average_softmax_by_hand() -> None:
    # 2 videos x 2 clips x 2 crops x 3 classes
    logits = np.array(
        [
            [[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 1.0, 0.0], [1.0, 1.0, 3.0]]],
            [[[0.0, 0.0, 10.0], [0.0, 0.0, 0.0]], [[0.0, 5.0, 0.0], [0.0, 4.0, 0.0]]],
        ]
    )
    e = np.exp(logits)
    want = (e / e.sum(-1, keepdims=True)).reshape(2, 4, 3).mean(1)
    got = clips.average_softmax(torch.tensor(logits)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0)
    # video 2: softmax rows ~(0, 0, 1), (1/3, 1/3, 1/3), ~(0, 1, 0), ~(0, 1, 0) -> class 1,
    # whereas the mean logits (0, 2.25, 2.5) would say class 2
    assert got[1].argmax() == 1 and logits[1].reshape(4, 3).mean(0).argmax() == 2  # not logits
    # exact: softmax(ln 2, 0, 0) = (1/2, 1/4, 1/4), softmax(0, 0, 0) = 1/3 each
    two = torch.tensor([[[np.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]]])
    np.testing.assert_allclose(clips.average_softmax(two)[0], [5 / 12, 7 / 24, 7 / 24], rtol=1e-12)


def test_clip_starts_evenly_spaced_inside_the_video() -> None:
    assert clips.clip_starts(100, 1, 1) == [49]
    assert clips.clip_starts(100, 1, 5) == [9, 29, 49, 69, 89]
    assert clips.clip_starts(100, 16, 2) == [21, 63]
    for n in range(1, 60):
        for span in (1, 3, 8, 16):
            for k in (1, 2, 3, 4, 5, 10, 25):
                s = clips.clip_starts(n, span, k)
                assert len(s) == k and s == sorted(s)
                assert all(0 <= x <= max(n - span, 0) for x in s)
                starts, c = clips.eval_starts(n, span, k)
                assert starts[:k] == s and len(starts) == k + (k % 2 == 0)
                assert starts[c] == max(n - span, 0) // 2  # the centre clip
    # a short video: every clip starts at 0 and repeats its last frame
    assert clips.clip_starts(3, 8, 4) == [0, 0, 0, 0]
    assert clips.clip_indices(0, 8, 1, 3) == [0, 1, 2, 2, 2, 2, 2, 2]
    assert clips.clip_indices(5, 3, 4, 100) == [5, 9, 13]
    assert clips.clip_indices(0, 4, 1, 1) == [0, 0, 0, 0]  # an image


def test_crop_boxes() -> None:
    b = clips.crop_boxes(256, 340, 10, 0.875)
    assert len(b) == 10 and [m for *_, m in b] == [False] * 5 + [True] * 5
    side = 224.0
    assert b[0] == ((340 - side) / 2, (256 - side) / 2, side, False)
    assert {(x, y) for x, y, _, _ in b[1:5]} == {(0, 0), (340 - side, 0), (0, 256 - side),
                                                 (340 - side, 256 - side)}  # fmt: skip
    assert all(0 <= x and x + s <= 340 and 0 <= y and y + s <= 256 for x, y, s, _ in b)
    assert clips.crop_boxes(64, 64, 1, 1.0) == [(0.0, 0.0, 64.0, False)]
    assert [m for *_, m in clips.crop_boxes(64, 64, 2, 1.0)] == [False, True]
    with pytest.raises(ValueError, match="num_crops"):
        clips.crop_boxes(64, 64, 3, 1.0)


def test_input_modes() -> None:
    cfg = task.FinetuneConfig()
    net, info = load_encoder(
        "random:convnet_tiny", model_kwargs={"channels": [8], "in_channels": 6}
    )
    assert task.input_mode(info, cfg) == ("differences", 3)
    m = task.VideoClassifier(net, 8, 5, mode="differences", dropout=0.0)
    assert m.classify(torch.randn(2, 3, 3, 16, 16)).shape == (2, 5)
    net, info = load_encoder("random:convnet_tiny", model_kwargs={"channels": [8]})
    assert task.input_mode(info, cfg) == ("frames", 1)
    m = task.VideoClassifier(net, 8, 5, mode="frames", dropout=0.5, frozen=True).train()
    assert m.training and not m.net.training  # a frozen backbone keeps its BN statistics
    assert m.classify(torch.randn(2, 4, 3, 16, 16)).shape == (2, 5)


def test_default_paths(tmp_path: Path) -> None:
    _, info = load_encoder("random:convnet_tiny", model_kwargs={"channels": [8]})
    work, result = ft.default_paths(info, "synth")
    fp = info.fingerprint.removeprefix("random-")[:6]
    assert work == Path(f"evals/finetune-synth-random-convnet_tiny-{fp}")
    assert result == work.with_name(work.name + ".json")
    run = tmp_path / "sl"
    info = dataclasses.replace(info, source="run", spec=str(run))
    assert ft.default_paths(info, "ucf101-split1") == (
        run / "eval" / "finetune-ucf101-split1",
        run / "eval" / "finetune-ucf101-split1.json",
    )
    info = dataclasses.replace(info, source="checkpoint", spec=str(run / "checkpoint.pt"))
    assert ft.default_paths(info, "synth")[1] == Path("evals/finetune-synth-sl-checkpoint.json")
    run.mkdir()  # the baseline of a run (random:RUN, --like RUN): beside the run's own result
    info = dataclasses.replace(info, source="random", spec=f"random:{run}", like=str(run))
    assert ft.default_paths(info, "synth") == (
        run / "eval" / "random" / "finetune-synth",
        run / "eval" / "random" / "finetune-synth.json",
    )


def test_configs_load() -> None:
    from avssl.config import load_config

    ucf = load_config(task.FinetuneConfig, REPO / "configs" / "finetune_ucf101.yaml")
    default = task.FinetuneConfig()
    for section in ("clip", "aug", "optim", "head", "eval"):
        assert getattr(ucf, section) == getattr(default, section), section
    assert (ucf.data.frame_size, ucf.data.frame_width) == (256, 340)
    demo = load_config(task.FinetuneConfig, REPO / "configs" / "finetune_demo.yaml")
    for cfg in (ucf, demo):
        cfg.validate()
    with pytest.raises(ValueError, match="num_crops"):
        load_config(task.FinetuneConfig, None, ["eval.num_crops=3"]).validate()


# ------------------------------------------------------------------------------------ data
def test_train_and_test_rows_are_disjoint(data: Path) -> None:
    cfg = task.FinetuneConfig()
    d = ft.load_data(cfg, data / "split.jsonl", None)
    assert len(d.train) == 8 and len(d.test) == 8 and d.num_classes == 8
    assert not {r["id"] for r in d.train} & {r["id"] for r in d.test}
    split = {r["file"]: r["split"] for r in read_manifest(data / "split.jsonl")}
    assert {split[r["id"]] for r in d.train} == {"train"}
    assert {split[r["id"]] for r in d.test} == {"test"}
    assert d.classes[0] == "disc" and d.name == "synth"
    # separate manifests, as avssl-prep ucf101's splitK/train.jsonl + splitK/test.jsonl
    rows = read_manifest(data / "split.jsonl")
    write_manifest(data / "tr.jsonl", [r for r in rows if r["split"] == "train"])
    write_manifest(data / "te.jsonl", [r for r in rows if r["split"] == "test"])
    d2 = ft.load_data(cfg, data / "tr.jsonl", data / "te.jsonl")
    assert [r["id"] for r in d2.test] == [r["id"] for r in d.test]
    with pytest.raises(ValueError, match="also training videos"):
        ft.load_data(cfg, data / "split.jsonl", data / "te.jsonl")
    nosplit = [{k: v for k, v in r.items() if k != "split"} for r in rows]
    write_manifest(data / "nosplit.jsonl", nosplit)
    with pytest.raises(ValueError, match="--test"):
        ft.load_data(cfg, data / "nosplit.jsonl", None)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    eval_finetune.register(sub)
    return p.parse_args(["finetune", *argv])


def test_end_to_end_writes_the_result(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    args = _parse(["random:convnet_tiny", "--manifest", str(data / "split.jsonl"), *KWARGS,
                   *TINY, "--out", str(out)])  # fmt: skip
    assert args.func(args) == 0
    res = json.loads((out / "finetune-synth.json").read_text())
    assert RESULT_KEYS <= set(res) and res["kind"] == "finetune" and res["format"] == "avssl-eval"
    assert res["dataset"]["num_train"] == 8 and res["dataset"]["num_test"] == 8
    m = res["metrics"]
    for k in ("clip_acc", "clip_balanced_acc", "video_acc", "video_balanced_acc"):
        assert 0.0 <= m[k] <= 1.0
    cm = np.array(res["confusion"])
    assert (
        cm.shape == (8, 8) and cm.sum() == 8 and np.trace(cm) / 8 == pytest.approx(m["video_acc"])
    )
    assert res["model"]["source"] == "random" and res["extra"]["steps"] == 6
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == list(range(6))
    # the fine-tuned network is itself an encoder
    net, info = load_encoder(str(out))
    assert info.task == "finetune" and info.backbone == "convnet_tiny"
    # bad input: one line, status 2
    args = _parse(["random:nonet", "--manifest", str(data / "split.jsonl"), "--out", str(out)])
    assert args.func(args) == 2


def test_image_manifest(tmp_path: Path) -> None:
    import cv2

    tmp_path = tmp_path / "shapes"  # no prep card: the dataset is named after the folder
    rows = []
    rng = np.random.default_rng(0)
    for i in range(12):
        c = i % 3
        img = np.full((20, 20, 3) if i % 2 else (20, 20), 40, np.uint8)
        img[c * 6 : c * 6 + 6] = 220 + rng.integers(0, 30)
        rel = f"images/{c}/{i:02d}.png"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), img)
        rows.append({"v": 1, "path": rel, "class_id": c, "label": str(c),
                     "split": "test" if i >= 9 else "train"})  # fmt: skip
    write_manifest(tmp_path / "images.jsonl", rows)
    args = _parse(["random:convnet_tiny", "--manifest", str(tmp_path / "images.jsonl"), *KWARGS,
                   *TINY, "--out", str(tmp_path / "ft")])  # fmt: skip
    assert args.func(args) == 0
    res = json.loads((tmp_path / "ft" / "finetune-shapes.json").read_text())
    assert res["dataset"]["num_test"] == 3 and res["classes"] == ["0", "1", "2"]


# ---------------------------------------------------------------------------------- resume
def _records(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_resume_after_kill_equals_uninterrupted(data: Path, tmp_path: Path) -> None:
    common = ["random:convnet_tiny", "--manifest", str(data / "split.jsonl"), *KWARGS, *TINY,
              "--set", "run.ckpt_every_steps=2"]  # fmt: skip
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    args = _parse([*common, "--out", str(ref)])
    assert args.func(args) == 0
    # a separate process (with this one's thread count) killed right after the checkpoint of
    # global step 5 (epoch 1, step 2 of 3): mid-epoch; then resumed here
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    argv = [*common, "--out", str(cut), "--set", "run.crash_at_step=5"]
    p = subprocess.run([sys.executable, "-m", "avssl.cli.eval_finetune", *argv], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == -signal.SIGKILL, p.stdout[-2000:] + p.stderr[-2000:]
    c = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (c["epoch"], c["step_in_epoch"]) == (1, 2)
    assert not (cut / "finetune-synth.json").exists()
    args = _parse([*common, "--out", str(cut), "--resume"])
    assert args.func(args) == 0
    a = json.loads((ref / "finetune-synth.json").read_text())
    b = json.loads((cut / "finetune-synth.json").read_text())
    assert a["metrics"] == b["metrics"] and a["confusion"] == b["confusion"]
    assert _records(cut) == _records(ref)
    wa = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # another configuration is refused
    args = _parse([*common, "--out", str(cut), "--resume", "--set", "optim.lr=0.1"])
    assert args.func(args) == 2
