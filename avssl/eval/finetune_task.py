"""Fine-tuning as a task (``avssl-eval finetune``): its settings (:class:`FinetuneConfig`, the
UCF-101 protocol by default) and its model, ``backbone -> dropout -> linear``, whose
``forward(batch)`` returns ``(loss, logs)`` as every pretext task's does, so the one engine
(:mod:`avssl.engine`) trains it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from avssl.data.transforms import AugmentConfig
from avssl.eval.clips import CROP_CHOICES
from avssl.eval.loading import ModelInfo
from avssl.tasks.common import classification
from avssl.train_config import OptimConfig, RunConfig

VIDEO_CLIP_LENGTH = 16  # clip.length = 0 with a video backbone (r3d_18, r2plus1d_18)


@dataclass
class FinetuneDataConfig:
    # decoded frame size (height x width, px); width 0: square frames. 256 x 340 is the frame
    # size Shuffle & Learn cropped 227 px from (METHODS.md); 128 x 171 is common for 112 crops
    frame_size: int = 256
    frame_width: int = 340
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # one-manifest sets
    test_split: str = "test"
    # per-process cache of whole decoded videos (MB); 0 reads each clip's frames exactly with
    # read_frames (keyframe-aware seeks): better for big sets such as UCF-101
    cache_mb: int = 0
    num_workers: int = 0  # data-loader processes (training and test)
    max_train_rows: int | None = None  # at most this many training videos (spread; debugging)
    max_test_rows: int | None = None  # at most this many test videos (spread; debugging)


@dataclass
class ClipConfig:
    # frames per clip; 0: 1 for a 2-D RGB backbone (frame-level, as Shuffle & Learn), L for a
    # backbone trained on stacks of L - 1 frame differences, 16 for a video backbone
    length: int = 0
    stride: int = 1  # frames between consecutive clip frames


@dataclass
class HeadConfig:
    dropout: float = 0.5  # before the new linear classifier
    # backbone lr = optim.lr x this (the new head gets optim.lr); 0 freezes the backbone (its
    # batch-norm statistics too): a linear classifier trained with augmentation
    backbone_lr_mult: float = 0.1


@dataclass
class EvalConfig:
    num_clips: int = 25  # clips per test video, evenly spaced (the two-stream test: 25)
    num_crops: int = 10  # 1 centre, 2 centre + mirror, 5 centre + corners, 10 with mirrors
    crop_fraction: float = 0.875  # crop side / frame short side (224 of 256)
    batch_size: int = 8  # test videos per batch (each brings num_clips (+1) clips)


def _default_aug() -> AugmentConfig:
    # random resized crops + flips, no colour jitter (the papers' fine-tuning augmentation)
    return AugmentConfig(size=224, scale=(0.4, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)


def _default_optim() -> OptimConfig:
    # SGD momentum 0.9, lr 0.01 (head; backbone x0.1), batch 128, 30 epochs, x0.1 at 80%
    return OptimConfig(lr=0.01, batch_size=128, epochs=30, schedule="step", step_at=0.8)


@dataclass
class FinetuneConfig:
    """Every fine-tuning setting; the defaults are the UCF-101 protocol (see
    ``configs/finetune_ucf101.yaml`` for where each value comes from)."""

    seed: int = 0
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: OptimConfig = field(default_factory=_default_optim)
    aug: AugmentConfig = field(default_factory=_default_aug)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(tensorboard=False))

    def validate(self) -> None:
        problems = []
        if self.eval.num_crops not in CROP_CHOICES:
            problems.append(f"eval.num_crops={self.eval.num_crops} (one of {CROP_CHOICES})")
        if self.eval.num_clips < 1:
            problems.append(f"eval.num_clips={self.eval.num_clips} (>= 1)")
        if not 0.0 < self.eval.crop_fraction <= 1.0:
            problems.append(f"eval.crop_fraction={self.eval.crop_fraction} (in (0, 1])")
        if self.eval.batch_size < 1 or self.optim.batch_size < 1:
            problems.append("eval.batch_size and optim.batch_size must be >= 1")
        if self.clip.length < 0 or self.clip.stride < 1:
            problems.append(f"clip.length={self.clip.length}, clip.stride={self.clip.stride}")
        if not 0.0 <= self.head.dropout < 1.0:
            problems.append(f"head.dropout={self.head.dropout} (in [0, 1))")
        if self.head.backbone_lr_mult < 0:
            problems.append(f"head.backbone_lr_mult={self.head.backbone_lr_mult} (>= 0)")
        if self.data.frame_size < 1 or self.data.frame_width < 0:
            problems.append(
                f"data.frame_size={self.data.frame_size}, frame_width={self.data.frame_width}"
            )
        if problems:
            raise ValueError("finetune config: bad " + "; ".join(problems))


InputMode = Literal["frames", "differences", "video"]


class VideoClassifier(nn.Module):
    """``backbone -> dropout -> linear`` on clips ``(B, T, 3, H, W)`` (normalised floats).

    ``mode``: ``"frames"`` (per-frame features averaged over T), ``"differences"`` (the stack of
    the T - 1 frame differences as one image) or ``"video"`` (a 3-D backbone on the clip).
    State-dict keys: ``net.*`` (the backbone, as :func:`load_encoder` reads them), ``head.*``.
    """

    def __init__(
        self,
        net: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        mode: InputMode,
        dropout: float,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        self.net, self.mode, self.frozen = net, mode, frozen
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        if frozen:
            self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> VideoClassifier:
        super().train(mode)
        if self.frozen:
            self.net.eval()  # a frozen backbone keeps its batch-norm statistics
        return self

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        if self.mode == "video":
            return self.net(clips.transpose(1, 2))
        if self.mode == "differences":
            from avssl.tasks.common import stack_of_differences

            return self.net(stack_of_differences(clips))
        b, t = clips.shape[:2]
        return self.net(clips.flatten(0, 1)).view(b, t, -1).mean(dim=1)

    def classify(self, clips: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, C)`` of clips ``(B, T, 3, H, W)``."""
        return self.head(self.drop(self.features(clips)))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The task's step, as every pretext task's: cross-entropy of the clips' logits."""
        return classification(self.classify(batch["frames"]), batch["target"])


def input_mode(info: ModelInfo, cfg: FinetuneConfig) -> tuple[InputMode, int]:
    """How clips enter the backbone, and the clip length (``clip.length`` or its default)."""
    from avssl.models.backbones import BACKBONES

    spec = BACKBONES[info.backbone]
    if spec.video:
        return "video", cfg.clip.length or VIDEO_CLIP_LENGTH
    if info.in_channels == 3:
        return "frames", cfg.clip.length or 1
    if info.in_channels % 3:
        raise ValueError(
            f"{info.spec}: the backbone takes {info.in_channels} input channels, "
            "neither RGB frames nor a stack of RGB differences"
        )
    need = info.in_channels // 3 + 1
    if cfg.clip.length not in (0, need):
        raise ValueError(
            f"{info.spec}: the backbone takes stacks of {need - 1} frame differences, i.e. clips "
            f"of {need} frames; clip.length={cfg.clip.length}"
        )
    return "differences", need
