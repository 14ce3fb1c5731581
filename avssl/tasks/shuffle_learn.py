"""Shuffle & Learn (Misra, Zitnick & Hebert, ECCV 2016): is this frame tuple in temporal order?

The manifest (``avssl-prep ucf101|folder``: shuffle_learn.jsonl) gives three frames in the order
shown and the target (1 = ordered: (b,c,d) or (d,c,b); 0 = (b,a,d) or (b,e,d)). The network is
the paper's triplet siamese: one backbone (shared weights, fc7 in CaffeNet) per frame, the three
feature vectors concatenated, then a linear binary classifier (fc8).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from avssl.data.dataset import FrameReader
from avssl.tasks.common import FrameEncoder, RowClassifier, mlp_head, read_target, row_task


def make_example(row: dict, read: FrameReader, rng: np.random.Generator, epoch: int = 0) -> dict:
    return read_target(row, read, row["frames"])  # frames (3, 3, H, W)


class ShuffleLearn(RowClassifier):
    """``head_hidden = 0``: the paper's linear fc8 on the fused features; > 0: one hidden ReLU
    layer first (the CPU demo's small towers cannot make "c lies between b and d" linear on
    their own).

    ``fusion``: ``"concat"`` -- the paper's concatenation (f1, f2, f3); ``"compare"`` -- the
    differences of consecutive frames and their product, (f2 - f1, f3 - f2, (f2 - f1) * (f3 - f2)):
    for a feature that tracks where something is, the middle frame lies between the others
    exactly when the two steps have the same sign, i.e. the product is positive; and the input is
    the same whichever way the tuple runs (up to swapping and negating the two steps).
    """

    def __init__(
        self,
        backbone: str,
        *,
        head_hidden: int = 0,
        fusion: Literal["concat", "compare"] = "concat",
        class_weight: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(class_weight)
        if fusion not in ("concat", "compare"):
            raise ValueError(f"tuple_fusion must be 'concat' or 'compare', not {fusion!r}")
        self.fusion = fusion
        self.encoder = FrameEncoder(backbone, **kwargs)
        self.head = mlp_head(3 * self.encoder.dim, head_hidden, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        feats = self.encoder(batch["frames"])  # (B, 3, D)
        if self.fusion == "compare":
            step1, step2 = feats[:, 1] - feats[:, 0], feats[:, 2] - feats[:, 1]
            feats = torch.stack([step1, step2, step1 * step2], 1)
        return self.classify(self.head(feats.flatten(1)), batch)


def reverse_row(row: dict[str, Any]) -> dict[str, Any]:
    """(b, c, d) -> (d, c, b), (b, a, d) -> (d, a, b): the middle frame stays between the ends or
    outside them, so the target holds. Without it every negative runs forwards while half the
    positives run backwards, a direction cue that has nothing to do with order."""
    return {**row, "frames": list(reversed(row["frames"]))}


TASK = row_task(
    "shuffle_learn",
    "Shuffle & Learn: binary temporal-order verification of frame triplets",
    make_example,
    ShuffleLearn,
    lambda o, row: {"fusion": o.tuple_fusion},
    lambda row: 2,
    reverse_row,
)
