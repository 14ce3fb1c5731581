"""Batched clip augmentation (avssl.data.transforms): geometry against F.interpolate, temporal
consistency within a clip, independence across clips, reproducibility and the colour steps."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from avssl.data.transforms import (
    AugmentConfig,
    AugmentParams,
    apply_params,
    augment,
    center_params,
    denormalize,
    sample_params,
    to_float_normalized,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NO_JITTER = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0)
STRONG = AugmentConfig(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3, grayscale_p=0.3)
SEEDS = st.integers(0, 2**31)


def clips(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 RGB clips ``(B, T, 3, H, W)``; every frame different."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, h, w), dtype=torch.uint8, generator=g)


def unit(y: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Undo the normalisation, as floats in [0, 1] (no rounding)."""
    mean = torch.tensor(cfg.mean, device=y.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, device=y.device).view(3, 1, 1)
    return y * std + mean


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def full_frame_cfg(h: int, w: int, size: int, *, flip: bool) -> AugmentConfig:
    """Crop = the whole frame (scale 1, the frame's own aspect ratio); no colour jitter."""
    return replace(NO_JITTER, size=size, scale=(1.0, 1.0), ratio=(w / h, w / h), flip=flip)


def plain_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Reference: bilinear resize of every frame to ``size x size``, in [0, 1]."""
    b, t, c, h, w = x.shape
    y = F.interpolate(x.reshape(b * t, c, h, w).float(), size=(size, size), mode="bilinear")
    return (y / 255).view(b, t, c, size, size)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "shape, size",
    [((2, 3, 3, 48, 64), 32), ((1, 1, 3, 40, 40), 24), ((3, 2, 3, 64, 48), 56)],
)
def test_shape_dtype_device(device: str, train: bool, shape: tuple[int, ...], size: int) -> None:
    x = clips(*shape[:2], *shape[3:]).to(device)
    y = augment(x, AugmentConfig(size=size), train=train, generator=gen(0))
    assert y.shape == (*shape[:3], size, size)
    assert y.dtype == torch.float32 and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("rotate", [0.0, 180.0])
def test_identical_frames_stay_identical(rotate: float) -> None:
    """One crop, flip, rotation and jitter per clip: frames that were equal are still bit-equal
    (AVOL-Net's when stream relies on it: its stack and the map's frame turn together)."""
    frame = clips(6, 1, 48, 64)
    x = frame.expand(6, 4, 3, 48, 64).contiguous()
    y = augment(x, replace(STRONG, size=40, rotate=rotate), train=True, generator=gen(1))
    for t in range(1, 4):
        assert torch.equal(y[:, t], y[:, 0])


def test_equal_frames_equal_even_beside_different_frames() -> None:
    """Frames (A, A, B, A): the clip-level contrast mean is shared, so A stays A everywhere."""
    a, b = clips(5, 1, 32, 32, seed=2), clips(5, 1, 32, 32, seed=3)
    x = torch.cat([a, a, b // 2, a], dim=1)
    y = augment(x, replace(STRONG, size=24), train=True, generator=gen(4))
    assert torch.equal(y[:, 1], y[:, 0]) and torch.equal(y[:, 3], y[:, 0])
    assert not torch.equal(y[:, 2], y[:, 0])


def test_clips_of_a_batch_get_different_parameters() -> None:
    x = clips(1, 2, 48, 64).expand(8, 2, 3, 48, 64).contiguous()  # 8 copies of one clip
    cfg = replace(NO_JITTER, size=32)
    y = augment(x, cfg, train=True, generator=gen(5))
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.allclose(y[i], y[j], atol=1e-3)
    p = sample_params(AugmentConfig(), 8, 48, 64, generator=gen(5))
    assert len({tuple(row.tolist()) for row in p.box_xywh}) == 8
    assert len(set(p.brightness.tolist())) == 8


def test_same_seed_same_output_other_seed_other_output() -> None:
    x = clips(4, 3, 40, 56)
    cfg = AugmentConfig(size=32, hue=0.1, grayscale_p=0.5)
    y1 = augment(x, cfg, train=True, generator=gen(7))
    y2 = augment(x, cfg, train=True, generator=gen(7))
    y3 = augment(x, cfg, train=True, generator=gen(8))
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1, y3)


def test_global_rng_untouched() -> None:
    before = torch.get_rng_state()
    x = clips(3, 2, 32, 48)
    augment(x, AugmentConfig(size=24, hue=0.1, grayscale_p=0.5), train=True, generator=gen(0))
    augment(x, AugmentConfig(size=24), train=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_crops_do_not_depend_on_jitter_strengths() -> None:
    """A fixed number of draws per clip: the same seed gives the same boxes and flips."""
    p1 = sample_params(NO_JITTER, 5, 48, 64, generator=gen(9))
    p2 = sample_params(STRONG, 5, 48, 64, generator=gen(9))
    assert torch.equal(p1.box_xywh, p2.box_xywh) and torch.equal(p1.flip, p2.flip)
    assert (p1.brightness == 1).all() and (p1.contrast == 1).all() and (p1.hue == 0).all()
    assert not p1.grayscale.any()


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    lo=st.floats(0.05, 1.0),
    r_lo=st.floats(0.2, 2.0),
    r_span=st.floats(1.0, 3.0),
    seed=SEEDS,
)
def test_crop_boxes_inside_frame_and_within_ranges(
    h: int, w: int, lo: float, r_lo: float, r_span: float, seed: int
) -> None:
    cfg = AugmentConfig(scale=(lo, 1.0), ratio=(r_lo, r_lo * r_span))
    p = sample_params(cfg, 16, h, w, generator=gen(seed))
    x0, y0, bw, bh = p.box_xywh.unbind(1)
    eps = 1e-9 * max(h, w)
    assert (x0 >= -eps).all() and (y0 >= -eps).all()
    assert (x0 + bw <= w + eps).all() and (y0 + bh <= h + eps).all()
    assert (bw > 0).all() and (bh > 0).all()
    # A box is either a try that fits (area and aspect in range) or the centred fallback.
    area = bw * bh / (h * w)
    aspect = bw / bh
    tried = (area >= lo - 1e-9) & (aspect >= cfg.ratio[0] * (1 - 1e-9))
    tried &= aspect <= cfg.ratio[1] * (1 + 1e-9)
    centred = ((x0 - (w - bw) / 2).abs() < 1e-6) & ((y0 - (h - bh) / 2).abs() < 1e-6)
    assert (tried | centred).all()


@pytest.mark.parametrize("h, w, size", [(64, 96, 32), (96, 64, 48), (40, 40, 20), (48, 48, 64)])
def test_eval_equals_interpolate_then_centre_crop(h: int, w: int, size: int) -> None:
    """Where the resized frame has whole-pixel size and crop offset, the match is exact."""
    x = clips(2, 3, h, w)
    cfg = AugmentConfig(size=size)
    y = augment(x, cfg, train=False)
    s = size / min(h, w)
    rh, rw = round(h * s), round(w * s)
    ref = F.interpolate(x.flatten(0, 1).float(), size=(rh, rw), mode="bilinear")
    top, left = (rh - size) // 2, (rw - size) // 2
    ref = ref[..., top : top + size, left : left + size].reshape(2, 3, 3, size, size) / 255
    torch.testing.assert_close(unit(y, cfg), ref, atol=1e-5, rtol=0)


def test_eval_close_to_interpolate_then_centre_crop_when_rounded() -> None:
    """48x64 -> 40: torchvision-style resize rounds the width to 53 px and the crop offset to
    6 px; the grid sample keeps the exact central square. On a smooth frame (about 2 grey
    levels per pixel) they differ by under a pixel's worth of grey."""
    h, w, size = 48, 64, 40
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.stack([xx * 2 + yy, 200 - yy * 2, xx * 3]).clamp(0, 255).to(torch.uint8)
    x = frame.expand(1, 1, 3, h, w)
    cfg = AugmentConfig(size=size)
    y = unit(augment(x, cfg, train=False), cfg)
    ref = F.interpolate(x[0].float(), size=(40, 53), mode="bilinear")[..., :, 6:46] / 255
    assert (y[0] - ref).abs().max() * 255 < 3.0


