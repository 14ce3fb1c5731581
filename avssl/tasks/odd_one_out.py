"""Odd-One-Out networks (Fernando, Bilen, Gavves & Gould, CVPR 2017): which subsequence is odd?
One shared encoder per subsequence, fused by the paper's sum of differences.
Design notes: docs/design/models_tasks_eval.md, "avssl/tasks/odd_one_out.py".
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from avssl.data.dataset import FrameReader
from avssl.tasks.common import (
    FrameEncoder,
    RowClassifier,
    mlp_head,
    read_target,
    row_task,
    stack_of_differences,
)


def make_example(row: dict, read: FrameReader, rng: np.random.Generator, epoch: int = 0) -> dict:
    subs = row["subsequences"]
    ex = read_target(row, read, [i for s in subs for i in s])  # frames (N*L, 3, H, W)
    return {**ex, "num_subsequences": torch.tensor(len(subs))}


def dynamic_images(frames: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, N*L, C, H, W)`` -> ``(B, N, C, H, W)``: approximate rank pooling of each subsequence,
    sum_t (2t - L - 1) x_t, scaled to unit-ish range (the sum of |alpha| is L^2/2)."""
    b, nl = frames.shape[:2]
    length = nl // n
    x = frames.view(b, n, length, *frames.shape[2:])
    t = torch.arange(1, length + 1, device=frames.device, dtype=frames.dtype)
    alpha = (2 * t - length - 1) / (length * length / 2)
    return (x * alpha.view(1, 1, length, 1, 1, 1)).sum(2)


class OddOneOut(RowClassifier):
    def __init__(
        self,
        backbone: str,
        *,
        num_subsequences: int = 6,
        length: int = 6,
        encoding: Literal["dynamic_image", "differences", "frames"] = "dynamic_image",
        head_hidden: int = 0,
        fusion: Literal["sod", "score"] = "sod",
        class_weight: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(class_weight)
        if fusion not in ("sod", "score"):
            raise ValueError(f"odd_fusion must be 'sod' or 'score', not {fusion!r}")
        self.fusion = fusion
        self.n, self.length, self.encoding = num_subsequences, length, encoding
        if encoding == "differences":
            kwargs = {**kwargs, "in_channels": 3 * (length - 1)}
        self.encoder = FrameEncoder(backbone, **kwargs)
        d = self.encoder.dim * (length if encoding == "frames" else 1)
        k = torch.arange(num_subsequences, dtype=torch.float32)
        self.register_buffer("sod", 2 * k - num_subsequences + 1, persistent=False)
        # head_hidden = 0: the paper's linear classifier on the fused vector; > 0: one hidden
        # ReLU layer first (for small encoders whose features are not yet linearly "odd")
        out = num_subsequences if fusion == "sod" else 1  # "score": one oddness score each
        self.head = mlp_head(d, head_hidden, out)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        frames = batch["frames"]  # (B, N*L, C, H, W)
        b = frames.shape[0]
        if self.encoding == "dynamic_image":
            feats = self.encoder(dynamic_images(frames, self.n))  # (B, N, D)
        elif self.encoding == "differences":
            x = frames.view(b, self.n, self.length, *frames.shape[2:])
            feats = self.encoder(stack_of_differences(x))  # input (B, N, 3(L-1), H, W)
        else:
            feats = self.encoder(frames).view(b, self.n, -1)  # (B, N, L*D)
        if self.fusion == "score":  # each subsequence against the question's mean
            logits = self.head(feats - feats.mean(1, keepdim=True)).squeeze(-1)  # (B, N)
            return self.classify(logits, batch)
        sod: torch.Tensor = self.sod  # type: ignore[assignment]
        fused = (feats * sod.view(1, -1, 1)).sum(1)  # sum of differences
        return self.classify(self.head(fused), batch)


def reverse_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every subsequence played backwards, their positions kept: the ordered ones stay ordered
    (descending), the odd one stays shuffled, so the target holds."""
    return {**row, "subsequences": [list(reversed(s)) for s in row["subsequences"]]}


def _options(o: Any, row: dict[str, Any]) -> dict[str, Any]:
    subs = row["subsequences"]
    return {"num_subsequences": len(subs), "length": len(subs[0]), "encoding": o.odd_encoding,
            "fusion": o.odd_fusion}  # fmt: skip


TASK = row_task(
    "odd_one_out",
    "Odd-One-Out networks: find the shuffled subsequence among N",
    make_example,
    OddOneOut,
    _options,
    lambda row: len(row["subsequences"]),
    reverse_row,
)
