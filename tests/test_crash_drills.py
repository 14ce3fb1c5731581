"""Crash drills: ``kill -9`` of ``avssl-prep`` and ``avssl-train`` at seeded random points, re-runs,
and the result compared with an uninterrupted run's.

* prep (``avssl-prep folder``): killed after a random number of videos is done, then again, then
  at a random moment after the last video (while the manifests are written, or just after);
  the re-run must give byte-identical outputs, reuse what was done and leave no temporary file.
* train (``avssl-train``, checkpoint every step): killed from outside after a random number of
  steps, inside a checkpoint write (the temporary file half written), at the epoch boundary
  (``run.crash_at_step``: before the evaluation and the epoch's checkpoint) and after a random
  delay; every ``--resume`` must start at the checkpoint's step, and the finished run must equal
  an uninterrupted one (metrics without timings, weights, optimizer state), with every file in
  the run directory whole (each ``.pt`` loads with ``weights_only=True``, no temporary left).

Every run is a fresh process started through :func:`_warm`: it imports the heavy modules first
(seconds on 2 cores; the processes of one drill import side by side), then runs the console
script's ``main`` when told to, so the kills land in the work, not in an import.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch

from avssl.data.encode import write_video
from avssl.engine import TIMING_KEYS
from data_prep import cli as prep_cli
from data_prep import synth

REPO = Path(__file__).resolve().parents[1]
# the drills' random points; any seed must pass: AVSSL_DRILL_SEED=N runs another campaign
SEED = int(os.environ.get("AVSSL_DRILL_SEED", "20261127"))
NUM_VIDEOS = 8
PREP = ["--workers", "1", "--tuples-per-video", "8"]
TRAIN = [
    "--set", "backbone=convnet_tiny", "--set", "model.channels=[8,16]", "--set", "model.spatial=2",
    "--set", "data.frame_size=32", "--set", "aug.size=28", "--set", "optim.batch_size=8",
    "--set", "optim.optimizer=adamw", "--set", "optim.lr=0.003", "--set", "run.log_every=1",
    "--set", "run.tensorboard=false", "--set", "run.device=cpu", "--set", "optim.epochs=2",
    "--set", "optim.steps_per_epoch=6", "--set", "run.ckpt_every_steps=1",
]  # fmt: skip
STEPS = 12  # 2 epochs x 6 steps

_WARM = """
import importlib, sys
entry, preload, prelude, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
for name in filter(None, preload.split(",")):
    importlib.import_module(name)
if sys.stdin.readline() != "go\\n":
    sys.exit(99)
exec(prelude)
module, func = entry.split(":")
sys.exit(getattr(importlib.import_module(module), func)(argv))
"""

# the prelude of the drill inside a checkpoint write: the K-th torch.save of the process writes
# half the file, then the process SIGKILLs itself (what a kill in the middle of torch.save leaves)
_TEAR_SAVE = """
import os, signal, torch
_save, _count = torch.save, [0]
def _torn_save(obj, f, *a, **k):
    _count[0] += 1
    _save(obj, f, *a, **k)
    if _count[0] == {k}:
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
torch.save = _torn_save
"""


class _Run:
    """One warm process (see the module docstring); ``go()`` starts its run."""

    def __init__(
        self, entry: str, preload: list[str], argv: list[str], log: Path, prelude: str = ""
    ) -> None:
        self.log = log
        self._out: IO[bytes] = open(log, "wb")  # noqa: SIM115 -- closed in wait()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.p = subprocess.Popen(
            [sys.executable, "-c", _WARM, entry, ",".join(preload), prelude, *argv],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the kill reaches any child process too
        )  # fmt: skip

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(b"go\n")
        self.p.stdin.close()

    def kill(self) -> bool:
        """SIGKILL the run; False if it had already ended."""
        if self.p.poll() is not None:
            return False
        os.killpg(self.p.pid, signal.SIGKILL)
        return True

    def wait(self, timeout: float = 120) -> int:
        rc = self.p.wait(timeout=timeout)
        self._out.close()
        return rc

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def discard(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
        self.wait()


def _poll(cond: Any, run: _Run, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if run.p.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the drill's condition never came (exit {run.p.poll()}):\n"
                                 + run.text()[-3000:])  # fmt: skip
        time.sleep(0.005)


def _temps(folder: Path) -> list[str]:
    """Temporary files of atomic_output (``.NAME.XXXX.tmpSUFFIX``) below ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name)


