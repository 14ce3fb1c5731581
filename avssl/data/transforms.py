"""Batched, temporally consistent augmentation of uint8 clips, on whatever device holds them.

One crop, flip and jitter per clip, applied to all its frames; same code and draws on CPU and GPU.
Design notes: docs/design/data.md, "avssl.data.transforms".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 grey weights, as torchvision's rgb_to_grayscale
_CROP_TRIES = 10  # rejection-sampling tries per crop, as torchvision's RandomResizedCrop
# One row of uniforms per clip: crop area and log-ratio for each try, crop x and y position,
# flip, brightness, contrast, saturation, hue, grayscale.
_NUM_DRAWS = 2 * _CROP_TRIES + 8


@dataclass(frozen=True)
class AugmentConfig:
    """Clip augmentation settings; the defaults suit 112-px video models on ImageNet statistics.

    Colour strengths follow torchvision's ``ColorJitter``: a factor is drawn uniformly from
    ``[max(0, 1 - s), 1 + s]`` for brightness, contrast and saturation (0 disables the step), and
    a hue shift from ``[-hue, hue]`` in turns of the colour wheel (``hue <= 0.5``).
    """

    size: int = 112  # output square side in pixels
    scale: tuple[float, float] = (0.35, 1.0)  # crop area as a fraction of the frame area
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio, width / height
    flip: bool = True  # horizontal flip with probability 1/2
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0  # max HSV hue shift in turns; 0 (default) skips the step (~10 tensor ops)
    grayscale_p: float = 0.0  # probability that a clip is turned grey (after the jitter)
    rotate: float = 0.0  # max rotation in degrees about the crop's centre (0: none)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel RGB mean of [0, 1] values
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        problems = []
        if self.size < 1:
            problems.append(f"size={self.size} (expected >= 1)")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            problems.append(f"scale={self.scale} (expected 0 < lo <= hi <= 1)")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            problems.append(f"ratio={self.ratio} (expected 0 < lo <= hi)")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0.0:
                problems.append(f"{name}={getattr(self, name)} (expected >= 0)")
        if not 0.0 <= self.hue <= 0.5:
            problems.append(f"hue={self.hue} (expected 0 <= hue <= 0.5)")
        if not 0.0 <= self.rotate <= 180.0:
            problems.append(f"rotate={self.rotate} (expected 0 <= degrees <= 180)")
        if not 0.0 <= self.grayscale_p <= 1.0:
            problems.append(f"grayscale_p={self.grayscale_p} (expected a probability)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0.0:
            problems.append(f"mean={self.mean}, std={self.std} (expected 3 values, std > 0)")
        if problems:
            raise ValueError("AugmentConfig: bad " + "; ".join(problems))


@dataclass(frozen=True)
class AugmentParams:
    """Per-clip augmentation parameters of one batch; CPU tensors with one row per clip.

    Neutral values (``flip`` False, factors 1, ``hue`` 0, ``grayscale`` False) leave a clip
    unchanged; steps whose factors are neutral for every clip are skipped.
    """

    height: int  # input frame height in pixels
    width: int  # input frame width in pixels
    box_xywh: torch.Tensor  # (B, 4) float64 crop boxes in input pixels: left, top, width, height
    flip: torch.Tensor  # (B,) bool, mirror left-right
    brightness: torch.Tensor  # (B,) float64 multiplier
    contrast: torch.Tensor  # (B,) float64 blend weight against the clip's mean grey
    saturation: torch.Tensor  # (B,) float64 blend weight against the pixel's grey
    hue: torch.Tensor  # (B,) float64 hue shift in turns of the colour wheel
    grayscale: torch.Tensor  # (B,) bool, replace the clip by its grey version
    angle: torch.Tensor | None = None  # (B,) float64 rotation in radians about the box centre

    @property
    def batch(self) -> int:
        """Number of clips ``B``."""
        return int(self.box_xywh.shape[0])


def sample_params(
    cfg: AugmentConfig,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
) -> AugmentParams:
    """Draw training parameters for ``batch`` clips of ``height x width`` frames.

    All draws come from ``generator`` (a CPU generator; ``None`` uses, and advances, torch's
    global CPU RNG). Exactly ``batch * 28`` uniforms are drawn whatever ``cfg`` says, then
    ``batch`` more for the rotation when ``cfg.rotate`` is set.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"sample_params: generator must be a CPU torch.Generator (parameters are drawn on the "
            f"CPU and moved), got one on {generator.device}"
        )
    u = torch.rand((batch, _NUM_DRAWS), generator=generator, dtype=torch.float64)
    angle = None
    if cfg.rotate:  # drawn after the rest, so the other draws do not depend on it
        r = torch.rand(batch, generator=generator, dtype=torch.float64)
        angle = math.radians(cfg.rotate) * (2.0 * r - 1.0)
    tries = _CROP_TRIES

    # Random resized crop (torchvision's rejection sampling, with continuous boxes).
    area = height * width * (cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, :tries])
    log_lo, log_hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, tries : 2 * tries])
    w_try, h_try = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    slack = 1.0 + 1e-9  # a box of the full frame must not be rejected for a rounding error
    fits = (w_try <= width * slack) & (h_try <= height * slack)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first try that fits
    w = w_try.gather(1, first).squeeze(1).clamp(max=width)
    h = h_try.gather(1, first).squeeze(1).clamp(max=height)
    # Fallback when no try fits: the largest centred box within the ratio range.
    frame_aspect = width / height
    if frame_aspect < cfg.ratio[0]:
        w_fb, h_fb = float(width), width / cfg.ratio[0]
    elif frame_aspect > cfg.ratio[1]:
        w_fb, h_fb = height * cfg.ratio[1], float(height)
    else:
        w_fb, h_fb = float(width), float(height)
    found = fits.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, w_fb))
    h = torch.where(found, h, torch.full_like(h, h_fb))
    pos_x = torch.where(found, u[:, 2 * tries], torch.full_like(w, 0.5))
    pos_y = torch.where(found, u[:, 2 * tries + 1], torch.full_like(w, 0.5))
    box = torch.stack([pos_x * (width - w), pos_y * (height - h), w, h], dim=1)

    rest = u[:, 2 * tries + 2 :]
    return AugmentParams(
        height=height,
        width=width,
        box_xywh=box,
        flip=rest[:, 0] < (0.5 if cfg.flip else 0.0),
        brightness=_factor(rest[:, 1], cfg.brightness),
        contrast=_factor(rest[:, 2], cfg.contrast),
        saturation=_factor(rest[:, 3], cfg.saturation),
        hue=cfg.hue * (2.0 * rest[:, 4] - 1.0),
        grayscale=rest[:, 5] < cfg.grayscale_p,
        angle=angle,
    )


