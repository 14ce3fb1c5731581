"""``avssl-train``: every task runs, resume after a kill equals an uninterrupted run, SIGTERM
saves and exits cleanly, two processes under torchrun (gloo), export into the backbone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
from avssl.engine import EXIT_PREEMPTED, TIMING_KEYS
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
    """The records without their timing fields (throughput differs from run to run)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.mark.parametrize("task", ["shuffle_learn", "odd_one_out", "arrow_of_time"])
def test_every_task_trains_and_exports(
    manifests: Path, tmp_path: Path, task: str, capsys: pytest.CaptureFixture[str]
) -> None:
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
    raw = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in raw if "loss" in r]
    assert all(r["samples_per_s"] > 0 and 0.0 <= r["data_wait"] <= 1.0 for r in timed)
    assert (run / "config.yaml").read_text().startswith("task: " + task)
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 2 and ck["step_in_epoch"] == 0 and ck["task"] == task
    capsys.readouterr()
    assert cli.export_main([str(run)]) == 0
    net = build_backbone("convnet_tiny", channels=(8, 16), spatial=2)
    net.load_state_dict(torch.load(run / "backbone.pt", weights_only=True))
    # the loading lines avssl-export prints run as printed and give the same weights
    printed = capsys.readouterr().out.splitlines()
    snippet = "\n".join(ln[4:] for ln in printed if ln.startswith("    "))
    scope: dict = {}
    exec(snippet, scope)
    for k, v in net.state_dict().items():
        assert torch.equal(scope["net"].state_dict()[k], v), k


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        ("arrow_of_time", ["--set", "options.arrow_encoding=differences"]),
        ("odd_one_out", ["--set", "options.odd_encoding=differences"]),
        ("shuffle_learn", ["--set", "data.time_reverse=0.5", "--set", "options.head_hidden=16"]),
    ],
)
def test_task_options_train(manifests: Path, tmp_path: Path, task: str, extra: list[str]) -> None:
    run = tmp_path / task
    argv = _args(manifests, task, run, "--set", "optim.epochs=1", "--set",
                 "optim.steps_per_epoch=2", *extra)  # fmt: skip
    assert cli.train_main(argv) == 0
    assert [r["epoch"] for r in _metrics(run) if "val_acc" in r] == [0]
    assert cli.export_main([str(run)]) == 0  # a stack-of-differences first layer exports too
    kw = json.loads(torch.load(run / "checkpoint.pt", weights_only=True)["backbone_kwargs"])
    net = build_backbone("convnet_tiny", **kw)
    net.load_state_dict(torch.load(run / "backbone.pt", weights_only=True))
    assert net.features[0].in_channels == (3 if task == "shuffle_learn" else 3 * (kw_len(task) - 1))


def test_metrics_do_not_depend_on_worker_count(manifests: Path, tmp_path: Path) -> None:
    """Samples are drawn from (seed, epoch, index): 2 loader processes (kept across epochs)
    give the same run as loading in the main process."""
    common = ["--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=3",
              "--set", "data.time_reverse=0.5"]  # fmt: skip
    runs = []
    for workers in (0, 2):
        run = tmp_path / f"w{workers}"
        argv = _args(manifests, "shuffle_learn", run, *common, "--set",
                     f"data.num_workers={workers}")  # fmt: skip
        assert cli.train_main(argv) == 0
        runs.append(_metrics(run))
    assert runs[0] == runs[1] and len(runs[0]) == 8


def kw_len(task: str) -> int:
    return {"arrow_of_time": 8, "odd_one_out": 6}[task]  # MineConfig defaults: frames per input


def test_time_reverse_keeps_targets(manifests: Path) -> None:
    from avssl.data.dataset import FrameReader, ManifestDataset
    from avssl.tasks import TASKS

    class Ids(FrameReader):  # frames carry their own index, so the order shown is visible
        def __call__(self, rel: str, indices: list[int]) -> torch.Tensor:  # type: ignore[override]
            return torch.tensor(indices, dtype=torch.uint8).view(-1, 1, 1, 1)

    from avssl.tasks import arrow_of_time, odd_one_out, shuffle_learn

    makers = {"shuffle_learn": shuffle_learn.make_example, "odd_one_out": odd_one_out.make_example}
    for name, make_example in makers.items():
        task = TASKS[name]
        assert task.reverse_row is not None
        rows = read_manifest(manifests / task.manifest)
        fwd = ManifestDataset(rows, make_example, Ids(".", (1, 1)))
        back = ManifestDataset(rows, make_example, Ids(".", (1, 1)),
                               reverse_row=task.reverse_row, time_reverse=1.0)  # fmt: skip
        half = ManifestDataset(rows, make_example, Ids(".", (1, 1)),
                               reverse_row=task.reverse_row, time_reverse=0.5)  # fmt: skip
        flipped = 0
        for i in range(len(rows)):
            a, b, h = fwd[i], back[i], half[i]
            assert int(a["target"]) == int(b["target"]) == int(h["target"])
            fa, fb = a["frames"].flatten(), b["frames"].flatten()
            if name == "shuffle_learn":
                assert fb.tolist() == fa.flip(0).tolist()
                for f in (fa, fb):  # the middle frame lies between the ends iff positive
                    x, y, z = f.tolist()
                    assert (min(x, z) < y < max(x, z)) == bool(int(a["target"]))
            else:
                n = len(rows[i]["subsequences"])
                assert fb.view(n, -1).tolist() == fa.view(n, -1).flip(1).tolist()
            flipped += h["frames"].flatten().tolist() != fa.tolist()
        assert 0 < flipped < len(rows)  # p = 0.5 reverses some rows, not all
    with pytest.raises(ValueError, match="time reversal"):
        ManifestDataset([], arrow_of_time.make_example, Ids(".", (1, 1)),
                        time_reverse=0.5)  # fmt: skip


