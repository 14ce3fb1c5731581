"""Where the clips and crops of a fine-tuning run sit (``avssl-eval finetune``): the test clips
spread over a video, the 1 / 2 / 5 / 10 test crops, and the video score averaged over them."""

from __future__ import annotations

import torch

from avssl.data.transforms import AugmentParams

CROP_CHOICES = (1, 2, 5, 10)


def clip_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """First frames of ``num_clips`` clips of ``span`` frames spread over ``num_frames``.

    Clip ``i`` starts at ``floor((n - span) * (2i + 1) / (2k))``: the clips sit at the centres of
    ``k`` equal segments of the possible starts, so one clip (k = 1) is the centre clip, and for
    odd ``k`` the middle clip is the centre clip. A video shorter than ``span`` gives starts of 0.
    """
    if num_frames < 1 or span < 1 or num_clips < 1:
        raise ValueError(f"clip_starts({num_frames}, {span}, {num_clips}): all must be >= 1")
    room = max(num_frames - span, 0)
    return [room * (2 * i + 1) // (2 * num_clips) for i in range(num_clips)]


def clip_indices(start: int, length: int, stride: int, num_frames: int) -> list[int]:
    """The frames of the clip starting at ``start``: ``start + j * stride`` for ``j < length``,
    clamped to the last frame (a short video repeats its last frame)."""
    return [min(start + j * stride, num_frames - 1) for j in range(length)]


def eval_starts(num_frames: int, span: int, num_clips: int) -> tuple[list[int], int]:
    """Starts of the test clips of one video and which of them is the centre clip.

    ``num_clips`` clips from :func:`clip_starts`; for odd ``num_clips`` the middle one is the
    centre clip, for even ``num_clips`` the centre clip is appended as one more (last) clip that
    only the clip accuracy uses.
    """
    starts = clip_starts(num_frames, span, num_clips)
    if num_clips % 2:
        return starts, num_clips // 2
    return [*starts, clip_starts(num_frames, span, 1)[0]], num_clips


def crop_boxes(
    height: int, width: int, num_crops: int, fraction: float
) -> list[tuple[float, float, float, bool]]:
    """Test crops ``(left, top, side, mirrored)`` in pixels of a ``height x width`` frame.

    Squares of ``fraction * min(height, width)``: the centre, then (5, 10) the top-left,
    top-right, bottom-left and bottom-right corners, then (2, 10) the same mirrored left-right.
    """
    if num_crops not in CROP_CHOICES:
        raise ValueError(f"num_crops={num_crops}: expected one of {CROP_CHOICES}")
    side = fraction * min(height, width)
    cx, cy = (width - side) / 2, (height - side) / 2
    boxes = [(cx, cy)]
    if num_crops >= 5:
        boxes += [
            (0.0, 0.0),
            (width - side, 0.0),
            (0.0, height - side),
            (width - side, height - side),
        ]
    out = [(x, y, side, False) for x, y in boxes]
    if num_crops in (2, 10):
        out += [(x, y, side, True) for x, y in boxes]
    return out


def crop_params(
    n: int, height: int, width: int, box: tuple[float, float, float, bool]
) -> AugmentParams:
    x0, y0, side, mirror = box
    ones = torch.ones(n, dtype=torch.float64)
    return AugmentParams(
        height=height,
        width=width,
        box_xywh=torch.tensor([x0, y0, side, side], dtype=torch.float64).expand(n, 4).clone(),
        flip=torch.full((n,), mirror, dtype=torch.bool),
        brightness=ones,
        contrast=ones,
        saturation=ones.clone(),
        hue=torch.zeros(n, dtype=torch.float64),
        grayscale=torch.zeros(n, dtype=torch.bool),
    )


def average_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Video scores: ``(V, ..., C)`` logits -> ``(V, C)`` softmax probabilities averaged over
    every axis between the first and the last (clips, crops): the papers' video-level score."""
    if logits.ndim < 2:
        raise ValueError(f"average_softmax: expected (V, ..., C) logits, got {tuple(logits.shape)}")
    probs = torch.softmax(logits.double(), dim=-1)
    return probs.reshape(logits.shape[0], -1, logits.shape[-1]).mean(dim=1)
