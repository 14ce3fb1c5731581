"""Two-tower audio-visual networks: AVE-Net, L3-Net and AVOL-Net (Arandjelovic & Zisserman,
"Look, Listen and Learn" 2017 and "Objects that Sound" 2018), from random initialisation:
:class:`AVNet`, the fusion an argument.
Design notes: docs/design/models_tasks_eval.md, "avssl/models/av.py".
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("ave", "l3", "avol")
#: the when stream keeps the sound's time axis, pooled to this many steps (1 s: 125 ms each)
WHEN_STEPS = 8


def _check_options(
    head: str, frames: int, batch_negatives: bool, contrastive: float, when_stream: bool,
    map_smooth: int, map_pool: float,
) -> None:  # fmt: skip
    """:class:`AVNet`'s options that do not go together, as a ValueError."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if contrastive and not batch_negatives:
        raise ValueError("contrastive > 0 needs batch_negatives (it ranks the batch's pairs)")
    if when_stream and (head == "l3" or frames < 2):
        raise ValueError(
            "when_stream needs head 'ave' or 'avol' and frames >= 2 (the stack it reads)"
        )
    if map_smooth < 1 or map_smooth % 2 == 0 or (map_smooth > 1 and head == "l3"):
        raise ValueError(f"map_smooth must be an odd size >= 1 (not l3), got {map_smooth}")
    if map_pool < 0 or (map_pool and head == "l3"):
        raise ValueError(f"map_pool must be >= 0 (not l3), got {map_pool}")
    if map_smooth > 1 and head == "ave" and not map_pool:
        raise ValueError("map_smooth with head 'ave' needs map_pool > 0 (the per-place score)")


