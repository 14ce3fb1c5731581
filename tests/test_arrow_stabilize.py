"""Camera-motion compensation for the arrow of time (``options.arrow_encoding=stabilized``)."""

from __future__ import annotations

import pytest
import torch

from avssl.tasks.arrow_of_time import ArrowOfTime
from avssl.tasks.common import estimate_translation, stabilize_clips, translate


def texture(size: int = 112, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (H, W): structure at several scales, like a real scene."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, size // 4, size // 4, generator=g)
    fine = torch.randn(1, 1, size, size, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return (up + 0.3 * fine)[0, 0]


@pytest.mark.parametrize("shift", [(3, -5), (-7, 2), (0, 0), (10, 11), (-12, -1)])
def test_recovers_integer_shift(shift):
    frame = texture()[30:78, 30:78]
    moved = torch.roll(frame, shift, dims=(0, 1))
    est = estimate_translation(moved[None], frame[None])[0]
    # the shift that maps `moved` back onto `frame`
    assert torch.allclose(est, -torch.tensor(shift, dtype=est.dtype), atol=0.25), est
    assert tuple(est.round().long().tolist()) == (-shift[0], -shift[1])
    # and shifting by it undoes the move on the pixels that stayed in view
    back, mask = translate(moved[None, None], est.round()[None])
    err = ((back - frame) * mask)[0, 0].abs()
    assert mask.sum() > 0.5 * frame.numel() and err.max() < 1e-5


def test_max_shift_limits_the_search():
    frame = texture()[30:78, 30:78]
    moved = torch.roll(frame, (9, 0), dims=(0, 1))
    est = estimate_translation(moved[None], frame[None], max_shift=4)[0]
    assert est.abs().max() <= 4.5


def pan_clip(length: int = 8, step: tuple[int, int] = (2, -1), size: int = 48) -> torch.Tensor:
    """A (1, L, 3, size, size) clip of a static scene with the camera panning `step` px/frame."""
    tex = texture()
    y0, x0 = 30, 30
    frames = [
        tex[y0 + t * step[0] : y0 + t * step[0] + size, x0 + t * step[1] : x0 + t * step[1] + size]
        for t in range(length)
    ]
    return torch.stack(frames)[None, :, None].expand(1, length, 3, size, size).contiguous()


def test_pan_differences_vanish_after_alignment():
    clip = pan_clip()
    raw = (clip[:, 1:] - clip[:, :-1]).abs().mean()
    stable = stabilize_clips(clip)
    valid = stable[0, 0, 0] != 0
    diffs = (stable[:, 1:] - stable[:, :-1]).abs()[..., valid]
    assert raw > 0.3  # the pan alone gives large frame differences
    assert diffs.mean() < 0.02 * raw and diffs.max() < 0.1 * raw
    assert valid.float().mean() > 0.5  # the common valid region is most of the frame
    # a clip and its reversal get the same valid region: the border does not tell the direction
    rev = stabilize_clips(clip.flip(1))
    assert torch.equal(rev[0, 0, 0] != 0, valid)


def test_object_motion_survives_alignment():
    clip = pan_clip()
    for t in range(clip.shape[1]):  # a bright square moving right over the panning scene
        clip[0, t, :, 10:16, 8 + 3 * t : 14 + 3 * t] = 5.0
    stable = stabilize_clips(clip)
    diffs = (stable[:, 1:] - stable[:, :-1]).abs()
    assert diffs[..., 10:16, 8:40].mean() > 10 * diffs[..., 30:, :].mean()


def test_model_forward_backward_stabilized():
    torch.manual_seed(0)
    model = ArrowOfTime(
        "convnet_tiny", length=4, encoding="stabilized", head_hidden=8, channels=[4, 8]
    )
    batch = {"frames": torch.randn(2, 4, 3, 24, 24), "target": torch.tensor([0, 1])}
    loss, logs = model(batch)
    loss.backward()
    assert logs["logits"].shape == (2, 2) and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="arrow_encoding"):
        ArrowOfTime("convnet_tiny", length=4, encoding="stabilised", channels=[4, 8])  # type: ignore[arg-type]