def test_list_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.train_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(t in out for t in ("shuffle_learn", "odd_one_out", "arrow_of_time"))
    assert cli.train_main(["nonsense"]) == 2
    missing = ["shuffle_learn", "--out", str(tmp_path / "r"), "--set",
               f"data.manifest={tmp_path / 'absent.jsonl'}"]  # fmt: skip
    assert cli.train_main(missing) == 2
    assert cli.train_main(["shuffle_learn", "--set", "optim.lrr=1"]) == 2
    backwards = ["arrow_of_time", "--set", "data.time_reverse=0.5", "--set",
                 f"data.manifest={tmp_path / 'absent.jsonl'}"]  # fmt: skip
    assert cli.train_main(backwards) == 2


def _run_cli(argv: list[str], **kw: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "avssl.cli", "train", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]  # fmt: skip


def _assert_resume_equals(
    manifests: Path, task: str, ref: Path, cut: Path, common: list[str]
) -> None:
    """--resume the cut run: its metrics and final weights equal the uninterrupted run's."""
    p = _run_cli(_args(manifests, task, cut, *common, "--resume"))
    assert p.wait(timeout=300) == 0, p.stdout.read().decode() if p.stdout else ""
    assert _metrics(cut) == _metrics(ref)
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


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
    _assert_resume_equals(manifests, "arrow_of_time", ref, cut, common)


def test_sigterm_saves_and_exits_cleanly(manifests: Path, tmp_path: Path) -> None:
    run = tmp_path / "term"
    p = _run_cli(_args(manifests, "shuffle_learn", run, "--set", "optim.epochs=50",
                       "--set", "optim.steps_per_epoch=4"))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "metrics.jsonl").is_file():
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == EXIT_PREEMPTED
    c = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert c["epoch"] < 50


def _wait_for_steps(run: Path, n: int, p: subprocess.Popen, timeout: float = 120) -> None:
    """Block until ``run``'s metrics.jsonl holds ``n`` step records (the run is under way)."""
    deadline = time.monotonic() + timeout
    path = run / "metrics.jsonl"
    while time.monotonic() < deadline and p.poll() is None:
        if path.is_file() and sum('"loss"' in ln for ln in path.read_text().splitlines()) >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{run}: no {n} step records (exit {p.poll()})")


def test_sigusr1_checkpoints_and_resume_equals_uninterrupted(
    manifests: Path, tmp_path: Path
) -> None:
    """SLURM's warning (sbatch --signal=USR1@120): checkpoint after the current step, exit with
    EXIT_PREEMPTED, and --resume then ends exactly where an uninterrupted run does."""
    common = ["--set", "optim.epochs=2", "--set", "optim.steps_per_epoch=6",
              "--set", "run.device=cpu"]  # fmt: skip
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    p = _run_cli(_args(manifests, "shuffle_learn", ref, *common))
    assert p.wait(timeout=300) == 0, p.stdout.read().decode() if p.stdout else ""
    p = _run_cli(_args(manifests, "shuffle_learn", cut, *common))
    _wait_for_steps(cut, 2, p)
    p.send_signal(signal.SIGSTOP)  # frozen at once, so the signal surely lands mid-run
    p.send_signal(signal.SIGUSR1)
    p.send_signal(signal.SIGCONT)
    out = p.stdout.read().decode() if p.stdout else ""
    assert p.wait(timeout=120) == EXIT_PREEMPTED, out
    assert "SIGUSR1: checkpoint of step" in out and "--resume" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["preempted"] == "SIGUSR1"
    c = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=True)
    done = 6 * c["epoch"] + c["step_in_epoch"]
    assert done == last["stopped_at_step"] and 2 <= done < 12  # complete, mid-run
    assert {"model", "optimizer", "config", "task"} <= set(c)
    rows = [r for r in _metrics(cut) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(done))  # stopped after the step it saved
    _assert_resume_equals(manifests, "shuffle_learn", ref, cut, common)


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


