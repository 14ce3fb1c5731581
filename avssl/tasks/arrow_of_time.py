"""Arrow of time (Pickup et al. 2014; Wei et al. 2018): is this clip playing forward or backward?
Time's cues are local accelerations, so the frame-difference inputs let the first layers see them.
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/arrow_of_time.py".
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from avssl.data.dataset import FrameReader
from avssl.tasks.common import (
    FrameEncoder,
    RowClassifier,
    mlp_head,
    read_target,
    row_task,
    stabilize_clips,
    stack_of_differences,
)

ENCODINGS = ("frames", "differences", "stabilized")


def make_example(row: dict, read: FrameReader, rng: np.random.Generator, epoch: int = 0) -> dict:
    return read_target(row, read, row["frames"])  # frames (L, 3, H, W), in shown order


class ArrowOfTime(RowClassifier):
    def __init__(
        self,
        backbone: str,
        *,
        length: int = 8,
        encoding: Literal["frames", "differences", "stabilized"] = "frames",
        head_hidden: int = 256,
        class_weight: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(class_weight)
        if encoding not in ENCODINGS:
            raise ValueError(f"arrow_encoding must be one of {ENCODINGS}, not {encoding!r}")
        self.encoding = encoding
        from avssl.models.backbones import BACKBONES, build_backbone

        self.video = BACKBONES[backbone].video
        if self.video:
            self.net = build_backbone(backbone, **kwargs)
            self.head: nn.Module = nn.Linear(BACKBONES[backbone].feature_dim, 2)
        else:
            if encoding in ("differences", "stabilized"):
                kwargs = {**kwargs, "in_channels": 3 * (length - 1)}
            self.encoder = FrameEncoder(backbone, **kwargs)
            d = self.encoder.dim * (length if encoding == "frames" else 1)
            self.head = mlp_head(d, head_hidden, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        frames = batch["frames"]  # (B, T, C, H, W)
        if self.video:
            feats = self.net(frames.transpose(1, 2))  # (B, C, T, H, W)
        elif self.encoding == "differences":
            feats = self.encoder(stack_of_differences(frames).unsqueeze(1)).flatten(1)
        elif self.encoding == "stabilized":
            stable = stabilize_clips(frames)
            feats = self.encoder(stack_of_differences(stable).unsqueeze(1)).flatten(1)
        else:
            feats = self.encoder(frames).flatten(1)
        return self.classify(self.head(feats), batch)


TASK = row_task(
    "arrow_of_time",
    "Arrow of time: forward vs reversed clip classification",
    make_example,
    ArrowOfTime,
    lambda o, row: {"length": len(row["frames"]), "encoding": o.arrow_encoding},
    lambda row: 2,
)