# ----------------------------------------------------------------------------------- prep
@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight short synthetic clips with motion (data_prep.synth scenes) in two class folders."""
    root = tmp_path_factory.mktemp("drill_videos")
    cfg = synth.SynthConfig(num_frames=100, width=96, height=96)
    for i in range(NUM_VIDEOS):
        frames, _, _ = synth.make_clip(cfg, 3, i)
        path = root / f"class{i % 2}" / f"clip{i}.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=cfg.fps, codec="mpeg4", gop=25)
    return root


@pytest.fixture(scope="module")
def prepped(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted prep (in this process): the reference, and the trainer's data."""
    out = tmp_path_factory.mktemp("drill_ref")
    assert prep_cli.main(["folder", str(videos), "--out", str(out), *PREP]) == 0
    return out


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}  # fmt: skip


def _same_npz(a: Path, b: Path) -> bool:
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        return sorted(x.files) == sorted(y.files) and all(
            np.array_equal(x[k], y[k])
            or (x[k].dtype.kind == "f" and np.allclose(x[k], y[k], rtol=1e-6, atol=0.0))
            for k in x.files
        )


def _records(out: Path) -> int:
    """Committed per-video records (pathlib's glob would also match hidden temporary files)."""
    folder = out / "records"
    return (
        sum(1 for p in folder.glob("*.json") if not p.name.startswith("."))
        if folder.is_dir()
        else 0
    )


