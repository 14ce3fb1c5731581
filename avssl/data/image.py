"""Image files, read the one way the trainer (:meth:`avssl.data.dataset.FrameReader.image`),
the evaluations (``avssl-eval``) and ``avssl-prep images`` all read them. OpenCV and numpy only,
so prep's worker processes start without torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An 8-bit image file as ``(H, W, 3)`` uint8 RGB (OpenCV): grey replicated to 3 channels,
    alpha dropped. Raises FileNotFoundError / ValueError naming the file."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image not found")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{p}: not an image OpenCV can read")
    if img.dtype != np.uint8:
        raise ValueError(f"{p}: {img.dtype} pixels; 8-bit images only")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img)
