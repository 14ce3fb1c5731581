"""Colour conversions of image tensors: sRGB <-> CIE Lab and the nearest-centre ab quantiser, shared
by the colourisation tasks (:mod:`avssl.tasks.image_ops`), the tracker's network input
(:mod:`avssl.models.tracking`) and the raw-colour tracking baseline (:mod:`avssl.eval.propagation`).
"""

from __future__ import annotations

import torch

# sRGB (IEC 61966-2-1) with the D65 white, as OpenCV and scikit-image convert.
_RGB_TO_XYZ = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_WHITE = (0.950456, 1.0, 1.088754)  # D65 X, Y, Z of the matrix's white
_DELTA = 6.0 / 29.0


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` sRGB in [0, 1] -> CIE Lab ``(..., 3, H, W)`` (L in [0, 100]); on any
    device, differentiable; the formulas of OpenCV's ``COLOR_RGB2Lab`` for float input."""
    c = rgb.clamp(0.0, 1.0)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = _RGB_TO_XYZ.to(device=rgb.device, dtype=rgb.dtype)
    xyz = torch.einsum("ij,...jhw->...ihw", m, lin)
    white = torch.tensor(_WHITE, device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _DELTA**3, t.clamp_min(1e-12) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(dim=-3)
    lab = torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)
    return lab


def grey_from_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """Lab lightness L (any shape, [0, 100]) -> the sRGB grey value in [0, 1] of colour
    ``(L, 0, 0)``: with a = b = 0 the colour is the white scaled by Y, so linear R = G = B = Y.
    A grey image maps to itself: the colourisation input of a grey frame is that frame."""
    fy = (lightness + 16) / 116
    y = torch.where(fy > _DELTA, fy**3, 3 * _DELTA**2 * (fy - 4 / 29)).clamp(0.0, 1.0)
    return torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def quantize_ab(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` ab -> ``(B, H, W)`` int64 index of the nearest bin centre of ``bins``."""
    b, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    d = torch.cdist(flat, bins.to(device=ab.device, dtype=torch.float32))
    return d.argmin(dim=1).view(b, h, w)