def _torchrun(argv: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "avssl.cli", "train", *argv]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _rank_pid(agent: int, rank: int, timeout: float = 60) -> int:
    """The pid of torchrun ``agent``'s worker process of global ``rank`` (read from /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            kids = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
            for kid in kids:
                env = Path(f"/proc/{kid}/environ").read_bytes().split(b"\0")
                if f"RANK={rank}".encode() in env:
                    return int(kid)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under torchrun pid {agent}")


@pytest.mark.skipif(
    not Path(f"/proc/self/task/{os.getpid()}/children").is_file(), reason="needs /proc children"
)
def test_ddp_ranks_stop_together_on_one_ranks_signal(manifests: Path, tmp_path: Path) -> None:
    """SIGUSR1 to rank 1 alone: both ranks stop after the same step (the all-reduced decision;
    alone, rank 1 would leave rank 0 hanging in DDP's next all-reduce), rank 0 writes the
    checkpoint before either exits, both exit with EXIT_PREEMPTED, --resume completes the run."""
    run = tmp_path / "ddp_stop"
    argv = _args(manifests, "shuffle_learn", run, "--set", "optim.epochs=2",
                 "--set", "optim.steps_per_epoch=6", "--set", "run.device=cpu")  # fmt: skip
    p = _torchrun(argv)
    worker = _rank_pid(p.pid, 1)
    _wait_for_steps(run, 2, p)
    os.kill(worker, signal.SIGSTOP)
    os.kill(worker, signal.SIGUSR1)
    os.kill(worker, signal.SIGCONT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0, out  # torchrun reports its workers' status 75 as a failure
    assert f"exitcode  : {EXIT_PREEMPTED}" in out or f"exitcode: {EXIT_PREEMPTED}" in out, out
    assert "signal on another rank: checkpoint of step" in out, out  # rank 0 agreed
    c = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    done = 6 * c["epoch"] + c["step_in_epoch"]
    assert 2 <= done < 12, out
    assert [r["step"] for r in _metrics(run) if "loss" in r] == list(range(done))
    p = _torchrun([*argv, "--resume"])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert [r["step"] for r in _metrics(run) if "loss" in r] == list(range(12))


def test_video_folds_hold_out_every_video_once() -> None:
    rows = [{"video": f"v{i}.mp4", "n": j} for i in range(11) for j in range(3)]
    seen: list[str] = []
    for fold in range(4):
        train, val = split_by_video(rows, 0.2, 5, folds=4, fold=fold)
        held = {r["video"] for r in val}
        assert held and not held & {r["video"] for r in train}  # whole videos, never both sides
        assert len(train) + len(val) == len(rows) and len(held) in (2, 3)  # 11 = 3 + 3 + 3 + 2
        seen += held
    assert sorted(seen) == sorted({r["video"] for r in rows})  # each video held out exactly once
    for bad in ({"folds": 4, "fold": 4}, {"folds": 1, "fold": 0}, {"folds": 12, "fold": 0}):
        with pytest.raises(ValueError):
            split_by_video(rows, 0.2, 5, **bad)


def test_val_manifest_from_another_prep_reads_its_own_root(manifests: Path, tmp_path: Path) -> None:
    """A held-out set prepared separately (a second ``avssl-prep folder`` of other videos):
    its rows are read against that prep's own root, not the training manifest's (issue 22)."""
    videos = manifests.parent / "videos"
    other = tmp_path / "other_videos"
    other.mkdir()
    for v in sorted(videos.glob("*.mp4"))[:3]:  # copies under a root of their own, renamed
        shutil.copy(v, other / f"held_{v.name}")
    cfg = MineConfig(tuples_per_video=12, questions_per_video=6, clips_per_video=6)
    held = tmp_path / "held_prep"
    prep_videos(scan_folder(other), held, config=cfg, workers=1, progress=False)
    run = tmp_path / "run"
    argv = _args(manifests, "arrow_of_time", run, "--set", "optim.epochs=1", "--set",
                 "optim.steps_per_epoch=2", "--set",
                 f"data.val_manifest={held / 'arrow_of_time.jsonl'}")  # fmt: skip
    assert cli.train_main(argv) == 0
    (ev,) = [r for r in _metrics(run) if "val_samples" in r]
    assert ev["val_samples"] == len(read_manifest(held / "arrow_of_time.jsonl"))


def test_training_eta_leaves_out_the_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first step takes 30 s (loader start-up), the next ones 1 s each: the ETA after 11 of
    101 steps says ~90 s, not the ~360 s that the mean since the start would give."""
    from avssl import dist, engine
    from avssl.train_config import TrainConfig

    cfg = TrainConfig()
    cfg.run.tensorboard, cfg.run.log_every, cfg.optim.batch_size = False, 10, 4
    now = [0.0]
    monkeypatch.setattr(engine.time, "monotonic", lambda: now[0])
    log = engine.Logger(tmp_path, cfg, dist.DistEnv(0, 1, 0, torch.device("cpu")), 0)
    for step in range(11):
        now[0] = 30.0 + step  # step 0 ends at 30 s, each later one 1 s after
        log.step(step, 101, {"loss": 1.0}, 4, 0.0)
    lines = [ln.rstrip() for ln in capsys.readouterr().err.splitlines()]
    assert lines[0].endswith("ETA -"), lines[0]
    assert lines[-1].endswith("ETA 90 s"), lines[-1]
