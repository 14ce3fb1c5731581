"""``avssl-train``: every task runs, resume after a kill equals an uninterrupted run, SIGTERM
saves and exits cleanly, two processes under torchrun (gloo), export into the backbone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avssl import cli
from avssl.data.dataset import split_by_video
from avssl.data.manifest import read_manifest
from avssl.models.backbones import build_backbone
from data_prep import synth
from data_prep.scan import scan_folder
from data_prep.videos import MineConfig, prep_videos

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "backbone=convnet_tiny", "--set", "model.channels=[8,16]", "--set", "model.spatial=2",
    "--set", "data.frame_size=32", "--set", "aug.size=28", "--set", "optim.batch_size=8",
    "--set", "optim.optimizer=adamw", "--set", "optim.lr=0.003", "--set", "run.log_every=1",
    "--set", "run.tensorboard=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_train")
    synth.build_synth(root, num_clips=8, seed=3, workers=1, progress=False)
    out = root / "temporal"
    cfg = MineConfig(tuples_per_video=12, questions_per_video=6, clips_per_video=6)
    prep_videos(scan_folder(root / "videos"), out, config=cfg, workers=1, progress=False)
    return out


def _args(manifests: Path, task: str, run: Path, *extra: str) -> list[str]:
    return [task, "--out", str(run), "--set", f"data.manifest={manifests / f'{task}.jsonl'}",
            *TINY, *extra]  # fmt: skip


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", ["shuffle_learn", "odd_one_out", "arrow_of_time"])
def test_every_task_trains_and_exports(manifests: Path, tmp_path: Path, task: str) -> None:
    run = tmp_path / task
    argv = _args(
        manifests, task, run, "--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=3"
    )
    assert cli.train_main(argv) == 0
    rows = _metrics(run)
    evals = [r for r in rows if "val_balanced_acc" in r]
    assert [r["epoch"] for r in evals] == [0, 1]
    assert all(0.0 <= r["val_balanced_acc"] <= 1.0 and r["val_samples"] > 0 for r in evals)
    assert len([r for r in rows if "loss" in r]) == 6
    assert (run / "config.yaml").read_text().startswith("task: " + task)
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 2 and ck["step_in_epoch"] == 0 and ck["task"] == task
    assert cli.export_main([str(run)]) == 0
    net = build_backbone("convnet_tiny", channels=(8, 16), spatial=2)
    net.load_state_dict(torch.load(run / "backbone.pt", weights_only=True))


def test_list_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.train_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(t in out for t in ("shuffle_learn", "odd_one_out", "arrow_of_time"))
    assert cli.train_main(["nonsense"]) == 2
    missing = ["shuffle_learn", "--out", str(tmp_path / "r"), "--set",
               f"data.manifest={tmp_path / 'absent.jsonl'}"]  # fmt: skip
    assert cli.train_main(missing) == 2
    assert cli.train_main(["shuffle_learn", "--set", "optim.lrr=1"]) == 2


def _run_cli(argv: list[str], **kw: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "avssl.cli", "train", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]  # fmt: skip


def test_resume_after_kill_equals_uninterrupted(manifests: Path, tmp_path: Path) -> None:
    common = ["--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=6",
              "--set", "run.ckpt_every_steps=2", "--set", "run.device=cpu"]  # fmt: skip
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    p = _run_cli(_args(manifests, "arrow_of_time", ref, *common))
    assert p.wait(timeout=300) == 0, p.stdout.read().decode() if p.stdout else ""
    # the drill: the process SIGKILLs itself right after the checkpoint of global step 10
    # (epoch 1, step 4 of 6), so the cut lands mid-epoch whatever the machine's speed
    p = _run_cli(_args(manifests, "arrow_of_time", cut, *common, "--set", "run.crash_at_step=10"))
    assert p.wait(timeout=300) == -signal.SIGKILL
    c = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (c["epoch"], c["step_in_epoch"]) == (1, 4), "not killed mid-epoch"
    p = _run_cli(_args(manifests, "arrow_of_time", cut, *common, "--resume"))
    assert p.wait(timeout=300) == 0, p.stdout.read().decode() if p.stdout else ""
    assert _metrics(cut) == _metrics(ref)
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_and_exits_cleanly(manifests: Path, tmp_path: Path) -> None:
    run = tmp_path / "term"
    p = _run_cli(_args(manifests, "shuffle_learn", run, "--set", "optim.epochs=50",
                       "--set", "optim.steps_per_epoch=4"))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "metrics.jsonl").is_file():
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 0
    c = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert c["epoch"] < 50


def test_torchrun_two_processes_gloo(manifests: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    argv = _args(manifests, "shuffle_learn", run, "--set", "optim.epochs=1",
                 "--set", "optim.steps_per_epoch=3", "--set", "run.device=cpu")  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "avssl.cli", "train", *argv]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode and any(m in r.stderr for m in ("Address already in use", "rendezvous")):
        # a port taken between torchrun's pick and its bind (other tests run beside): once more
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = _metrics(run)
    train_rows = [x for x in rows if "loss" in x]
    assert [x["step"] for x in train_rows] == [0, 1, 2]  # rank 0 alone logs
    ev = [x for x in rows if "val_balanced_acc" in x]
    _, val = split_by_video(read_manifest(manifests / "shuffle_learn.jsonl"), 0.2, 0)
    assert len(ev) == 1 and ev[0]["val_samples"] == len(val)  # both ranks' halves summed
