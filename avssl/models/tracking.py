"""Tracking that emerges from colourisation (Vondrick et al., ECCV 2018): the embedding network
and the colour-copy loss (settings and deviations: docs/tracking.md).
Design notes: docs/design/models_tasks_eval.md, "avssl/models/tracking.py".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from avssl.data.colour import grey_from_lightness, quantize_ab, rgb_to_lab
from avssl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from avssl.models.backbones import build_backbone


@dataclass
class TrackingOptions:
    """The ``tracking`` section of :class:`avssl.train.TrainConfig` (``--set tracking.x=y``)."""

    refs: int = 1  # reference frames before the target (the paper: 3)
    # frames between consecutive frames of an example, drawn uniformly per example
    gap: tuple[int, int] = (1, 8)
    per_video: int = 32  # a whole-video row (videos.jsonl) gives this many examples per epoch
    colours: int = 16  # k-means clusters of ab (the paper: 16)
    colour_frames: int = 256  # training frames whose ab pixels the k-means sees
    temperature: float = 0.05  # of the pointer's softmax in training (and tracking default)
    normalize: bool = True  # L2-normalised embeddings (the paper: plain dot products, T = 1)
    embed_dim: int = 32  # the paper: 64
    head: Literal["conv2d", "conv3d"] = "conv2d"  # the paper: a 3-D conv net over the frames
    head_layers: int = 3  # the paper: 5
    head_width: int = 64  # the paper: 256 (recalled)
    coords: bool = False  # the paper: (x, y) in [-1, 1] concatenated before the head
    # what the network sees: "grey" (the paper: the lightness only, as a grey RGB image) or
    # "lab" (L, a and b; CorrFlow / MAST, Lai et al. 2019 / 2020), the colours the loss copies
    # hidden by ``colour_dropout``
    input: Literal["grey", "lab"] = "grey"
    # training only, input "lab": the probability that a frame's a and b are zeroed (it is seen
    # grey), drawn per frame, so the pointers must also work from the lightness's structure
    colour_dropout: float = 0.0
    # the built-in set: train on its own train split, validate on its val split, never see its
    # test clips (those avssl-eval tracking scores); other manifests: the usual hash split
    synth_split: bool = True

    def check(self) -> None:
        problems = [what for bad, what in (
            (self.refs < 1, f"refs={self.refs} (need >= 1)"),
            (not 1 <= self.gap[0] <= self.gap[1], f"gap={list(self.gap)} (need 1 <= lo <= hi)"),
            (self.colours < 2, f"colours={self.colours} (need >= 2)"),
            (self.temperature <= 0, f"temperature={self.temperature} (need > 0)"),
            (self.embed_dim < 1 or self.head_layers < 0 or self.head_width < 1,
             f"embed_dim={self.embed_dim}, head_layers={self.head_layers}, "
             f"head_width={self.head_width} (need >= 1, >= 0, >= 1)"),
            (self.per_video < 1, f"per_video={self.per_video} (need >= 1)"),
            (self.input not in ("grey", "lab"), f"input={self.input!r} (grey or lab)"),
            (not 0.0 <= self.colour_dropout <= 1.0,
             f"colour_dropout={self.colour_dropout} (need 0..1)"),
            (bool(self.colour_dropout) and self.input == "grey",
             "colour_dropout with input=grey (the network sees no colour)"),
        ) if bad]  # fmt: skip
        if problems:
            raise ValueError("tracking: bad " + "; ".join(problems))


def _dilate_resnet(net: nn.Module) -> None:
    """ResNet layer3 / layer4 at stride 1 with dilation 2 / 4: a stride-8 map (DeepLab's way)."""
    layers: list[tuple[Any, int]] = [(net.layer3, 2), (net.layer4, 4)]
    for layer, d in layers:
        for i, block in enumerate(layer):
            if i == 0:
                block.conv1.stride = (1, 1)
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1)
            for conv in (block.conv1, block.conv2):
                conv.dilation, conv.padding = (d, d), (d, d)


def spatial_trunk(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The spatial feature map ``(N, C, h, w)`` of backbone ``net`` on ``(N, 3, H, W)`` images:
    convnet_tiny's conv blocks, ResNet-18's layers 1-4 (after :func:`_dilate_resnet`: stride 8),
    vgg_av's blocks."""
    import torchvision

    from avssl.models.audio import AudioConvNet
    from avssl.models.backbones import ConvNetTiny

    if isinstance(net, ConvNetTiny | AudioConvNet):
        return net.features(x)
    if isinstance(net, torchvision.models.ResNet):
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))
    raise ValueError(
        f"colorization_tracking needs a backbone with a spatial map (convnet_tiny, resnet18, "
        f"vgg_av), not a {type(net).__name__}"
    )