def center_params(batch: int, height: int, width: int) -> AugmentParams:
    """Evaluation parameters: the central ``min(H, W)`` square, no flip, no colour change.

    Resized to ``size``, this is "resize the short side to ``size``, then centre crop".
    """
    side = float(min(height, width))
    box = torch.tensor([(width - side) / 2, (height - side) / 2, side, side], dtype=torch.float64)
    ones = torch.ones(batch, dtype=torch.float64)
    no = torch.zeros(batch, dtype=torch.bool)
    return AugmentParams(
        height=height,
        width=width,
        box_xywh=box.expand(batch, 4).clone(),
        flip=no,
        brightness=ones,
        contrast=ones,
        saturation=ones,
        hue=torch.zeros(batch, dtype=torch.float64),
        grayscale=no,
    )


def augment(
    x: torch.Tensor,
    cfg: AugmentConfig,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Augment (``train``) or centre-crop (eval) a batch of uint8 clips, then normalise.

    Args:
        x: ``(B, T, 3, H, W)`` uint8 RGB clips on any device.
        cfg: output size, augmentation strengths and normalisation statistics.
        train: random per-clip crop, flip and jitter if True; otherwise resize the short side
            to ``cfg.size`` and take the centre square, deterministically.
        generator: CPU generator for the training draws (ignored in eval). ``None`` draws from
            torch's global RNG; pass one for reproducible, global-state-free augmentation.

    Returns:
        ``(B, T, 3, size, size)`` float32 on ``x.device``, normalised with ``cfg.mean/std``.
    """
    _check_clips(x, "augment")
    b, _, _, h, w = x.shape
    if train:
        params = sample_params(cfg, b, h, w, generator=generator)
    else:
        params = center_params(b, h, w)
    return apply_params(x, params, cfg)


def apply_params(x: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply per-clip ``params`` to ``(B, T, 3, H, W)`` uint8 clips; see :func:`augment`.

    Only ``cfg.size``, ``cfg.mean`` and ``cfg.std`` are used here; the strengths in ``cfg``
    matter only when drawing the parameters.
    """
    _check_clips(x, "apply_params")
    b, t, c, h, w = x.shape
    if (b, h, w) != (params.batch, params.height, params.width):
        raise ValueError(
            f"apply_params: parameters for {params.batch} clips of {params.height}x"
            f"{params.width} px, but clips of shape {tuple(x.shape)} (B, T, C, H, W)"
        )
    size = cfg.size
    theta = _affine_theta(params).to(device=x.device, dtype=torch.float32)  # (B, 2, 3)
    grid = F.affine_grid(theta, [b, t * c, size, size], align_corners=False)  # (B, S, S, 2)
    # Frames and channels share the channel axis, so each clip's one grid serves all its frames.
    # Border padding: samples within half a pixel of the edge repeat the edge, as interpolate.
    y = F.grid_sample(
        x.reshape(b, t * c, h, w).float(),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    y = _color_jitter_(y.view(b, t, c, size, size), params)
    return _normalize_255_(y, cfg)


def to_float_normalized(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """``(..., 3, H, W)`` uint8 RGB -> float32 of the same shape, scaled to [0, 1] and
    normalised with ``cfg.mean`` / ``cfg.std``; no resizing."""
    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(
            f"to_float_normalized: expected uint8 (..., 3, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    return _normalize_255_(x.float(), cfg)


def denormalize(y: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Undo the normalisation of ``(..., 3, H, W)`` floats: rounded, clamped uint8 for viewing."""
    if not y.is_floating_point() or y.ndim < 3 or y.shape[-3] != 3:
        raise ValueError(
            f"denormalize: expected floating (..., 3, H, W), got {y.dtype} {tuple(y.shape)}"
        )
    mean, std = _stats(cfg, y)
    return (y * std + mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _check_clips(x: torch.Tensor, where: str) -> None:
    if x.ndim != 5 or x.shape[2] != 3 or x.dtype != torch.uint8:
        raise ValueError(
            f"{where}: expected uint8 RGB clips (B, T, 3, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[3] == 0 or x.shape[4] == 0:
        raise ValueError(f"{where}: empty batch of shape {tuple(x.shape)} (B, T, C, H, W)")


def _factor(u: torch.Tensor, strength: float) -> torch.Tensor:
    """Uniform [0, 1) draws -> factors in [max(0, 1 - strength), 1 + strength]; 1 if 0."""
    lo = max(0.0, 1.0 - strength)
    return lo + (1.0 + strength - lo) * u


def _affine_theta(params: AugmentParams) -> torch.Tensor:
    """``(B, 2, 3)`` float64 affine maps from output to input normalised coordinates.

    With ``align_corners=False`` a normalised coordinate ``n`` in ``[-1, 1]`` is the continuous
    pixel position ``(n + 1) / 2 * W`` (pixel ``j`` covers ``[j, j + 1)``). A box with left edge
    ``x0`` and width ``w`` therefore maps output ``n`` to ``n * w / W + (2 * x0 + w) / W - 1``;
    a flip negates the scale, mirroring about the box centre. Likewise for y. A rotation turns
    the box about its centre in pixel space (the input's aspect ratio is undone around it).
    """
    x0, y0, w, h = params.box_xywh.unbind(dim=1)
    sign = 1.0 - 2.0 * params.flip.to(torch.float64)
    theta = torch.zeros(params.batch, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = sign * w / params.width
    theta[:, 0, 2] = (2.0 * x0 + w) / params.width - 1.0
    theta[:, 1, 1] = h / params.height
    theta[:, 1, 2] = (2.0 * y0 + h) / params.height - 1.0
    if params.angle is not None:
        c, s = torch.cos(params.angle), torch.sin(params.angle)
        # output (n_x, n_y) -> pixel offsets (sign * n_x * w / 2, n_y * h / 2), rotated, -> input
        ax, ay = sign * w / params.width, h / params.height
        theta[:, 0, 0] = c * ax
        theta[:, 0, 1] = -s * ay * params.height / params.width
        theta[:, 1, 0] = s * ax * params.width / params.height
        theta[:, 1, 1] = c * ay
    return theta


def _grey(y: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, H, W)`` RGB -> ``(B, T, 1, H, W)`` grey (ITU-R 601 luma)."""
    r, g, b = y.unbind(dim=2)
    grey = r * _LUMA[0]
    grey.add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])
    return grey.unsqueeze(2)


def _shift_hue(y: torch.Tensor, shift_turns: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``(B, T, 3, H, W)`` RGB (any scale) by per-clip
    ``(B, 1, 1, 1, 1)`` turns, keeping value and saturation: torchvision's ``adjust_hue``,
    batched. The result stays within each pixel's [min, max], so needs no clamp.

    Back to RGB with the closed form ``channel_n = max - C * clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + 6 * hue) mod 6``, ``n = 5, 3, 1`` for R, G, B, ``C = max - min`` (chroma),
    rewritten as ``min + C * clamp(|k - 2| - 1, 0, 1)`` to run in place.
    """
    r, g, b = y.unbind(dim=2)
    top = y.amax(dim=2)
    low = y.amin(dim=2)
    chroma = top - low
    # Hue in sixths of a turn (up to a multiple of 6): the sector of the largest channel (0, 2,
    # 4 for R, G, B) plus the offset within it. The formula is continuous where two channels
    # tie for largest, so the tie-break does not matter. Grey pixels (chroma 0) get any hue;
    # their output is ``low``.
    num = torch.where(top == r, g - b, torch.where(top == g, b - r, r - g))
    sector = torch.where(top == r, 0.0, torch.where(top == g, 2.0, 4.0))
    hue6 = num.div_(torch.where(chroma > 0, chroma, 1.0)).add_(sector).unsqueeze(2)
    n = torch.tensor([5.0, 3.0, 1.0], device=y.device, dtype=y.dtype).view(1, 1, 3, 1, 1)
    k = hue6.add_(6.0 * shift_turns) + n  # (B, T, 3, H, W)
    k.remainder_(6.0).sub_(2.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    return k.mul_(chroma.unsqueeze(2)).add_(low.unsqueeze(2))


def _color_jitter_(y: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Per-clip colour jitter of ``(B, T, 3, S, S)`` floats in [0, 255], mostly in place.

    Every factor is one value per clip broadcast over ``(T, H, W)``, so all frames of a clip
    see the same pointwise map. Clamped to [0, 255] after each step, as torchvision clamps to
    [0, 1]; every step is scale-free, so working in the input's 0-255 units saves a pass.
    A blend ``f * y + (1 - f) * target`` is one ``lerp_`` towards the target by ``1 - f``.
    """

    def per_clip(v: torch.Tensor) -> torch.Tensor:
        return v.to(device=y.device, dtype=y.dtype).view(-1, 1, 1, 1, 1)

    if bool((params.brightness != 1.0).any()):
        y.mul_(per_clip(params.brightness)).clamp_(0.0, 255.0)
    if bool((params.contrast != 1.0).any()):
        # Mean grey of the whole clip, not of each frame: one affine map for all its frames.
        luma = torch.tensor(_LUMA, device=y.device, dtype=y.dtype)
        mean = (y.mean(dim=(1, 3, 4)) @ luma).view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        y.lerp_(mean, per_clip(1.0 - params.contrast)).clamp_(0.0, 255.0)
    if bool((params.saturation != 1.0).any()):
        y.lerp_(_grey(y), per_clip(1.0 - params.saturation)).clamp_(0.0, 255.0)
    if bool((params.hue != 0.0).any()):
        y = _shift_hue(y, per_clip(params.hue))
    if bool(params.grayscale.any()):
        clips = params.grayscale.nonzero().squeeze(1).to(y.device)
        y[clips] = _grey(y[clips]).expand(-1, -1, 3, -1, -1)
    return y


def _stats(cfg: AugmentConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cfg.mean`` and ``cfg.std`` as ``(3, 1, 1)`` tensors on ``like``'s device and dtype."""
    mean = torch.tensor(cfg.mean, device=like.device, dtype=like.dtype).view(3, 1, 1)
    std = torch.tensor(cfg.std, device=like.device, dtype=like.dtype).view(3, 1, 1)
    return mean, std


def _normalize_255_(y: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """``(..., 3, H, W)`` floats in [0, 255] -> ``(y / 255 - mean) / std``, in place."""
    mean, std = _stats(cfg, y)
    return y.mul_(1.0 / (255.0 * std)).sub_(mean / std)
