"""The heads of the image tasks (:mod:`avssl.tasks.image`): each owns its loss and runs the
shared backbone (``net``) on its own input -- ``forward(net, batch) -> (loss, logs)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avssl import dist
from avssl.data.colour import grey_from_lightness, quantize_ab, rgb_to_lab
from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from avssl.tasks import image_ops as ops
from avssl.tasks.common import classification, mlp_head

_LUMA = (0.299, 0.587, 0.114)


def _logs(loss: torch.Tensor, logs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return loss, {**logs, "target": target}


class _Stats(nn.Module):
    """Heads that undo the trainer's normalisation (``aug.mean`` / ``aug.std``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.std + self.mean).clamp(0.0, 1.0)

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean) / self.std


class Rotation(nn.Module):
    """Gidaris et al.: which of the 4 rotations; all four of every frame in the batch."""

    def __init__(self, dim: int, *, hidden: int = 0) -> None:
        super().__init__()
        self.head = mlp_head(dim, hidden, 4)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, 0]
        turned = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
        target = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
        return _logs(*classification(self.head(net(turned)), target), target)


class RelativePosition(_Stats):
    """Doersch et al.: the 8-way position of the second patch relative to the first."""

    def __init__(
        self,
        dim: int,
        *,
        patch: int,
        hidden: int = 256,
        chroma: str = "drop",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        if chroma not in ("drop", "project", "grey", "none"):
            raise ValueError(f"options.chroma must be drop, project, grey or none, not {chroma!r}")
        if patch < 1:
            raise ValueError(f"relative position: patch={patch} px")
        self.patch, self.chroma = patch, chroma
        self.head = mlp_head(2 * dim, hidden, 8)

    def _colour(self, p: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Chromatic-aberration guard on normalised patches ``(B, 2, 3, P, P)``."""
        if self.chroma == "drop" and keep is not None:
            return p * F.one_hot(keep.long(), 3).to(p.dtype)[..., None, None]  # 0 = the mean
        if self.chroma in ("grey", "project"):
            rgb = self.to_rgb(p)
            if self.chroma == "grey":
                luma = torch.tensor(_LUMA, device=p.device).view(3, 1, 1)
                rgb = (rgb * luma).sum(dim=-3, keepdim=True).expand_as(rgb)
            else:  # remove the green-magenta component, the axis chromatic aberration shifts
                v = (torch.tensor([-1.0, 2.0, -1.0], device=p.device) / 6**0.5).view(3, 1, 1)
                rgb = rgb - (rgb * v).sum(dim=-3, keepdim=True) * v
            return self.normalize(rgb)
        return p

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, 0]
        patches = self._colour(
            ops.cut_patches(x, batch["patch_yx"], self.patch), batch.get("patch_keep")
        )
        feats = net(patches.flatten(0, 1)).view(x.shape[0], -1)
        target = batch["position"]
        return _logs(*classification(self.head(feats), target), target)


class Colorization(_Stats):
    """Zhang et al.: the quantised ab colour of each grid cell from the lightness."""

    bins: torch.Tensor
    ab_weight: torch.Tensor

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        grid: int = 4,
        bin_size: float = 10.0,
        ab_weight: torch.Tensor | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        bins = ops.ab_bins(bin_size)
        self.grid, self.q = grid, bins.shape[0]
        self.register_buffer("bins", bins.clone(), persistent=False)
        w = torch.ones(self.q) if ab_weight is None else torch.as_tensor(ab_weight).float()
        if w.shape != (self.q,):
            raise ValueError(f"colorization: {tuple(w.shape)} weights for {self.q} ab bins")
        self.register_buffer("ab_weight", w.clone())  # in the checkpoint: a run keeps its weights
        self.head = mlp_head(dim, hidden, self.q * grid * grid)

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised frames ``(B, 3, S, S)`` -> (grey input ``(B, 3, S, S)`` normalised, ab bin
        of every grid cell ``(B, g, g)``)."""
        with torch.autocast(x.device.type, enabled=False):  # Lab in float32, not bf16
            lab = rgb_to_lab(self.to_rgb(x))
        grey = self.normalize(grey_from_lightness(lab[:, :1]).expand(-1, 3, -1, -1))
        cells = F.adaptive_avg_pool2d(lab[:, 1:], self.grid)
        return grey, quantize_ab(cells, self.bins)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        grey, target = self.targets(batch["frames"][:, 0])
        b, g = grey.shape[0], self.grid
        logits = self.head(net(grey)).view(b, self.q, g, g)
        nll = F.cross_entropy(logits.float(), target, reduction="none")
        loss = (self.ab_weight[target] * nll).mean()  # Zhang et al.'s eq. 2, per cell
        return loss, {"logits": logits.detach(), "target": target}


class Exemplar(nn.Module):
    """Dosovitskiy et al.: every view classified as the image (row) it was cut from."""

    def __init__(self, dim: int, *, num_exemplars: int) -> None:
        super().__init__()
        if num_exemplars < 2:
            raise ValueError(f"exemplar: {num_exemplars} surrogate classes; need at least 2")
        self.head = nn.Linear(dim, num_exemplars)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"]
        target = batch["exemplar"].repeat_interleave(x.shape[1])
        return _logs(*classification(self.head(net(x.flatten(0, 1))), target), target)


class SimCLR(nn.Module):
    """Chen et al.: NT-Xent between the projections of two views of every frame."""

    def __init__(self, dim: int, *, proj_dim: int = 128, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"options.temperature must be > 0, not {temperature}")
        self.temperature = temperature
        self.projector = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim)
        )

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"][:, :2]
        if x.shape[1] != 2:
            raise ValueError("simclr needs two views per example (frames (B, 2, 3, S, S))")
        z = self.projector(net(x.flatten(0, 1))).view(x.shape[0], 2, -1)
        # in training, every process's embeddings are negatives (the held-out batches of the
        # ranks may differ in size, so evaluation scores each rank's batch on its own)
        many = self.training and dist.get_world_size() > 1
        loss, logits, target = ops.nt_xent(
            z[:, 0],
            z[:, 1],
            self.temperature,
            gather=dist.all_gather_with_grad if many else None,
            rank=dist.get_rank() if many else 0,
        )
        return loss, {"logits": logits, "target": target}


