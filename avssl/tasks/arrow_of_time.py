"""Arrow of time (Pickup et al. 2014; Wei et al. 2018): is this clip playing forward or backward?

The manifest (arrow_of_time.jsonl) gives the frames in the order shown (descending when reversed)
and the target (1 = forward). Inputs (``options.arrow_encoding``) with a 2-D backbone:

* ``"frames"``: every frame is encoded by the same network and the per-frame features are
  concatenated in time order before a small classifier (late fusion, as Wei et al.'s
  frame-feature baseline);
* ``"differences"``: the stack of the L - 1 consecutive frame differences as one image (early
  fusion; Wei et al. feed stacked optical flow, for which differences are the cheap stand-in).
  The cues of time's direction are local accelerations -- a bounce losing energy, an object
  coming to rest -- which the first layers see here, and a late fusion of pooled per-frame
  features hardly can.
* ``"stabilized"``: the same stack of differences after removing the global camera
  translation: every frame is aligned to the clip's middle frame by phase correlation
  (:func:`avssl.tasks.common.stabilize_clips`), so a pan -- time-symmetric, yet different per
  video -- does not dominate the differences, and object motion is what is left (Wei et al.
  stabilise the camera before computing flow for the same reason).

With a video backbone (r3d_18, r2plus1d_18) the clip goes through it whole.
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
