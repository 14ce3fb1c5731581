"""README.md runs as written: every ```bash / ```sh / ```python block, top to bottom, as a new user
would run it from a fresh clone.

Layout. A temporary folder laid out like a clone beside the shared data: ``tmp/main`` holds copies
of ``configs/``, ``benchmarks/`` and ``examples/`` (what the blocks name; copies, so that nothing a
block writes lands in the repository) and ``tmp/shared/data`` links to the real media
(``../shared/data``, or ``AVSSL_SHARED_DATA``, found as tests/media.py finds it; without it the
runs skip with the reason, as the other real-media tests do). The blocks run with cwd
``tmp/main`` and ``AVSSL_DATA`` (and ``AVSSL_SHARED_DATA``) unset, so ``avssl-data/`` lands in the
clone and ``../shared/data`` is the data, as for a user; bash blocks with ``bash -euo pipefail``,
python blocks with this interpreter (``python -c``); the environment's commands (``avssl-*``,
``python``) come first on PATH. Lines that start with ``pip install`` are not run: the test runs
inside an installed environment.

Classes. Every block is in :data:`BLOCKS`, keyed by its first command line (comment lines, a
trailing `` # comment`` and a trailing ``\\`` left out), as one of

``fast``
    run in the default run (CI: ``python -m pytest -q``), as written.
``slow``
    the long trainings (minutes each): run only when asked, ``python -m pytest -m readme_slow
    tests/test_readme.py`` (pyproject.toml's addopts deselect the marker, so CI does not run them;
    the ``slow`` marker is different: those still run in CI). A slow block may name a *stand-in*:
    a cheaper command that the fast run runs in its place to make what later fast blocks read (the
    same training with 2 steps), so the fast run still checks the later blocks' text as written
    without paying for the training; their figures are then meaningless, only that they run.
``template``
    never run here: it needs a download (UCF-101, AudioSet, ESC-50), the user's own files, or it
    installs packages; the reason is in the table. Templates keep ```bash fences so that a reader
    gets the same rendering; the table, not the fence, says they do not run.

A block of the README that is not in the table fails :func:`test_every_block_is_classified`, and
so does a key that no longer matches any block, so that a new or edited block cannot rot unseen.

Runs. :func:`test_readme_fast` runs the fast blocks and the stand-ins in README order in one
working folder (about 2 minutes on 2 cores: digits prep, a 2-step rotation run, its linear probes,
the report, the FSDD prep and its ESC-50 protocol, the decoding snippet, ``avssl doctor``).
:func:`test_readme_slow` runs every fast and slow block in order, as written, in one working
folder: the full chain from the main job on (1.5-2.5 hours on 2 cores). In pieces:
``AVSSL_README_DIR=DIR`` keeps the clone in DIR (an existing one is carried on),
``AVSSL_README_START=KEY`` / ``AVSSL_README_STOP=KEY`` start at / stop after the block of that key.
Each run prints its per-block wall and CPU times (``-s`` shows them).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from media import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: what the blocks name from the clone, copied into the temporary clone
CLONE_DIRS = ("configs", "benchmarks", "examples")
LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
FAST, SLOW, TEMPLATE = "fast", "slow", "template"
FAST_TIMEOUT_S = 600
SLOW_TIMEOUT_S = 3 * 3600


@dataclass(frozen=True)
class Plan:
    kind: str  # FAST, SLOW or TEMPLATE
    why: str = ""  # slow: what it costs; template: why it cannot run here
    stand_in: str = ""  # slow only: what the fast run runs instead (bash)


_DOWNLOAD = "needs a download this machine does not have"
BLOCKS: dict[str, Plan] = {
    # Quickstart: the two lines, each an install and then the main job / the suite; the main job
    # runs as written in Getting started (step 2), the suite is what holds this test
    "pip install -e . -c constraints.txt && avssl-train ave-net": Plan(
        TEMPLATE, "installs; its main job is step 2's block, the suite holds this test"
    ),
    # Getting started
    "pip install -e . -c constraints.txt": Plan(FAST, "the pip line is skipped; avssl doctor runs"),
    "pip install torch==2.14.1 torchvision==0.29.1 --index-url "
    "https://download.pytorch.org/whl/cpu": Plan(
        TEMPLATE, "installs CPU-only torch from download.pytorch.org (only PyPI is reachable)"
    ),
    "avssl-train ave-net": Plan(SLOW, "the main job: builds the built-in set, trains; 3.5-8 min"),
    "from avssl.data.decode import probe, read_audio, read_frames": Plan(FAST),
    "avssl-prep digits ../shared/data/digits/opencv-doc__digits.png --out avssl-data/digits": (
        Plan(FAST)
    ),
    "avssl-train rotation --config configs/rotation_digits.yaml --out runs/rotation": Plan(
        SLOW,
        "380 steps, 3.5-6 min",
        stand_in="avssl-train rotation --config configs/rotation_digits.yaml --out runs/rotation"
        " --set optim.epochs=1 --set optim.steps_per_epoch=2",
    ),
    "avssl-eval linear runs/rotation --manifest avssl-data/digits/images.jsonl": Plan(FAST),
    "avssl-report runs/rotation": Plan(FAST),
    # Preparing UCF-101; audio sets
    "avssl-prep ucf101 /data/UCF-101 --splits /data/ucfTrainTestlist --out prep/ucf101 "
    "[--split 1|2|3|all]": Plan(TEMPLATE, f"UCF-101 and the user's videos: {_DOWNLOAD}"),
    "avssl-prep audioset balanced_train_segments.csv eval_segments.csv --videos /data/audioset": (
        Plan(TEMPLATE, f"AudioSet videos and ESC-50: {_DOWNLOAD}")
    ),
    "avssl-prep audio-folder ../shared/data/fsdd/recordings --pattern '{label}_{speaker}_{take}'": (
        Plan(FAST)
    ),
    # temporal-order tasks
    "avssl-prep synth": Plan(SLOW, "Shuffle & Learn demo on the built-in set, ~10 min"),
    "mkdir -p real40 && for f in ../shared/data/{real-motion,video-clips,av-clips}/*; do case $f "
    "in *.md|*.csv|*.wav) ;;": Plan(SLOW, "dense prep of 41 real clips + 4-fold CV, tens of min"),
    # image tasks
    "avssl-prep images my_photos/ --out prep/photos": Plan(TEMPLATE, "the user's own photos"),
    # audio-visual
    "avssl-train avol-net --config configs/avol_net_builtin.yaml": Plan(SLOW, "~5.5 min training"),
    "avssl-prep av-digits": Plan(SLOW, "AVOL-Net on the real digits set, ~9 min, and its evals"),
    "avssl-localize runs/ave_net ../shared/data/av-clips/moviepy__chaplin.mp4 --out heatmaps/": (
        Plan(SLOW, "reads runs/ave_net, the main job's run")
    ),
    # tracking
    "avssl-train colorization-tracking --config configs/colorization_tracking_synth.yaml --out "
    "runs/colorization_tracking": Plan(SLOW, "~2.5 min training, then DAVIS/VOT scores"),
    "avssl-prep folder real40 --out prep/real40": Plan(SLOW, "7-14 min training, ~16 min scoring"),
    "avssl-track runs/colorization_tracking ../shared/data/av-clips/moviepy__chaplin.mp4": (
        Plan(SLOW, "reads runs/colorization_tracking")
    ),
    # evaluating
    "avssl-eval knn runs/rotation --manifest avssl-data/digits/images.jsonl": Plan(FAST),
    # development
    "pip install -e '.[test]' -c constraints.txt && python -m pytest -q": (
        Plan(TEMPLATE, "the whole test suite, which holds this test")
    ),
}


@dataclass(frozen=True)
class Block:
    index: int  # 0-based, README order
    section: str  # the heading above it
    lang: str  # bash or python
    text: str

    @property
    def key(self) -> str:
        return block_key(self.text)

    def where(self) -> str:
        return f"README block {self.index + 1} ({self.section!r}, {self.key!r})"


def block_key(text: str) -> str:
    """The first line that is not blank or a comment, without a trailing comment or ``\\``."""
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return s.split(" #")[0].rstrip(" \\")
    return ""


def readme_blocks(text: str) -> list[Block]:
    """The README's runnable fenced blocks (```bash, ```sh, ```shell, ```python), in order."""
    blocks: list[Block] = []
    section, lang, body = "", None, []
    fence = None
    for line in text.splitlines():
        if fence is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", line)
            if m:
                fence, lang, body = m.group(1), LANGS.get(m.group(2).lower()), []
        elif line.strip() == fence:
            if lang is not None:
                blocks.append(Block(len(blocks), section, lang, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    return blocks


def runnable(text: str) -> str:
    """The block without its ``pip install`` lines (and their ``\\`` continuations)."""
    out, skipping = [], False
    for line in text.splitlines():
        if skipping or line.strip().startswith("pip install"):
            out.append(": skipped, the test runs in an installed environment")
            skipping = line.rstrip().endswith("\\")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _fail_text(r: subprocess.CompletedProcess[str]) -> str:
    tail = (r.stdout[-3000:] + "\n--- stderr ---\n" + r.stderr[-4000:]).strip()
    return f"exit status {r.returncode}\n{tail}"


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float, text: str = "") -> None:
    """Run ``text`` (default: the block as written) as the block's language; fail naming it."""
    code = runnable(text or block.text)
    shell = ["bash", "-euo", "pipefail", "-c"]
    cmd = [sys.executable, "-c", code] if block.lang == "python" else [*shell, code]
    r = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        pytest.fail(f"{block.where()} failed:\n{text or block.text}\n{_fail_text(r)}")


def make_clone(root: Path) -> tuple[Path, dict[str, str]]:
    """``root/main`` laid out like a clone beside ``root/shared/data``; the blocks' environment."""
    data = shared_data_dir()
    if not data.is_dir():
        pytest.skip(f"real test data not found at {data} (set AVSSL_SHARED_DATA to its folder)")
    main = root / "main"
    if not main.is_dir():  # else AVSSL_README_DIR: the clone of an earlier run, carried on
        main.mkdir(parents=True)
        for name in CLONE_DIRS:
            ignore = shutil.ignore_patterns("__pycache__", "out", "*.pyc")
            shutil.copytree(REPO / name, main / name, ignore=ignore)
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(data.resolve(), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("AVSSL_DATA", "AVSSL_SHARED_DATA")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return main, env


def run_readme(root: Path, kinds: tuple[str, ...], timeout: float) -> list[tuple[str, str, float]]:
    """Run the README's blocks of ``kinds`` in order (fast run: slow blocks' stand-ins too)."""
    main, env = make_clone(Path(os.environ.get("AVSSL_README_DIR") or root))
    start, stop = os.environ.get("AVSSL_README_START", ""), os.environ.get("AVSSL_README_STOP", "")
    times: list[tuple[str, str, float]] = []
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        plan = BLOCKS[block.key]
        start = "" if start == block.key else start
        if start:
            continue
        if plan.kind in kinds:
            text, label = block.text, plan.kind
        elif plan.kind == SLOW and plan.stand_in:
            text, label = plan.stand_in, "stand-in"
        else:
            continue
        t0, ru0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        run_block(block, main, env, timeout, text)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ru.ru_utime - ru0.ru_utime + ru.ru_stime - ru0.ru_stime  # the cores' share of a load
        times.append((block.key, label, time.monotonic() - t0))
        print(f"{times[-1][2]:7.1f} s ({cpu:6.1f} s CPU)  {label:<8}  {block.key}", flush=True)
        if stop and stop == block.key:
            break
    return times


def test_every_block_is_classified() -> None:
    """Every runnable block is in BLOCKS (once), every key of BLOCKS is a block of the README."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    keys = [b.key for b in blocks]
    assert len(blocks) >= 10, "the README's blocks were not found; did the fence syntax change?"
    unknown = [b.where() for b in blocks if b.key not in BLOCKS]
    assert not unknown, f"classify in tests/test_readme.py BLOCKS (fast/slow/template): {unknown}"
    dup = sorted({k for k in keys if keys.count(k) > 1})
    assert not dup, f"two README blocks start with the same command line (give one another): {dup}"
    stale = sorted(set(BLOCKS) - set(keys))
    assert not stale, f"BLOCKS keys that match no README block (edited or removed?): {stale}"
    for key, plan in BLOCKS.items():
        assert plan.kind in (FAST, SLOW, TEMPLATE), key
        assert plan.kind == FAST or plan.why, f"{key}: a slow or template block says why"
        assert not plan.stand_in or plan.kind == SLOW, f"{key}: only a slow block has a stand-in"


def test_block_reader() -> None:
    text = (
        "# T\n\n## Sec\n\n```bash\n# a comment\npip install x \\\n    y\nls -a  # list\n```\n"
        "```text\nnot run\n```\n````python\nprint(1)\n````\n```\nplain\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.section, b.lang, b.key) for b in blocks] == [
        ("Sec", "bash", "pip install x"),
        ("Sec", "python", "print(1)"),
    ]
    assert "pip" not in runnable(blocks[0].text) and "ls -a" in runnable(blocks[0].text)
    assert "    y" not in runnable(blocks[0].text)


def test_image_task_error_names_the_prep_command(tmp_path: Path) -> None:
    """The image task before the digits prep: the error says which command makes the manifest."""
    from avssl.data.manifest import prep_hint

    main, env = make_clone(tmp_path)
    r = subprocess.run(
        ["avssl-train", "rotation", "--config", "configs/rotation_digits.yaml"],
        cwd=main,
        env=env,
        capture_output=True,
        text=True,
        timeout=FAST_TIMEOUT_S,
    )
    assert r.returncode == 2, _fail_text(r)
    assert "avssl-prep digits ../shared/data/digits/opencv-doc__digits.png" in r.stderr
    assert "--out x/digits'" in prep_hint("x/digits/images.jsonl")
    assert prep_hint("x/digits/videos.jsonl") == ""  # not what 'avssl-prep digits' writes
    assert "'avssl-prep av-digits --out " in prep_hint("data/av-digits/avc_test.jsonl")


def test_readme_fast(tmp_path: Path) -> None:
    """The fast blocks, as written, in README order (slow blocks: their stand-ins)."""
    times = run_readme(tmp_path, (FAST,), FAST_TIMEOUT_S)
    assert sum(1 for _, label, _ in times if label == FAST) >= 5


@pytest.mark.readme_slow
def test_readme_slow(tmp_path: Path) -> None:
    """Every runnable block, as written, in README order: fast and slow."""
    times = run_readme(tmp_path, (FAST, SLOW), SLOW_TIMEOUT_S)
    print(f"total {sum(t for *_, t in times) / 60:.1f} min over {len(times)} blocks")