def test_prep_killed_at_random_points_resumes_identical(
    videos: Path, prepped: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "killed"
    argv = ["folder", str(videos), "--out", str(out), *PREP]
    runs = [_Run("data_prep.cli:main", ["data_prep.cli", "data_prep.videos"], argv,
                 tmp_path / f"prep{i}.log") for i in range(3)]  # fmt: skip
    done = [0]
    try:
        for i, run in enumerate(runs[:2]):  # after a random number of videos, twice
            target = rng.randint(done[-1] + 1, max(done[-1] + 1, NUM_VIDEOS // 2 + 2 * i))
            run.go()
            _poll(lambda n=target: _records(out) >= n, run)
            time.sleep(rng.uniform(0.0, 0.05))
            assert run.kill(), f"prep {i} ended before its kill"
            assert run.wait() == -signal.SIGKILL
            done.append(_records(out))
            assert done[-2] < done[-1] < NUM_VIDEOS, f"kill {i} not mid-run: {done}"
            assert not (out / "videos.jsonl").exists()  # manifests come after the last video
        # third: a random moment after the last video is done (mining, writing the manifests)
        run = runs[2]
        run.go()
        _poll(lambda: _records(out) >= NUM_VIDEOS, run)
        time.sleep(rng.uniform(0.0, 0.3))
        killed_late = run.kill()
        rc = run.wait()
        assert rc == (-signal.SIGKILL if killed_late else 0), run.text()[-2000:]
    finally:
        for run in runs:
            run.discard()
    # a kill mid-write leaves temporary files (they cannot be timed from outside: planted, as a
    # kill between mkstemp and os.replace leaves them): the re-run deletes them
    (out / "records" / ".class0__clip0.avi.drill0001.tmp.json").write_text('{"relpath": "cl')
    (out / ".videos.drill0002.tmp.jsonl").write_text('{"v":1,"vid')
    capsys.readouterr()
    assert prep_cli.main(argv) == 0  # the re-run to completion
    said = capsys.readouterr().out
    reused = int(re.search(r"(\d+) reused", said).group(1))  # type: ignore[union-attr]
    assert reused >= done[-1], said  # resumed, not started over
    assert _temps(out) == []
    ref, got = _files(prepped), _files(out)
    assert sorted(got) == sorted(ref)
    # byte for byte, but the motion caches (internal, motion/*.npz): numpy's zip stamps each
    # member with the time of writing, and the float32 motion energy can differ by an ulp from
    # one process to another (seen: 1 value of 100; the manifests round it away), so those
    # compare by value, to a few ulps
    differ = [n for n in ref if ref[n] != got[n] and not (n.endswith(".npz") and _same_npz(
        prepped / n, out / n))]  # fmt: skip
    assert differ == [], f"outputs differ from the uninterrupted run's: {differ}"
    print(f"prep drill: kills after {done[1:]} of {NUM_VIDEOS} videos and "
          f"{'one' if killed_late else 'none'} after the last; re-run reused {reused}")  # fmt: skip


# ---------------------------------------------------------------------------------- train
def _metrics(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def _logged(run: Path) -> int:
    """Step records in metrics.jsonl (whole lines only)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    return sum(ln.endswith("}") and '"loss"' in ln for ln in path.read_text().splitlines())


def _ckpt_step(run: Path) -> int:
    """Steps done by the checkpoint in ``run`` (0: none written yet)."""
    if not (run / "checkpoint.pt").is_file():
        return 0
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    return 6 * int(ck["epoch"]) + int(ck["step_in_epoch"])


def _first_step_shown(run: _Run) -> int | None:
    """The first step the run's progress lines show (1-based), None if it showed none."""
    m = re.search(r"^step (\d+)/\d+ ", run.text(), re.M)
    return int(m.group(1)) if m else None


def _all_checkpoints_load(run: Path) -> None:
    for p in run.rglob("*.pt"):
        assert not p.name.startswith("."), f"temporary file left: {p}"
        torch.load(p, map_location="cpu", weights_only=True)


def test_train_killed_at_random_points_resumes_exactly(prepped: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    ref_dir, cut = tmp_path / "ref", tmp_path / "cut"
    data = ["--set", f"data.manifest={prepped / 'shuffle_learn.jsonl'}"]

    def train(run: Path, n: int, *extra: str, prelude: str = "") -> _Run:
        argv = ["shuffle_learn", "--out", str(run), *data, *TRAIN, *extra]
        return _Run("avssl.cli:train_main", ["avssl.cli", "avssl.train"], argv,
                    tmp_path / f"train{n}.log", prelude)  # fmt: skip

    tear_at = rng.randint(1, 2)  # the K-th checkpoint write of the second run is torn
    runs = [
        train(ref_dir, 0),
        train(cut, 1),
        train(cut, 2, "--resume", prelude=_TEAR_SAVE.replace("{k}", str(tear_at))),
        train(cut, 3, "--resume", "--set", "run.crash_at_step=6"),
        train(cut, 4, "--resume"),
        train(cut, 5, "--resume"),
    ]
    ref, first, torn, boundary, late, last = runs
    done = [0]
    try:
        ref.go()  # beside the drill: one thread each, the same numbers

        def resumed(run: _Run, rc: int) -> None:
            """After ``run`` (a --resume) was killed: it began at the last checkpoint's step,
            the checkpoint left is whole and at most one logged step behind."""
            assert rc == -signal.SIGKILL, run.text()[-3000:]
            assert _first_step_shown(run) in (done[-1] + 1, None), run.text()[-3000:]
            step = _ckpt_step(cut)
            assert step >= done[-1] and _logged(cut) - 1 <= step <= _logged(cut)
            done.append(step)

        # 1. from outside, after a random number of logged steps
        first.go()
        k = rng.randint(1, 2)
        _poll(lambda: _logged(cut) >= k, first)
        time.sleep(rng.uniform(0.0, 0.02))
        assert first.kill(), "the run ended before its kill"
        resumed(first, first.wait())
        # 2. inside a checkpoint write: half a temporary file, checkpoint.pt still the last one
        torn.go()
        resumed(torn, torn.wait())
        half = [p for p in cut.iterdir() if p.name.startswith(".checkpoint.")]
        assert len(half) == 1 and done[-1] == _logged(cut) - 1, [p.name for p in half]
        with pytest.raises(Exception):  # noqa: B017 -- any refusal: the file is torn
            torch.load(half[0], map_location="cpu", weights_only=True)
        # 3. at the epoch boundary: after step 6, before the evaluation and the epoch's checkpoint
        assert done[-1] < 5, done
        boundary.go()
        resumed(boundary, boundary.wait())
        assert done[-1] == 5 and not any("val_loss" in r for r in _metrics(cut))
        # 4. from outside, a random moment after its third step: a step, the evaluation, the
        # last checkpoint's write, or after the end
        late.go()
        _poll(lambda: _logged(cut) >= done[-1] + 3, late)
        time.sleep(rng.uniform(0.0, 0.15))
        late_killed = late.kill()
        if late_killed:
            resumed(late, late.wait())
        else:
            assert late.wait() == 0, late.text()[-3000:]
            done.append(_ckpt_step(cut))
        # a kill while a metrics line is appended leaves it torn (not timed from outside:
        # planted): the resume drops it
        with open(cut / "metrics.jsonl", "a") as f:
            f.write('{"step": 9, "loss": 0.69')
        # 5. to the end
        last.go()
        assert last.wait() == 0, last.text()[-3000:]
        assert _first_step_shown(last) in (done[-1] + 1, None)
        assert ref.wait() == 0, ref.text()[-3000:]
    finally:
        for run in runs:
            run.discard()
    assert _metrics(cut) == _metrics(ref_dir)
    a = torch.load(ref_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (b["epoch"], b["step_in_epoch"]) == (a["epoch"], a["step_in_epoch"]) == (2, 0)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(
        torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i]
    )
    _all_checkpoints_load(cut)
    assert _temps(cut) == []
    print(f"train drill: checkpoints at steps {done[1:]} after the kills (the last one "
          f"{'landed' if late_killed else 'came after the end'}); resumed identical")  # fmt: skip
