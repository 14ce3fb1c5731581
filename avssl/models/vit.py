"""A plain Vision Transformer (Dosovitskiy et al. 2021) as MAE uses it (He et al. 2022): no class
token, the feature is the mean of the final normalised tokens.
Design notes: docs/design/models_tasks_eval.md, "avssl/models/vit.py".
"""

from __future__ import annotations

import torch
from torch import nn


def sincos_2d(
    dim: int, height: int, width: int, *, device: torch.device | None = None
) -> torch.Tensor:
    """MAE's fixed 2-D position embedding: ``(height * width, dim)`` float32, row-major.

    Half of the channels encode the row, half the column; each half is ``sin`` then ``cos`` of
    the position times ``1 / 10000 ** (k / (dim / 4))``, ``k = 0 .. dim / 4 - 1``.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d: dim={dim} must be a multiple of 4")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float64),
        torch.arange(width, device=device, dtype=torch.float64),
        indexing="ij",
    )

    def half(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None, :]
        return torch.cat([out.sin(), out.cos()], dim=1)

    # MAE's order: the width (column) half first, then the height (row) half
    return torch.cat([half(xs), half(ys)], dim=1).float()


def transformer_block(dim: int, heads: int, mlp_ratio: float = 4.0) -> nn.TransformerEncoderLayer:
    """A pre-norm ViT block: LayerNorm, self-attention, LayerNorm, GELU MLP; no dropout."""
    return nn.TransformerEncoderLayer(
        dim,
        heads,
        int(dim * mlp_ratio),
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )


class ViT(nn.Module):
    """``(B, in_channels, H, W)`` with H, W multiples of ``patch_size`` -> ``(B, dim)``.

    Args:
        patch_size: side of a patch in pixels.
        dim: token width (the feature size); a multiple of 4 and of ``heads``.
        depth: transformer blocks.
        heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``dim``.
        in_channels: input channels.
    """

    def __init__(
        self,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if patch_size < 1 or depth < 1 or heads < 1 or dim % 4 or dim % heads:
            raise ValueError(
                f"ViT: patch_size={patch_size}, dim={dim}, depth={depth}, heads={heads}: need "
                "patch_size, depth, heads >= 1 and dim a multiple of 4 and of heads"
            )
        self.patch_size = patch_size
        self.feature_dim = dim
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(transformer_block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        # MAE's init: the patch projection and every linear layer xavier-uniform, biases zero
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The token grid of an ``height x width`` input (raises if not a multiple of the patch)."""
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"ViT: input {height}x{width} px is not a multiple of patch {p}")
        return height // p, width // p

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> patch tokens with position embeddings, ``(B, L, dim)``, row-major."""
        gh, gw = self.grid(x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        pos = sincos_2d(self.feature_dim, gh, gw, device=x.device).to(tokens.dtype)
        return tokens + pos

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The blocks and the final LayerNorm over any subset of tokens ``(B, N, dim)``."""
        for block in self.blocks:
            tokens = block(tokens)
        out: torch.Tensor = self.norm(tokens)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed(x)).mean(dim=1)