def _coords(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``(2, h, w)``: x and y of every cell centre in [-1, 1] (the paper's location input)."""
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"))


class TrackNet(nn.Module):
    """Grey frames ``(B, T, 3, H, W)`` -> embeddings ``(B, T, D, H / s, W / s)``.

    ``net`` is the backbone (what ``avssl-eval`` loads: keys ``encoder.net.*`` in a task
    checkpoint); ``head`` turns its map into ``embed_dim`` channels: ``head_layers`` 3x3 convs
    (BN, ReLU; dilation 1, 2, 4, ... to widen the context) then a 1x1 projection. ``conv3d``:
    3x3x3 convs over (time, y, x), so a frame's embedding sees its neighbours in the clip.
    """

    def __init__(
        self,
        backbone: str,
        *,
        embed_dim: int = 32,
        head: str = "conv2d",
        head_layers: int = 3,
        head_width: int = 64,
        coords: bool = False,
        normalize: bool = True,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        if head not in ("conv2d", "conv3d"):
            raise ValueError(f"tracking.head must be conv2d or conv3d, not {head!r}")
        self.net = build_backbone(backbone, **backbone_kwargs)
        self.backbone_kwargs = dict(backbone_kwargs)  # as built: for the checkpoint
        if backbone == "resnet18":
            _dilate_resnet(self.net)
        self.head_kind, self.coords, self.normalize = head, coords, normalize
        self.temporal_reach = head_layers if head == "conv3d" else 0  # frames each side
        with torch.no_grad():  # the trunk's stride and width, measured once (eval: BN untouched)
            was = self.net.training
            self.net.eval()
            probe = spatial_trunk(self.net, torch.zeros(1, 3, 64, 64))
            self.net.train(was)
        self.stride = 64 // probe.shape[-1]
        cin = probe.shape[1] + (2 if coords else 0)
        conv: Any = nn.Conv3d if head == "conv3d" else nn.Conv2d
        norm: Any = nn.BatchNorm3d if head == "conv3d" else nn.BatchNorm2d
        layers: list[nn.Module] = []
        for i in range(head_layers):
            d = 2**i
            pad = (1, d, d) if head == "conv3d" else d
            dil = (1, d, d) if head == "conv3d" else d
            layers += [
                conv(cin, head_width, 3, padding=pad, dilation=dil, bias=False),
                norm(head_width),
                nn.ReLU(inplace=True),
            ]
            cin = head_width
        layers.append(conv(cin, embed_dim, 1))
        self.head = nn.Sequential(*layers)
        self.dim = embed_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        fmap = spatial_trunk(self.net, frames.flatten(0, 1))  # (B*T, C, h, w)
        if self.coords:
            xy = _coords(fmap.shape[-2], fmap.shape[-1], fmap)
            fmap = torch.cat([fmap, xy.expand(fmap.shape[0], -1, -1, -1)], dim=1)
        if self.head_kind == "conv3d":
            x = fmap.view(b, t, *fmap.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
            out = self.head(x).transpose(1, 2)
        else:
            out = self.head(fmap)
            out = out.view(b, t, *out.shape[1:])
        return F.normalize(out, dim=2) if self.normalize else out


def colour_copy_loss(
    ref_feats: torch.Tensor,
    ref_codes: torch.Tensor,
    tgt_feats: torch.Tensor,
    tgt_codes: torch.Tensor,
    num_colours: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's loss: colour the target by pointing into the references.

    ``ref_feats`` ``(B, R, D, h, w)``, ``ref_codes`` ``(B, R, h, w)`` colour clusters of the
    references; ``tgt_feats`` ``(B, D, h, w)``, ``tgt_codes`` ``(B, h, w)``. Attention of every
    target location over all ``R * h * w`` reference locations, ``softmax(f_t . f_r / T)``; the
    predicted colour distribution ``p = A @ one_hot(ref_codes)``; the loss is the mean over target
    locations of ``-log p[true colour]`` (``p`` clamped at 1e-8: a colour no reference shows
    gives a constant, gradient-free 18.4). Returns ``(loss, log p as (B, K, h, w))``.
    """
    b, r, d, h, w = ref_feats.shape
    ref = ref_feats.float().permute(0, 1, 3, 4, 2).reshape(b, r * h * w, d)
    tgt = tgt_feats.float().permute(0, 2, 3, 1).reshape(b, -1, d)
    att = torch.softmax(tgt @ ref.transpose(1, 2) / temperature, dim=-1)  # (B, hw_t, R*hw)
    onehot = F.one_hot(ref_codes.reshape(b, -1), num_colours).to(att.dtype)
    logp = torch.log((att @ onehot).clamp_min(1e-8)).transpose(1, 2)  # (B, K, hw_t)
    loss = F.nll_loss(logp, tgt_codes.reshape(b, -1))
    return loss, logp.reshape(b, num_colours, *tgt_feats.shape[-2:])


class ColourTracker(nn.Module):
    """The pretext model: ``forward(batch) -> (loss, logs)`` on ``batch["frames"]``
    ``(B, R + 1, 3, S, S)`` normalised RGB (the trainer's augmentation, one crop for the whole
    clip); the last frame is the target, the others its references. ``centres`` ``(K, 2)``: the
    ab colour clusters (k-means of the training frames, stored in the checkpoint).
    ``logs``: ``logits`` = log of the predicted colour distribution ``(B, K, h, w)`` and
    ``target`` = the target's colour clusters ``(B, h, w)`` (per-location accuracy)."""

    centres: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        backbone: str,
        *,
        centres: torch.Tensor,
        temperature: float = 0.05,
        normalize: bool = True,
        embed_dim: int = 32,
        head: str = "conv2d",
        head_layers: int = 3,
        head_width: int = 64,
        coords: bool = False,
        input: str = "grey",
        colour_dropout: float = 0.0,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        if input not in ("grey", "lab"):
            raise ValueError(f"tracking.input must be grey or lab, not {input!r}")
        self.input, self.colour_dropout = input, float(colour_dropout)
        self.encoder = TrackNet(
            backbone, embed_dim=embed_dim, head=head, head_layers=head_layers,
            head_width=head_width, coords=coords, normalize=normalize, **backbone_kwargs,
        )  # fmt: skip
        self.temperature = float(temperature)
        self.register_buffer("centres", torch.as_tensor(centres, dtype=torch.float32).clone())
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    @property
    def num_colours(self) -> int:
        return int(self.centres.shape[0])

    @torch.no_grad()
    def grey_lab(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., 3, H, W)`` RGB in [0, 1] -> (the network's input, Lab ``(..., 3, H, W)``), in
        float32. Input ``grey``: the sRGB grey of the same lightness, 3 channels, normalised by
        the run's mean / std; ``lab``: ``(L - 50) / 25, a / 25, b / 25``."""
        with torch.autocast(rgb.device.type, enabled=False):
            lab = rgb_to_lab(rgb.float())
            if self.input == "lab":
                shift = lab.new_tensor([50.0, 0.0, 0.0]).view(3, 1, 1)
                return (lab - shift) / 25.0, lab
            grey = grey_from_lightness(lab[..., :1, :, :]).expand_as(lab)
        return (grey - self.mean) / self.std, lab

    def embed(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` RGB in [0, 1] -> embeddings ``(B, T, D, h, w)`` of the frames as
        the network sees them (what :mod:`avssl.eval.propagation` propagates labels with)."""
        x, _ = self.grey_lab(rgb)
        return self.encoder(x)

    def _drop_colour(self, x: torch.Tensor) -> torch.Tensor:
        """Training, input ``lab``: each frame of ``(B, T, 3, H, W)`` loses its a and b (zeroed:
        grey) with probability ``colour_dropout``."""
        if not (self.training and self.input == "lab" and self.colour_dropout > 0):
            return x
        keep = (torch.rand(x.shape[:2], device=x.device) >= self.colour_dropout).to(x.dtype)
        return torch.cat([x[:, :, :1], x[:, :, 1:] * keep[..., None, None, None]], dim=2)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x = batch["frames"]
        if x.shape[1] < 2:
            raise ValueError(f"colorization_tracking: {x.shape[1]} frame(s) per example; need >= 2")
        rgb = (x.float() * self.std + self.mean).clamp(0.0, 1.0)
        x_in, lab = self.grey_lab(rgb)
        feats = self.encoder(self._drop_colour(x_in))  # (B, T, D, h, w)
        b, t, _, h, w = feats.shape
        with torch.no_grad():  # each cell's mean ab -> its nearest cluster
            ab = F.adaptive_avg_pool2d(lab[:, :, 1:].flatten(0, 1), (h, w))
            codes = quantize_ab(ab, self.centres).view(b, t, h, w)
        loss, logp = colour_copy_loss(
            feats[:, :-1], codes[:, :-1], feats[:, -1], codes[:, -1],
            self.num_colours, self.temperature,
        )  # fmt: skip
        return loss, {"logits": logp.detach(), "target": codes[:, -1]}