@pytest.mark.parametrize("h, w", [(48, 64), (40, 40), (64, 48)])
def test_full_frame_crop_reproduces_plain_resize(h: int, w: int) -> None:
    x = clips(3, 2, h, w)
    cfg = full_frame_cfg(h, w, 56, flip=False)
    y = augment(x, cfg, train=True, generator=gen(11))
    torch.testing.assert_close(unit(y, cfg), plain_resize(x, 56), atol=1e-4, rtol=0)


def test_flip_mirrors_and_happens_about_half_the_time() -> None:
    h, w = 32, 48
    ramp = torch.linspace(0, 255, w).round().to(torch.uint8).expand(3, h, w)
    x = (clips(1, 2, h, w) // 4 + ramp // 2).expand(16, 2, 3, h, w).contiguous()
    cfg = full_frame_cfg(h, w, 24, flip=True)
    p = sample_params(cfg, 16, h, w, generator=gen(12))
    y = unit(apply_params(x, p, cfg), cfg)
    plain = plain_resize(x[:1], 24)[0]
    assert 0 < int(p.flip.sum()) < 16
    for i in range(16):
        expected = plain.flip(-1) if p.flip[i] else plain
        torch.testing.assert_close(y[i], expected, atol=1e-4, rtol=0)


def replaced(p: AugmentParams, **fields: Any) -> AugmentParams:
    return replace(p, **fields)


@pytest.mark.parametrize(
    "field, active",
    [("brightness", 1.5), ("contrast", 0.3), ("saturation", 1.7), ("hue", 0.2)],
)
def test_neutral_factor_leaves_its_clip_unchanged(field: str, active: float) -> None:
    """Clip 0 has the neutral factor while clip 1 is jittered (so the step runs)."""
    x = clips(2, 2, 24, 24)
    cfg = AugmentConfig(size=24)
    p0 = center_params(2, 24, 24)
    neutral = 0.0 if field == "hue" else 1.0
    y = apply_params(x, replaced(p0, **{field: torch.tensor([neutral, active])}), cfg)
    ref = apply_params(x, p0, cfg)
    torch.testing.assert_close(y[0], ref[0], atol=1e-5, rtol=0)
    assert not torch.allclose(y[1], ref[1], atol=1e-2)


def test_zero_strength_jitter_is_the_identity() -> None:
    x = clips(4, 2, 32, 32)
    cfg = replace(NO_JITTER, size=32)
    p = sample_params(cfg, 4, 32, 32, generator=gen(13))
    geometry_only = replaced(center_params(4, 32, 32), box_xywh=p.box_xywh, flip=p.flip)
    assert torch.equal(apply_params(x, p, cfg), apply_params(x, geometry_only, cfg))


def test_colour_steps_do_what_they_say() -> None:
    h = w = 16
    x = clips(5, 3, h, w)
    x[:, 1] //= 3  # a darker middle frame: contrast must still use one mean for the clip
    cfg = AugmentConfig(size=16)
    p0 = center_params(5, h, w)
    base = unit(apply_params(x, p0, cfg), cfg)

    def first(value: float) -> torch.Tensor:  # clip 0 gets ``value``, the others stay neutral
        return torch.tensor([value, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)

    # brightness 0.5 halves every value
    y = unit(apply_params(x, replaced(p0, brightness=first(0.5)), cfg), cfg)
    torch.testing.assert_close(y[0], base[0] * 0.5, atol=1e-5, rtol=0)
    # contrast 0: every pixel of every frame becomes the clip's mean grey
    y = unit(apply_params(x, replaced(p0, contrast=first(0.0)), cfg), cfg)
    grey = 0.2989 * base[0, :, 0] + 0.587 * base[0, :, 1] + 0.114 * base[0, :, 2]
    torch.testing.assert_close(y[0], grey.mean().expand(3, 3, h, w), atol=1e-5, rtol=0)
    # saturation 0 and grayscale: R = G = B = the pixel's grey
    for p in (replaced(p0, saturation=first(0.0)), replaced(p0, grayscale=first(0.0) < 1)):
        y = unit(apply_params(x, p, cfg), cfg)
        grey = 0.2989 * base[0, :, 0] + 0.587 * base[0, :, 1] + 0.114 * base[0, :, 2]
        torch.testing.assert_close(y[0], grey.unsqueeze(1).expand(3, 3, h, w), atol=1e-5, rtol=0)
        torch.testing.assert_close(y[1:], base[1:], atol=1e-6, rtol=0)
    # hue: torchvision's adjust_hue, per clip
    shifts = [0.1, -0.25, 0.5, 0.0, 0.33]
    y = unit(apply_params(x, replaced(p0, hue=torch.tensor(shifts)), cfg), cfg)
    for i, shift in enumerate(shifts):
        ref = TF.adjust_hue(base[i].clamp(0, 1), shift)
        torch.testing.assert_close(y[i], ref, atol=1e-4, rtol=0)


def test_values_stay_in_range_and_denormalize_round_trips() -> None:
    x = clips(6, 3, 40, 40)
    x[:, :, :, :8] = 255  # saturated patches, so brightness > 1 has to clamp
    x[:, :, :, -8:] = 0
    cfg = replace(STRONG, size=32)
    y = augment(x, cfg, train=True, generator=gen(14))
    v = unit(y, cfg)
    assert v.min() >= -1e-5 and v.max() <= 1 + 1e-5
    u8 = denormalize(y, cfg)
    assert u8.dtype == torch.uint8 and u8.shape == y.shape
    assert torch.equal(denormalize(to_float_normalized(x, cfg), cfg), x)


def test_generator_none_draws_from_the_global_rng() -> None:
    x = clips(2, 2, 32, 32)
    cfg = AugmentConfig(size=24)
    torch.manual_seed(123)
    y1 = augment(x, cfg, train=True)
    torch.manual_seed(123)
    assert torch.equal(augment(x, cfg, train=True), y1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = clips(4, 3, 48, 64)
    cfg = replace(STRONG, size=40)
    y_cpu = augment(x, cfg, train=True, generator=gen(15))
    y_gpu = augment(x.cuda(), cfg, train=True, generator=gen(15))
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-3, rtol=0)


SIDES = st.integers(1, 40)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3), t=st.integers(1, 3), h=SIDES, w=SIDES, size=st.integers(1, 24), seed=SEEDS
)
def test_any_shape_gives_normalised_consistent_clips(
    b: int, t: int, h: int, w: int, size: int, seed: int
) -> None:
    x = clips(b, 1, h, w, seed=seed % 1000).expand(b, t, 3, h, w)
    cfg = replace(STRONG, size=size)
    for train in (True, False):
        y = augment(x, cfg, train=train, generator=gen(seed))
        assert y.shape == (b, t, 3, size, size)
        v = unit(y, cfg)
        assert v.min() >= -1e-5 and v.max() <= 1 + 1e-5
        assert torch.equal(y, y[:, :1].expand_as(y))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(size=0), "size"),
        (dict(scale=(0.5, 0.2)), "scale"),
        (dict(ratio=(0.0, 1.0)), "ratio"),
        (dict(contrast=-0.1), "contrast"),
        (dict(hue=0.6), "hue"),
        (dict(grayscale_p=1.5), "grayscale_p"),
        (dict(std=(0.2, 0.0, 0.2)), "std"),
    ],
)
def test_bad_config_is_refused_by_name(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        AugmentConfig(**kwargs)


def test_bad_input_is_refused_with_its_shape() -> None:
    cfg = AugmentConfig(size=8)
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 16\)"):
        augment(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), cfg, train=False)
    with pytest.raises(ValueError, match="float32"):
        augment(torch.zeros(1, 1, 3, 8, 8), cfg, train=False)
    with pytest.raises(ValueError, match="parameters for 2 clips"):
        apply_params(torch.zeros(3, 1, 3, 8, 8, dtype=torch.uint8), center_params(2, 8, 8), cfg)