class AVNet(nn.Module):
    class_weight: torch.Tensor | None  # a buffer: the balanced loss's weights

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
        when_stream: bool = False,
        when_size: int = 0,
        map_smooth: int = 1,
        map_pool: float = 0.0,
        class_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        from avssl.models.audio import build_audio_backbone, build_frontend, frontend_config
        from avssl.models.backbones import build_backbone

        _check_options(
            head, frames, batch_negatives, contrastive, when_stream, map_smooth, map_pool
        )
        if when_size < 0:
            raise ValueError(f"when_size must be >= 0, got {when_size}")
        self.head_kind, self.frames, self.batch_negatives = head, frames, batch_negatives
        self.contrastive, self.when_stream = float(contrastive), bool(when_stream)
        self.when_size = int(when_size)
        self.map_smooth, self.map_pool = int(map_smooth), float(map_pool)
        # with the when stream the map's tower ("where") sees one frame, the stack goes to when_net
        vkw = {**(backbone_kwargs or {}), "in_channels": 3 * (1 if when_stream else frames)}
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
        if when_stream:
            self._build_when(backbone, vkw, cv, ca, d)
        self.register_buffer("class_weight", class_weight, persistent=False)  # balanced loss

    def _build_when(self, backbone: str, vkw: dict[str, Any], cv: int, ca: int, d: int) -> None:
        """The when stream: a tower on the T-frame stack, pooled to one vector (it keeps every
        pool: a finer map is no use), and the two embeddings whose cosine it adds."""
        from avssl.models.backbones import build_backbone

        wkw = {k: v for k, v in vkw.items() if k != "pools"}
        self.when_net = build_backbone(backbone, **{**wkw, "in_channels": 3 * self.frames})
        self.when_v = nn.Sequential(
            nn.Linear(cv, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
            nn.Linear(d, d),
        )  # fmt: skip
        self.when_a = nn.Sequential(
            nn.Linear(ca * WHEN_STEPS, d, bias=False), nn.BatchNorm1d(d),
            nn.ReLU(inplace=True), nn.Linear(d, d),
        )  # fmt: skip
        self.when_scale = nn.Parameter(torch.tensor(5.0))

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    def where_frame(self, frames: torch.Tensor) -> torch.Tensor:
        """With the when stream: the one frame the map's tower sees, ``(B, 1, 3, H, W)`` -- the
        stack's centre, or a ``T + 1``-th frame when one is given (training shows one off the
        centre, ``data.av_frame_jitter``). Otherwise ``frames`` itself."""
        if not self.when_stream or frames.dim() != 5:
            return frames
        if frames.shape[1] == self.frames + 1:
            return frames[:, -1:]
        return frames[:, (self.frames - 1) // 2 : (self.frames - 1) // 2 + 1]

    def vision_map(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` (or ``(B, 3, H, W)`` when T = 1) -> the tower's ``(B, C, h, w)``."""
        frames = self.where_frame(frames)
        if frames.dim() == 5:
            frames = frames.flatten(1, 2)
        features: Any = self.net.features  # vgg_av's map (checked in __init__)
        fmap: torch.Tensor = features(frames)
        return fmap

    def audio_feature(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` waveforms -> the tower's globally max-pooled ``(B, C)`` feature."""
        out: torch.Tensor = self.audio_net(self.frontend(audio.float()))
        return out

    def _sound_and_when(
        self, frames: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The sound's L2-normalised embedding ``(B, d)`` and, with the when stream, its two
        L2-normalised vectors ``(B, d)``: the T-frame stack's and the sound's that keeps the time
        axis (the audio tower runs once for both)."""
        if not self.when_stream:
            return self.encode_audio(audio), None
        features: Any = self.when_net.features
        stack = frames[:, : self.frames].flatten(1, 2)
        side = stack.shape[-1]
        if self.when_size and side % self.when_size == 0 and side != self.when_size:
            stack = F.avg_pool2d(stack, side // self.when_size)  # = "area", cheaper
        elif self.when_size and side != self.when_size:
            stack = F.interpolate(stack, size=self.when_size, mode="area")
        v = F.adaptive_max_pool2d(features(stack), 1).flatten(1)
        amap = self.audio_net.features(self.frontend(audio.float()))  # (B, C, F', T')
        a = F.normalize(self.a_embed(self.audio_net.pool_map(amap)), dim=1)
        steps = F.adaptive_avg_pool1d(amap.amax(2), WHEN_STEPS).flatten(1)
        return a, (F.normalize(self.when_v(v), dim=1), F.normalize(self.when_a(steps), dim=1))

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
        a, ww = self._sound_and_when(frames, audio)
        e = self.v_embed(vmap)
        # the when stream's logit raises or lowers the whole map (and the clip's logit) alike
        when = torch.zeros(()) if ww is None else self.when_scale * (ww[0] * ww[1]).sum(1)
        if self.head_kind == "ave" and not self.map_pool:  # the paper's: one pooled embedding
            glob = self._ave_logit((self._pooled(e) - a).norm(dim=1)) + when
            if not cells:
                return glob, None
            dist = (F.normalize(e, dim=1) - a[:, :, None, None]).norm(dim=1)
            return glob, self._ave_logit(dist) + when[..., None, None]
        cos = (F.normalize(e, dim=1) * a[:, :, None, None]).sum(1, keepdim=True)
        m = self._cell_scores(cos)[:, 0] + when[..., None, None]
        return self._pool_cells(m.flatten(1)), m

    def _cell_scores(self, cos: torch.Tensor) -> torch.Tensor:
        """Per-cell logits from ``(N, 1, h, w)`` cosines of unit embeddings: AVOL-Net's 1x1 conv
        on the cosine, or AVE-Net's fc on the Euclidean distance ``sqrt(2 - 2 cos)`` (head
        'ave' with ``map_pool``: AVE-Net scored per place). With ``map_smooth = k > 1`` each
        cell's cosine (distance) is first averaged over its k x k neighbourhood (the grid's edge
        cells over the part inside it), so a place scores by the evidence around it."""
        x = cos if self.head_kind != "ave" else torch.sqrt((2 - 2 * cos).clamp_min(1e-6))
        if self.map_smooth > 1:
            k = self.map_smooth
            x = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
        out: torch.Tensor = self._ave_logit(x) if self.head_kind == "ave" else self.score(x)
        return out

    def _pool_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """AVOL-Net's clip logit from ``(..., N)`` cell logits: the maximum (MIL), or with
        ``map_pool = r > 0`` the log-mean-exp ``log(mean(exp(r x))) / r`` (-> max as r grows):
        every cell gets gradient in proportion to its share, not only the best one."""
        if not self.map_pool:
            return cells.amax(-1)
        r = self.map_pool
        return (torch.logsumexp(r * cells, -1) - math.log(cells.shape[-1])) / r

    def pair_logits(
        self, frames: torch.Tensor, audio: torch.Tensor, parts: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The match logit of every frame with every sound of the batch, ``(B_frames, B_audio)``
        (both towers run once; the fusion runs on all B^2 pairs). ``parts`` (when stream only):
        (the where map's logits, the when stream's logits), which add up to the match logit."""
        vmap = self.vision_map(frames)
        if self.head_kind == "l3":
            af = self.audio_feature(audio)
            vf = F.adaptive_max_pool2d(vmap, 1).flatten(1)
            b, c = vf.shape[0], af.shape[0]
            pairs = torch.cat([vf[:, None].expand(-1, c, -1), af[None].expand(b, -1, -1)], 2)
            out = self.fusion(pairs.reshape(b * c, -1, 1, 1)).reshape(b, c, 2)
            return out[..., 1] - out[..., 0]
        a, ww = self._sound_and_when(frames, audio)
        e = self.v_embed(vmap)
        if self.head_kind == "ave" and not self.map_pool:
            where = self._ave_logit(torch.cdist(self._pooled(e), a))
        else:
            emap = F.normalize(e, dim=1)
            cos = torch.einsum("bdhw,cd->bchw", emap, a)
            cells = self._cell_scores(cos.reshape(-1, 1, *cos.shape[2:])).reshape(cos.shape)
            where = self._pool_cells(cells.flatten(2))
        if ww is None:
            return where
        when = self.when_scale * ww[0] @ ww[1].t()
        return (where, when) if parts else where + when

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
        vid = batch["video_id"]
        pos = torch.diag(target == 1)
        neg = (vid[:, None] != vid[None, :]) & (target == 1)[None, :] | torch.diag(target == 0)

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            lp = F.binary_cross_entropy_with_logits(logits[pos], torch.ones_like(logits[pos]))
            ln = F.binary_cross_entropy_with_logits(logits[neg], torch.zeros_like(logits[neg]))
            loss = 0.5 * (lp + ln)
            if self.contrastive:
                loss = loss + self.contrastive * ranking_loss(logits, pos, neg)
            return loss

        if self.when_stream:
            # the where map is also trained on its own (else the stack could learn *what* too
            # and leave the map idle); the sum learns *when* on top
            where, when = self.pair_logits(batch["frames"], batch["audio"], parts=True)
            logits = (where + when).float()
            loss = loss_of(logits) + loss_of(where.float())
        else:
            logits = self.pair_logits(batch["frames"], batch["audio"]).float()  # type: ignore[union-attr]
            loss = loss_of(logits)
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
