"""benchmarks/memory_soak.py: the slope and verdict math on synthetic marks, the RSS reading, and
a smoke run of ``--quick`` (report structure only; the figures are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import memory_soak as ms
from data_prep import synth
from data_prep.scan import scan_folder
from data_prep.videos import MineConfig, prep_videos


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slope_matches_polyfit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 10_000, 40))
    y = 600 + rng.uniform(-5, 5) * x / 1000 + rng.normal(0, 0.7, x.size)
    want = np.polyfit(x, y, 1)[0] * 1000
    assert ms.slope_per_1000(x.tolist(), y.tolist()) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_slope_of_an_exact_line_and_of_bad_input() -> None:
    x = [0, 1000, 2000, 3000]
    assert ms.slope_per_1000(x, [10 + 2.5 * v / 1000 for v in x]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        ms.slope_per_1000([5], [1.0])
    with pytest.raises(ValueError):
        ms.slope_per_1000([5, 5], [1.0, 2.0])


def test_summarize_excludes_warmup_and_judges_the_slope() -> None:
    reads = list(range(0, 10_001, 200))
    # warm-up: +80 MB in the first 2,000 reads, then flat with noise -> flat
    rng = np.random.default_rng(3)
    flat = [500 + 80 * min(n, 2000) / 2000 + rng.normal(0, 0.3) for n in reads]
    row = ms.summarize("x", list(zip(reads, flat, strict=True)), 2000, threshold=1.0)
    assert row["verdict"] == "flat" and abs(row["slope_mb_per_1000"]) < 0.5
    assert row["start_mb"] == round(flat[0], 1) and row["warm_mb"] == round(flat[10], 1)
    assert row["end_mb"] == round(flat[-1], 1) and row["peak_mb"] == round(max(flat), 1)
    # a leak of 3 kB a read after warm-up -> 3 MB per 1,000 reads -> GROWS
    leak = [v + 3.0 * max(n - 2000, 0) / 1000 for n, v in zip(reads, flat, strict=True)]
    row = ms.summarize("x", list(zip(reads, leak, strict=True)), 2000, threshold=1.0)
    assert row["verdict"] == "GROWS" and row["slope_mb_per_1000"] == pytest.approx(3.0, abs=0.1)
    # too few marks after warm-up: no verdict either way
    row = ms.summarize("x", [(0, 1.0), (100, 2.0), (200, 9.0)], 100, threshold=1.0)
    assert row["verdict"].startswith("too short")


def test_rss_sees_an_allocation() -> None:
    before = ms.rss_mb()
    if before is None:
        pytest.skip("no psutil and no /proc on this platform")
    # a fresh anonymous mapping, every page written: new resident memory (np.ones may reuse heap
    # pages an earlier test freed but the allocator kept resident, and then RSS does not move)
    import mmap

    block = mmap.mmap(-1, 64 * 2**20)
    page = mmap.PAGESIZE
    for off in range(0, len(block), page):
        block[off] = 1
    after = ms.rss_mb()
    assert after is not None and after - before > 48, (before, after)
    block.close()
    assert ms.rss_mb(os.getpid()) is not None
    assert ms.rss_mb(2**22 + 12345) is None  # no such process


def _check_rows(rows: list[dict], unit_reads: int | None) -> None:
    for r in rows:
        assert "error" not in r, r
        assert r["start_mb"] > 0 and r["end_mb"] > 0 and r["peak_mb"] >= r["end_mb"]
        marks = r["marks"]
        assert marks[0][0] == 0 or r["name"].startswith("worker")
        if unit_reads is not None:
            assert r["reads"] == marks[-1][0] == unit_reads
        after = [(n, v) for n, v in marks if n >= r["warmup_reads"]]
        if len(after) >= ms.MIN_MARKS:
            xs, ys = zip(*after, strict=True)
            assert r["slope_mb_per_1000"] == pytest.approx(
                np.polyfit(xs, ys, 1)[0] * 1000, abs=1e-3
            )
            assert r["verdict"] == ("flat" if r["slope_mb_per_1000"] <= 1.0 else "GROWS")


def test_quick_decode_soak_report(tmp_path: Path) -> None:
    argv = ["--quick", "--backends", "pyav", "audio", "--reads", "120", "--no-loader"]
    code = ms.main([*argv, "--out", str(tmp_path)])
    rep = json.loads((tmp_path / "memory_soak-quick.json").read_text())
    assert [r["name"] for r in rep["decode"]] == ["pyav", "audio"]
    _check_rows(rep["decode"], 120)
    for r in rep["decode"]:
        assert r["files"] and len(r["marks"]) >= ms.MIN_MARKS
    assert rep["loader"] is None
    assert code == (0 if rep["verdict"] == "flat" else 1) and code == (1 if rep["failed"] else 0)


def test_quick_loader_soak_reports_each_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(os.environ.get("AVSSL_DATA", "avssl-data"))
    if not (data / "synth" / "temporal" / "shuffle_learn.jsonl").is_file():
        # a small temporal set of its own (8 clips), where the built-in one is not there (CI)
        data = tmp_path / "data"
        synth.build_synth(data / "synth", num_clips=8, seed=3, workers=1, progress=False)
        cfg = MineConfig(tuples_per_video=12, questions_per_video=6, clips_per_video=6)
        videos = scan_folder(data / "synth" / "videos")
        prep_videos(videos, data / "synth" / "temporal", config=cfg, workers=1, progress=False)
        monkeypatch.setenv("AVSSL_DATA", str(data))
    rep = ms.soak_loader(samples=128, workers=1, cache_mb=16, warmup=0.2, threshold=1.0)
    assert rep["samples"] == 128 and rep["workers"] == 1 and rep["task"] == "shuffle_learn"
    names = [r["name"] for r in rep["rows"]]
    assert names == ["main", "worker 0"]
    _check_rows(rep["rows"], None)
    assert rep["worker_end_mb_max"] == rep["rows"][1]["end_mb"]
