"""The pure pieces of the image pretext tasks (:mod:`avssl.tasks.image`), each tested against a
direct formula: the relative-position patch sampler, the colourisation bins and their rebalancing
weights (Lab itself: :mod:`avssl.data.colour`), SimCLR's NT-Xent, and MAE's patchify / masking /
loss."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from avssl.data.colour import rgb_to_lab

#: The 8 neighbours of the centre cell of a 3x3 grid as (row, column) offsets, in reading order:
#: the class of a pair is the index of the second patch's cell here (Doersch et al. 2015, Fig. 2).
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def relative_position_layout(size: int, patch: int = 0, gap: int = -1, jitter: int = -1) -> tuple:
    """``(patch, gap, jitter)`` in pixels for frames of ``size`` px, defaults resolved.

    Doersch et al. cut 96 px patches with 48 px gaps and up to 7 px of jitter: the defaults keep
    those ratios (``gap = patch // 2``, ``jitter = max(1, round(patch * 7 / 96))``) and take the
    largest patch whose 3x3 grid fits, ``3 * patch + 2 * gap + 2 * jitter <= size``.
    """
    if patch <= 0:
        patch = max(1, math.floor(size / (4 + 14 / 96)))
        while patch > 1 and 4 * patch + 2 * max(1, round(patch * 7 / 96)) > size:
            patch -= 1
    gap = patch // 2 if gap < 0 else gap
    jitter = max(1, round(patch * 7 / 96)) if jitter < 0 else jitter
    if 3 * patch + 2 * gap + 2 * jitter > size:
        raise ValueError(
            f"relative position: a 3x3 grid of {patch} px patches with {gap} px gaps and "
            f"{jitter} px jitter needs 3*patch + 2*gap + 2*jitter = "
            f"{3 * patch + 2 * gap + 2 * jitter} px, but frames are {size} px (aug.size)"
        )
    return patch, gap, jitter


def sample_patch_pair(
    size: tuple[int, int], patch: int, gap: int, jitter: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Two patches of a 3x3 grid: the centre one and a random neighbour (Doersch et al. 2015).

    The grid of ``patch`` px cells ``gap`` px apart is placed uniformly at random inside the
    ``size = (H, W)`` frame, leaving ``jitter`` px on every side; each of the two patches then
    moves by its own uniform integer offset in ``[-jitter, jitter]`` on each axis (so the gap
    between them is at least ``gap - 2 * jitter`` and no straight edge or line continues at a
    known place: the paper's guards against trivial low-level shortcuts).

    Returns ``(yx, label)``: ``yx`` int64 ``(2, 2)``, the top-left corners (row, column) of the
    centre patch and of the neighbour, and ``label`` in ``0..7``, the neighbour's index in
    :data:`NEIGHBOURS`. Every patch lies inside the frame. Draws only from ``rng``.
    """
    h, w = size
    stride = patch + gap
    extent = 3 * patch + 2 * gap
    if extent + 2 * jitter > min(h, w):
        raise ValueError(f"a {extent} px grid with {jitter} px jitter does not fit {h}x{w} px")
    label = int(rng.integers(8))
    top = int(rng.integers(jitter, h - extent - jitter + 1))
    left = int(rng.integers(jitter, w - extent - jitter + 1))
    dy, dx = NEIGHBOURS[label]
    cells = np.array([[1, 1], [1 + dy, 1 + dx]], dtype=np.int64)
    yx = np.array([top, left], dtype=np.int64) + cells * stride
    yx += rng.integers(-jitter, jitter + 1, size=(2, 2))
    return yx, label


def cut_patches(images: torch.Tensor, yx: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` images, ``(B, N, 2)`` top-left corners -> ``(B, N, C, patch, patch)``:
    ``images[b, :, y : y + patch, x : x + patch]`` for every corner, in one gather."""
    b = images.shape[0]
    steps = torch.arange(patch, device=images.device)
    rows = yx[..., 0, None].to(images.device) + steps  # (B, N, P)
    cols = yx[..., 1, None].to(images.device) + steps
    bi = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    out = images.permute(0, 2, 3, 1)[bi, rows[..., :, None], cols[..., None, :]]  # (B, N, P, P, C)
    return out.permute(0, 1, 4, 2, 3)


@functools.lru_cache(maxsize=4)
def ab_bins(bin_size: float = 10.0, levels: int = 64) -> torch.Tensor:
    """The in-gamut ab bins of Zhang et al. (2016): ``(Q, 2)`` float32 bin centres, multiples of
    ``bin_size``, sorted by (a, b).

    A bin is in gamut when some sRGB colour falls in it: here every colour of a ``levels``^3
    grid over the RGB cube (64 levels: 262k colours), converted to Lab, ab rounded to the bin
    grid. With ``bin_size=10`` this gives 261 bins (259 at 32 levels, 262 at 128): fewer than the
    313 of the paper's released table, whose gamut test the paper does not state (it may count a
    bin that the gamut only touches). A coarser ``bin_size`` gives fewer classes.
    """
    v = torch.linspace(0.0, 1.0, levels, dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(v, v, v, indexing="ij")).reshape(3, -1, 1)
    ab = rgb_to_lab(rgb)[1:, :, 0].T  # (N, 2)
    cells = torch.unique(torch.round(ab / bin_size), dim=0)
    return (cells * bin_size).float()


def ab_weights(
    counts: torch.Tensor, bins: torch.Tensor, *, lam: float = 0.5, sigma: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang et al.'s class rebalancing: ``(weights, smoothed)`` for bin ``counts`` ``(Q,)``.

    The empirical distribution of the bins is smoothed with a Gaussian of ``sigma`` ab units
    (over the bin centres), mixed with the uniform distribution, ``(1 - lam) * p + lam / Q``,
    inverted and scaled so that the expected weight under the smoothed distribution is 1:
    ``w = 1 / ((1 - lam) * p + lam / Q)``, ``sum(p * w) = 1``. ``lam = 0.5``, ``sigma = 5``:
    the paper's values.
    """
    q = bins.shape[0]
    if counts.shape != (q,):
        raise ValueError(f"ab_weights: counts of shape {tuple(counts.shape)} for {q} bins")
    p = counts.double() / counts.sum().clamp_min(1)
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    kernel = torch.exp(-d2 / (2 * sigma**2))
    smooth = kernel @ p
    smooth = smooth / smooth.sum()
    w = 1.0 / ((1 - lam) * smooth + lam / q)
    w = w / (smooth * w).sum()
    return w.float(), smooth.float()


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    *,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent loss of the positive pairs ``(z1[k], z2[k])``; ``(loss, logits, target)``.

    ``s_ij = z_i . z_j / (tau |z_i| |z_j|)``; for each of the 2B anchors,
    ``l(i, j) = -log(exp(s_ij) / sum_{k != i} exp(s_ik))`` with j its positive; the loss is the
    mean over the anchors (both directions of every pair), as Chen et al. (2020), Alg. 1.

    ``gather`` (:func:`avssl.dist.all_gather_with_grad` under DDP) collects every process's
    ``z1`` and ``z2``; this process's 2B anchors are then scored against all ``2 * world * B``
    embeddings (its own rows at ``rank * B``), so the mean of the processes' losses is the loss of
    the whole batch. ``logits`` ``(2B, 2 * world * B)`` (the anchor itself at -inf) and
    ``target`` (the column of each anchor's positive) give the pretext accuracy.
    """
    b = z1.shape[0]
    a1, a2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    c1, c2 = (gather(a1), gather(a2)) if gather is not None else (a1, a2)
    n = c1.shape[0]  # world * B
    candidates = torch.cat([c1, c2])  # (2n, D): every first view, then every second view
    anchors = torch.cat([a1, a2])  # (2B, D)
    logits = anchors @ candidates.T / temperature
    own = rank * b + torch.arange(b, device=z1.device)
    self_col = torch.cat([own, n + own])
    target = torch.cat([n + own, own])
    rows = torch.arange(2 * b, device=z1.device)
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), device=z1.device))
    return F.cross_entropy(logits, target), logits.detach(), target


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, L, patch * patch * C)``, patches row-major, pixels (row, column,
    channel) inside a patch: MAE's ``patchify``."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    return torch.einsum("bcipjq->bijpqc", x).reshape(b, gh * gw, patch * patch * c)


def random_masking(
    noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking from ``noise`` ``(B, L)`` (uniform draws): the patches
    with the ``int(L * (1 - mask_ratio))`` smallest draws stay visible.

    Returns ``(keep, mask, restore)``: ``keep`` ``(B, K)`` indices of the visible patches,
    ``mask`` ``(B, L)`` float 1 = masked, ``restore`` ``(B, L)`` the inverse permutation (to put
    ``[visible, mask tokens]`` back into patch order)."""
    b, length = noise.shape
    n_keep = int(length * (1 - mask_ratio))
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    mask = torch.ones(b, length, device=noise.device)
    mask[:, :n_keep] = 0
    return shuffle[:, :n_keep], torch.gather(mask, 1, restore), restore


def mae_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, norm_pix: bool = True
) -> torch.Tensor:
    """MAE's loss: mean squared error per patch, averaged over the masked patches only.

    ``pred`` and ``target`` ``(B, L, P)`` (:func:`patchify` of the image), ``mask`` ``(B, L)``
    1 = masked. ``norm_pix``: every target patch is normalised by its own mean and variance
    first (``(x - mean) / sqrt(var + 1e-6)``, the unbiased variance as MAE's code computes it),
    the paper's better-representation variant.
    """
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()
