"""The training loader's knobs (issue 10): prefetch depth and pinned memory reach the DataLoader."""

from __future__ import annotations

import pytest
import torch

from avssl.config import load_config
from avssl.engine import EpochLoader
from avssl.train import TrainConfig


def _loader(*sets: str, device: str = "cpu") -> torch.utils.data.DataLoader:
    cfg = load_config(TrainConfig, overrides=["task=rotation", *sets])
    d = cfg.data
    return EpochLoader(
        [0, 1, 2], cfg.optim.batch_size, torch.device(device), workers=d.num_workers,
        prefetch_factor=d.prefetch_factor, pin_memory=d.pin_memory,
    ).loader  # fmt: skip


def test_prefetch_factor_reaches_workers() -> None:
    assert _loader("data.num_workers=2", "data.prefetch_factor=5").prefetch_factor == 5
    # without workers there is nothing to prefetch into (DataLoader's own rule)
    assert _loader("data.prefetch_factor=5").prefetch_factor is None


def test_pin_memory_auto_follows_the_device() -> None:
    assert _loader().pin_memory is False  # auto on the CPU: nothing to copy to
    # auto on CUDA pins only where CUDA exists (a CPU machine cannot page-lock for a GPU)
    assert _loader(device="cuda").pin_memory is torch.cuda.is_available()
    assert _loader("data.pin_memory=off", device="cuda").pin_memory is False


def test_pin_memory_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="pin_memory"):
        load_config(TrainConfig, overrides=["task=rotation", "data.pin_memory=maybe"])