@pytest.mark.parametrize("h, w", [(24, 24), (24, 36)])
def test_rotation_turns_the_crop_about_its_centre(h: int, w: int) -> None:
    """A quarter turn of the central square equals torch.rot90 of it (either sense, any frame
    aspect); the draws of crop, flip and colour do not depend on ``rotate``."""
    x = clips(2, 2, h, w)
    cfg = replace(NO_JITTER, size=h, flip=False)
    p = center_params(2, h, w)
    ref = unit(apply_params(x, p, cfg), cfg)
    quarter = torch.tensor([math.pi / 2, -math.pi / 2], dtype=torch.float64)
    turned = unit(apply_params(x, replace(p, angle=quarter), cfg), cfg)
    # output pixel (i, j) samples the input rotated by +90 degrees about the centre (y down)
    torch.testing.assert_close(turned[0], ref[0].rot90(1, (-2, -1)), atol=1e-4, rtol=0)
    torch.testing.assert_close(turned[1], ref[1].rot90(-1, (-2, -1)), atol=1e-4, rtol=0)
    a = sample_params(replace(cfg, rotate=15.0), 64, h, w, generator=gen(5))
    b = sample_params(cfg, 64, h, w, generator=gen(5))
    assert torch.equal(a.box_xywh, b.box_xywh) and b.angle is None and a.angle is not None
    assert 0 < float(a.angle.abs().max()) <= math.radians(15.0) and float(a.angle.std()) > 0.1
    # up to half a turn either way: upside-down crops are drawn too
    c = sample_params(replace(cfg, rotate=180.0), 256, h, w, generator=gen(6)).angle
    assert c is not None and float(c.abs().max()) <= math.pi
    half = math.pi / 2
    assert min(float((c > half).float().mean()), float((c < -half).float().mean())) > 0.15