class MAE(nn.Module):
    """He et al.: reconstruct the masked patches from the visible ones (ViT backbone)."""

    def __init__(
        self,
        dim: int,
        *,
        net: nn.Module,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix: bool = True,
    ) -> None:
        super().__init__()
        from avssl.models.vit import ViT, transformer_block

        if not isinstance(net, ViT):
            raise ValueError(f"mae needs the vit_tiny backbone, not a {type(net).__name__}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"options.mask_ratio must be in (0, 1), not {mask_ratio}")
        self.patch, self.mask_ratio, self.norm_pix = net.patch_size, mask_ratio, norm_pix
        self.decoder_dim = decoder_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = nn.ModuleList(
            transformer_block(decoder_dim, decoder_heads) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)

    def forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        from avssl.models.vit import ViT, sincos_2d

        assert isinstance(net, ViT)  # checked when the head was built
        x = batch["frames"][:, 0]
        tokens = net.embed(x)  # (B, L, D) with positions
        b, length, d = tokens.shape
        noise = batch.get("mask_noise")
        if noise is None or noise.shape != (b, length):
            raise ValueError(
                f"mae: mask_noise of shape {None if noise is None else tuple(noise.shape)}"
                f" for {length} patches (set by make_example from aug.size)"
            )
        keep, mask, restore = ops.random_masking(noise, self.mask_ratio)
        visible = torch.gather(tokens, 1, keep[..., None].expand(-1, -1, d))
        y = self.decoder_embed(net.encode(visible))
        y = torch.cat([y, self.mask_token.expand(b, length - y.shape[1], -1)], dim=1)
        y = torch.gather(y, 1, restore[..., None].expand(-1, -1, self.decoder_dim))
        gh, gw = net.grid(x.shape[-2], x.shape[-1])
        y = y + sincos_2d(self.decoder_dim, gh, gw, device=x.device).to(y.dtype)
        for block in self.decoder:
            y = block(y)
        pred = self.decoder_pred(self.decoder_norm(y))
        return ops.mae_loss(pred, ops.patchify(x, self.patch), mask, norm_pix=self.norm_pix), {}


HEADS: dict[str, type[nn.Module]] = {
    "rotation": Rotation,
    "relative_position": RelativePosition,
    "colorization": Colorization,
    "exemplar": Exemplar,
    "simclr": SimCLR,
    "mae": MAE,
}
