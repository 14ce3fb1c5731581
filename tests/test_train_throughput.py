"""benchmarks/train_throughput.py and benchmarks/nvdec.py run and write what they promise (tiny
settings; the figures themselves are in BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import nvdec, train_throughput
from data_prep.av_digits import DEFAULT_DIGITS, DEFAULT_FSDD


@pytest.mark.skipif(
    not (DEFAULT_DIGITS.is_file() and DEFAULT_FSDD.is_dir()), reason="needs ../shared/data"
)
def test_train_throughput_pair_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVSSL_DATA", str(Path("avssl-data").resolve()))
    argv = ["--steps", "2", "--workers", "0", "--families", "pair", "--out", str(tmp_path)]
    assert train_throughput.main(argv) == 0
    res = json.loads((tmp_path / "train_throughput-cpu.json").read_text())
    (fam,) = res["families"]
    assert fam["family"] == "pair" and fam["task"] == "ave_net"
    assert fam["compute_only"]["steps"] == 2 and fam["compute_only"]["samples_per_s"] > 0
    assert fam["decode_per_worker_samples_per_s"] > 0 and fam["needed_workers"] > 0
    (row,) = fam["loader"]
    assert row["workers"] == 0 and row["steps"] == 2 and 0.0 <= row["data_wait"] <= 1.0
    assert row["diagnosis"] == (
        "data-bound" if row["data_wait"] > train_throughput.DATA_BOUND_WAIT else "compute-bound"
    )
    assert fam["suggested_workers"] == 0


def test_nvdec_skips_without_cuda_and_decodes_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torchcodec")
    import numpy as np

    from avssl.data.encode import write_video

    clip = tmp_path / "v" / "c.mp4"
    clip.parent.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    write_video(clip, frames, fps=10)
    spread_s, all_s, spread = nvdec._decode(clip, "cpu", 5)
    assert spread.shape[0] == 5 and spread_s > 0 and all_s > 0
    assert nvdec.main(["--videos", str(clip.parent), "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "nvdec.json").read_text())
    if not torch.cuda.is_available():
        assert res["skipped"] == "CUDA not available" and res["rows"] == []
    else:
        assert "skipped" in res or len(res["rows"]) == 1
