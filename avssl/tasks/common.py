"""What every pretext task shares: the :class:`Task` record and the frame encoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from avssl.data.dataset import FrameReader


@dataclass(frozen=True)
class Task:
    name: str
    manifest: str  # the prep manifest it reads, e.g. "shuffle_learn.jsonl"
    description: str
    make_example: Callable[[dict[str, Any], FrameReader, np.random.Generator], dict[str, Any]]
    build_model: Callable[..., nn.Module]  # (backbone: str, **task options) -> model
    num_classes: Callable[[dict[str, Any]], int]  # from one manifest row
    # the row played backwards with the same target, where time reversal preserves the label
    # (training-time augmentation, ``data.time_reverse``); None where it does not (arrow of time)
    reverse_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class FrameEncoder(nn.Module):
    """A 2-D backbone applied to every frame: ``(B, T, C, H, W) -> (B, T, D)`` (shared weights:
    the siamese towers of Shuffle & Learn and O3N are one network run on each input)."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__()
        from avssl.models.backbones import BACKBONES, build_backbone

        spec = BACKBONES[backbone]
        if spec.video:
            raise ValueError(f"backbone {backbone!r} takes clips; this task encodes frames")
        self.net = build_backbone(backbone, **kwargs)
        self.backbone_kwargs = dict(kwargs)  # as built (in_channels included): for the checkpoint
        self.dim = int(getattr(self.net, "feature_dim", spec.feature_dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        feats: torch.Tensor = self.net(frames.flatten(0, 1))
        return feats.view(b, t, -1)


def stack_of_differences(clips: torch.Tensor) -> torch.Tensor:
    """``(..., L, C, H, W)`` -> ``(..., (L-1)*C, H, W)``: the L - 1 consecutive frame differences
    as one image (O3N's "stack of differences", a cheap stand-in for stacked optical flow: motion
    and its direction show in the first layer, where a per-frame network sees only appearance)."""
    diffs = clips[..., 1:, :, :, :] - clips[..., :-1, :, :, :]
    return diffs.flatten(-4, -3)


def classification(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict]:
    """Cross-entropy (class-``weight``ed when given) and the logs every task returns."""
    loss = nn.functional.cross_entropy(logits.float(), target, weight=weight)
    return loss, {"logits": logits.detach()}
