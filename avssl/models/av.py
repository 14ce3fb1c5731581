"""Two-tower audio-visual networks: AVE-Net, L3-Net and AVOL-Net (Arandjelovic & Zisserman,
"Look, Listen and Learn" 2017 and "Objects that Sound" 2018), from random initialisation.

One module, :class:`AVNet`, with the fusion as an argument (``head``):

* **vision tower** ``net``: a 2-D backbone from :data:`avssl.models.backbones.BACKBONES` with a
  spatial map (``vgg_av`` by default: the papers' VGG-style ConvNet; a 224 frame ends at 14x14),
  on one frame, or on ``frames`` frames stacked as channels (early fusion; 1 = the papers);
* **audio tower** ``audio_net``: a front end (:func:`avssl.models.audio.build_frontend`, the
  papers' 1 s log-spectrogram at 48 kHz by default) computed in batch on the model's device, and
  an :data:`~avssl.models.audio.AUDIO_BACKBONES` tower;
* **embeddings**: each tower's map is max-pooled over space (frequency x time for sound), then
  two fc layers (512 -> 128 -> 128, ReLU between) and L2 normalisation give the 128-D
  ``encode_video`` / ``encode_audio`` vectors. The vision fc layers are 1x1 convolutions, so
  the same layers applied *before* the pool give one 128-D vector per grid cell -- the map that
  localises (:meth:`AVNet.localize`).

Fusions (``head``), all trained with the correspondence target (1 = the sound belongs with the
frame):

* ``"ave"`` -- AVE-Net: the Euclidean distance between the two embeddings -> fc(1 -> 2) ->
  softmax. The fc is initialised with the right sign (small distance -> "match", the boundary
  at distance 1.2; METHODS.md: PyTorch's default init can sit at "no match" for epochs).
  Heatmap: the match logit of every cell's embedding against the sound.
* ``"l3"`` -- L3-Net: the two pooled tower features concatenated -> fc 128 -> ReLU -> fc 2.
  Heatmap: the same fc layers as 1x1 convolutions on each cell's feature and the sound's.
* ``"avol"`` -- AVOL-Net: the cosine of every cell's embedding with the sound's, a 1x1 conv
  (a learnt scale and bias), a sigmoid, and the maximum over the grid (multiple-instance
  learning: the clip matches if some place does); binary cross-entropy on that maximum.
  Heatmap: the sigmoid map itself.

``forward(batch)`` takes ``batch["frames"]`` (``(B, T, 3, H, W)`` normalised floats),
``batch["audio"]`` (``(B, N)`` waveforms at ``sample_rate``) and ``batch["target"]`` and returns
``(loss, {"logits": (B, 2)})`` as every task in :mod:`avssl.tasks` does. Checkpoint entries the
evaluations read (docs/evaluation.md): the vision tower under ``net.`` (``backbone``,
``backbone_kwargs``), the audio tower under ``audio_net.`` (``audio_backbone``,
``audio_backbone_kwargs``, ``audio_frontend``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AVNet", "HEADS", "ranking_loss"]

HEADS = ("ave", "l3", "avol")


class AVNet(nn.Module):
    def __init__(
        self,
        head: Literal["ave", "l3", "avol"] = "ave",
        *,
        backbone: str = "vgg_av",
        backbone_kwargs: dict[str, Any] | None = None,
        audio_backbone: str = "audio_vgg",
        audio_kwargs: dict[str, Any] | None = None,
        frontend: dict[str, Any] | None = None,
        frames: int = 1,
        embed_dim: int = 128,
        batch_negatives: bool = False,
        contrastive: float = 0.0,
    ) -> None:
        super().__init__()
        from avssl.models.audio import build_audio_backbone, build_frontend, frontend_config
        from avssl.models.backbones import build_backbone

        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.head_kind = head
        self.frames = frames
        self.batch_negatives = batch_negatives
        self.contrastive = float(contrastive)
        if self.contrastive and not batch_negatives:
            raise ValueError("contrastive > 0 needs batch_negatives (it ranks the batch's pairs)")
        vkw = {**(backbone_kwargs or {}), "in_channels": 3 * frames}
        self.net = build_backbone(backbone, **vkw)
        if not hasattr(self.net, "features"):
            raise ValueError(f"backbone {backbone!r} has no spatial map (features); use vgg_av")
        self.backbone_name, self.backbone_kwargs = backbone, vkw
        akw = {"input_norm": "none", **(audio_kwargs or {})}
        self.frontend = build_frontend(frontend)
        self.audio_net = build_audio_backbone(audio_backbone, **akw)
        self.audio_backbone_name, self.audio_kwargs = audio_backbone, akw
        self.frontend_config = frontend_config(self.frontend)
        from avssl.models.backbones import feature_dim_of

        cv, ca = feature_dim_of(self.net), int(self.audio_net.feature_dim)
        d = embed_dim
        self.v_embed = nn.Sequential(
            nn.Conv2d(cv, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True),
            nn.Conv2d(d, d, 1),
        )  # fmt: skip
        self.a_embed = nn.Sequential(
            nn.Linear(ca, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, d)
        )
        if head == "ave":
            self.fc = nn.Linear(1, 2)
            with torch.no_grad():  # logit(match) - logit(no match) = 6 (1.2 - distance)
                self.fc.weight.copy_(torch.tensor([[3.0], [-3.0]]))
                self.fc.bias.copy_(torch.tensor([-3.6, 3.6]))
        elif head == "l3":
            self.fusion = nn.Sequential(
                nn.Conv2d(cv + ca, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, 2, 1)
            )
        else:
            self.score = nn.Conv2d(1, 1, 1)  # AVOL's 1x1 conv on the cosine map
            with torch.no_grad():
                nn.init.constant_(self.score.weight, 5.0)
                nn.init.zeros_(self.score.bias)  # type: ignore[arg-type]
        self.class_weight: torch.Tensor | None = None  # the trainer's balanced-loss hook

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    # ------------------------------------------------------------------ the towers
    def vision_map(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` (or ``(B, 3, H, W)`` when T = 1) -> the tower's ``(B, C, h, w)``."""
        if frames.dim() == 5:
            frames = frames.flatten(1, 2)
        features: Any = self.net.features  # vgg_av's map (checked in __init__)
        fmap: torch.Tensor = features(frames)
        return fmap

    def audio_feature(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` waveforms -> the tower's globally max-pooled ``(B, C)`` feature."""
        out: torch.Tensor = self.audio_net(self.frontend(audio.float()))
        return out

    @staticmethod
    def _pooled(e: torch.Tensor) -> torch.Tensor:
        """Cells already through the (1x1-conv) embedding layers, max-pooled and normalised:
        the network is fully convolutional up to the pool, so every cell's embedding lives
        where the pooled one does and the per-cell map localises (METHODS.md)."""
        return F.normalize(F.adaptive_max_pool2d(e, 1).flatten(1), dim=1)

    def _ave_logit(self, dist: torch.Tensor) -> torch.Tensor:
        """AVE-Net's fc(1 -> 2) on a distance, as logit(match) - logit(no match)."""
        w, b = self.fc.weight[:, 0], self.fc.bias
        return (w[1] - w[0]) * dist + (b[1] - b[0])

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """The L2-normalised ``(B, embed_dim)`` embedding of the frame(s)."""
        return self._pooled(self.v_embed(self.vision_map(frames)))

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """The L2-normalised ``(B, embed_dim)`` embedding of the sound."""
        return F.normalize(self.a_embed(self.audio_feature(audio)), dim=1)

    def encode_video_map(self, frames: torch.Tensor) -> torch.Tensor:
        """One L2-normalised embedding per grid cell: ``(B, embed_dim, h, w)``."""
        return F.normalize(self.v_embed(self.vision_map(frames)), dim=1)

    # ------------------------------------------------------------------ fusion
    def _logit_maps(
        self, frames: torch.Tensor, audio: torch.Tensor, cells: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(global match logit ``(B,)``, per-cell match logit ``(B, h, w)`` or None when
        ``cells`` is False and the head does not need it: training skips the map)."""
        vmap = self.vision_map(frames)
        if self.head_kind == "l3":
            af = self.audio_feature(audio)[:, :, None, None]
            g = self.fusion(torch.cat([F.adaptive_max_pool2d(vmap, 1), af], 1)).flatten(1)
            if not cells:
                return g[:, 1] - g[:, 0], None
            m = self.fusion(torch.cat([vmap, af.expand(-1, -1, *vmap.shape[2:])], 1))
            return g[:, 1] - g[:, 0], m[:, 1] - m[:, 0]
        a = self.encode_audio(audio)
        e = self.v_embed(vmap)
        if self.head_kind == "ave":
            glob = self._ave_logit((self._pooled(e) - a).norm(dim=1))
            if not cells:
                return glob, None
            emap = F.normalize(e, dim=1)
            return glob, self._ave_logit((emap - a[:, :, None, None]).norm(dim=1))
        cos = (F.normalize(e, dim=1) * a[:, :, None, None]).sum(1, keepdim=True)
        m = self.score(cos)[:, 0]
        return m.flatten(1).amax(1), m

    def pair_logits(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The match logit of every frame with every sound of the batch, ``(B_frames, B_audio)``
        (both towers run once; the fusion runs on all B^2 pairs)."""
        vmap = self.vision_map(frames)
        if self.head_kind == "l3":
            af = self.audio_feature(audio)
            vf = F.adaptive_max_pool2d(vmap, 1).flatten(1)
            b, c = vf.shape[0], af.shape[0]
            pairs = torch.cat([vf[:, None].expand(-1, c, -1), af[None].expand(b, -1, -1)], 2)
            out = self.fusion(pairs.reshape(b * c, -1, 1, 1)).reshape(b, c, 2)
            return out[..., 1] - out[..., 0]
        a = self.encode_audio(audio)
        e = self.v_embed(vmap)
        if self.head_kind == "ave":
            return self._ave_logit(torch.cdist(self._pooled(e), a))
        emap = F.normalize(e, dim=1)
        cos = torch.einsum("bdhw,cd->bchw", emap, a)
        cells = self.score(cos.reshape(-1, 1, *cos.shape[2:])).reshape(cos.shape)
        return cells.flatten(2).amax(2)

    def match_logit(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """``log p(match) - log p(no match)`` of each (frame, sound) pair, ``(B,)``."""
        return self._logit_maps(frames, audio, cells=False)[0]

    def localize(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The sound-source heatmap ``(B, h, w)``: the probability that the sound comes from
        each grid cell (the sigmoid of its match logit; for AVOL-Net, its own score map)."""
        cells = self._logit_maps(frames, audio)[1]
        assert cells is not None
        return torch.sigmoid(cells.float())

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        target = batch["target"]
        if self.batch_negatives and self.training:
            return self._batch_loss(batch)
        logit, _ = self._logit_maps(batch["frames"], batch["audio"], cells=False)
        logit = logit.float()
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        if self.head_kind == "avol":
            w = None
            if self.class_weight is not None:
                w = self.class_weight.to(logit.device)[target]
            loss = F.binary_cross_entropy_with_logits(logit, target.float(), weight=w)
        else:
            loss = F.cross_entropy(logits, target, weight=self.class_weight)
        return loss, {"logits": logits.detach()}

    def _batch_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Binary correspondence over every (frame, sound) pair of the batch: the positives of
        the batch (target 1) against the sampled negatives (target 0: e.g. av_sync's shifted
        sound) and the sounds of the *other videos* in it (pairs of one video,
        ``batch["video_id"]``, are left out), each side weighted 1/2 -- the papers' 50:50
        objective with B - 1 negatives per frame for the cost of one."""
        target = batch["target"]
        logits = self.pair_logits(batch["frames"], batch["audio"]).float()
        vid = batch["video_id"]
        pos = torch.diag(target == 1)
        neg = (vid[:, None] != vid[None, :]) & (target == 1)[None, :] | torch.diag(target == 0)
        lp = F.binary_cross_entropy_with_logits(logits[pos], torch.ones_like(logits[pos]))
        ln = F.binary_cross_entropy_with_logits(logits[neg], torch.zeros_like(logits[neg]))
        loss = 0.5 * (lp + ln)
        if self.contrastive:
            loss = loss + self.contrastive * ranking_loss(logits, pos, neg)
        diag = torch.diagonal(logits)
        out = torch.stack([torch.zeros_like(diag), diag], 1)
        return loss, {"logits": out.detach()}


def ranking_loss(logits: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a ``(B, B)`` match-logit matrix: each positive pair ``(i, i)``
    (``pos``, diagonal) must out-score the negatives of its row (the frame against the other
    sounds) and of its column (the sound against the other frames); cells neither positive nor
    negative (``neg`` False off the diagonal: pairs of one video) are left out. The logits'
    own scale is the temperature (AVE-Net's fc slope, AVOL-Net's 1x1 conv: both learnt)."""
    keep = pos | neg
    masked = logits.masked_fill(~keep, float("-inf"))
    rows = torch.diagonal(pos).nonzero().flatten()
    if rows.numel() == 0:
        return logits.sum() * 0.0
    target = rows
    by_frame = F.cross_entropy(masked[rows], target)
    by_sound = F.cross_entropy(masked.t()[rows], target)
    return 0.5 * (by_frame + by_sound)
