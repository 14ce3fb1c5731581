"""The audio side: a log-spectrogram front end (:class:`LogSpectrogram`, :class:`LogMel`) and
VGG-style audio towers (:class:`AudioConvNet`), from random init only.
Design notes: docs/design/models_tasks_eval.md, "avssl/models/audio.py".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avssl.models.backbones import _scaled

#: The front-end defaults: the papers' 48 kHz log-spectrogram (257 x 201 for 1 s).
PAPER_FRONTEND: dict[str, Any] = {
    "kind": "logspec",
    "sample_rate": 48000,
    "win_s": 0.01,
    "hop": None,
    "n_fft": 512,
}


class LogSpectrogram(nn.Module):
    """``log(|STFT(x)| ** power + eps)`` as a ``(B, 1, n_fft // 2 + 1, frames)`` image.

    Args:
        sample_rate: the rate the waveform is given at (Hz); only converts ``win_s``.
        win_s: window length in seconds (0.01 -> 480 samples at 48 kHz, rounded).
        hop: hop in samples; default half the window (240 at 48 kHz).
        n_fft: FFT size, at least the window (the Hann window is zero-padded to it, centred).
        power: 1 for the magnitude, 2 for the power spectrogram.
        eps: added before the log (the floor: ``log(1e-7)`` = -16.1).
        center: frame ``t`` centred on sample ``t * hop`` (pad ``n_fft // 2`` zeros both ends;
            ``1 + N // hop`` frames), else frames start at ``t * hop``
            (``1 + (N - n_fft) // hop`` frames).

    ``forward(x)``: ``x`` float ``(B, N)`` or ``(B, 1, N)`` (mono) on any device, computed in
    float32. The window is a non-persistent buffer: state dicts hold no front-end entries.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        win_s: float = 0.01,
        hop: int | None = None,
        n_fft: int = 512,
        *,
        power: float = 1.0,
        eps: float = 1e-7,
        center: bool = True,
    ) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        win = round(win_s * sample_rate)
        if win < 2:
            raise ValueError(f"win_s={win_s} at {sample_rate} Hz is {win} samples; need >= 2")
        if n_fft < win:
            raise ValueError(f"n_fft ({n_fft}) must be >= the window ({win} samples)")
        hop = win // 2 if hop is None else int(hop)
        if hop < 1:
            raise ValueError(f"hop must be >= 1 sample, got {hop}")
        if power <= 0 or eps <= 0:
            raise ValueError(f"power and eps must be positive, got {power}, {eps}")
        self.sample_rate = int(sample_rate)
        self.win_length = win
        self.hop = hop
        self.n_fft = int(n_fft)
        self.power = float(power)
        self.eps = float(eps)
        self.center = bool(center)
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)
        self.config: dict[str, Any] = {
            "kind": "logspec",
            "sample_rate": self.sample_rate,
            "win_s": float(win_s),
            "hop": hop,
            "n_fft": self.n_fft,
            "power": self.power,
            "eps": self.eps,
            "center": self.center,
        }

    @property
    def num_bins(self) -> int:
        """Output rows (frequency bins; mel bands for :class:`LogMel`)."""
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Output columns for a waveform of ``num_samples`` samples."""
        if self.center:
            return 1 + num_samples // self.hop
        if num_samples < self.n_fft:
            raise ValueError(f"{num_samples} samples < n_fft {self.n_fft} (center=False)")
        return 1 + (num_samples - self.n_fft) // self.hop

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``|STFT(x)| ** power`` as ``(B, n_fft // 2 + 1, frames)`` float32."""
        if x.dim() == 3:
            if x.shape[1] != 1:
                raise ValueError(f"expected mono (B, 1, N) audio, got {tuple(x.shape)}")
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"expected (B, N) or (B, 1, N) audio, got {tuple(x.shape)}")
        window = self.get_buffer("window")
        s = torch.stft(
            x.to(torch.float32),
            self.n_fft,
            hop_length=self.hop,
            win_length=self.win_length,
            window=window.to(x.device),
            center=self.center,
            pad_mode="constant",
            return_complex=True,
        ).abs()
        return s if self.power == 1.0 else s.pow(self.power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.spectrum(x) + self.eps).unsqueeze(1)


class LogMel(LogSpectrogram):
    """``log(mel(|STFT(x)| ** power) + eps)`` as ``(B, 1, n_mels, frames)``; the other arguments
    are :class:`LogSpectrogram`'s.

    The filterbank is torchaudio's ``melscale_fbanks`` with ``norm="slaney"`` and
    ``mel_scale="slaney"``, i.e. librosa's ``filters.mel`` defaults (``htk=False``,
    ``norm="slaney"``). ``power`` defaults to 2 (a power mel spectrogram, as
    ``librosa.feature.melspectrogram``); ``fmax`` defaults to ``sample_rate / 2``.
    """

    def __init__(
        self, *args: Any, n_mels: int = 64, fmin: float = 0.0, fmax: float | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **{"power": 2.0, **kw})
        from torchaudio.functional import melscale_fbanks

        sample_rate = self.sample_rate
        fmax = sample_rate / 2 if fmax is None else float(fmax)
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {fmin}, {fmax}")
        if n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {n_mels}")
        fb = melscale_fbanks(
            self.n_fft // 2 + 1, float(fmin), fmax, int(n_mels), self.sample_rate,
            norm="slaney", mel_scale="slaney",
        )  # fmt: skip
        self.register_buffer("mel_fb", fb.T.contiguous(), persistent=False)  # (n_mels, bins)
        self.n_mels = int(n_mels)
        self.config.update(kind="logmel", n_mels=self.n_mels, fmin=float(fmin), fmax=fmax)

    @property
    def num_bins(self) -> int:
        return self.n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fb = self.get_buffer("mel_fb")
        mel = torch.matmul(fb.to(x.device), self.spectrum(x))
        return torch.log(mel + self.eps).unsqueeze(1)


def build_frontend(config: Mapping[str, Any] | str | None = None) -> LogSpectrogram:
    """A front end from a config dict (or its JSON text): ``kind`` ``"logspec"`` (default) or
    ``"logmel"`` plus constructor arguments; missing keys take :data:`PAPER_FRONTEND`'s values
    (the 48 kHz log-spectrogram). ``module.config`` gives the complete dict back."""
    cfg = json.loads(config) if isinstance(config, str) else dict(config or {})
    if not isinstance(cfg, dict):
        raise ValueError(f"front-end config must be a JSON object, got {config!r}")
    kind = cfg.pop("kind", "logspec")
    base = {k: v for k, v in PAPER_FRONTEND.items() if k != "kind"}
    kwargs = {**base, **cfg}
    classes: dict[str, type[LogSpectrogram]] = {"logspec": LogSpectrogram, "logmel": LogMel}
    if kind not in classes:
        raise ValueError(f"front-end kind must be 'logspec' or 'logmel', got {kind!r}")
    try:
        return classes[kind](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad front-end option for {kind}: {e}") from None


def frontend_config(frontend: nn.Module) -> dict[str, Any]:
    """The complete config of a front end from :func:`build_frontend` (JSON-ready)."""
    cfg = getattr(frontend, "config", None)
    if not isinstance(cfg, dict):
        raise ValueError(f"{type(frontend).__name__} has no config dict")
    return dict(cfg)


class AudioConvNet(nn.Module):
    """L3-Net's audio subnetwork (Arandjelovic & Zisserman 2017), with a size knob; ``forward``
    global-pools the last block to ``(B, feature_dim)``. The input needs at least ``2 ** blocks``
    rows and columns. Design notes: docs/design/models_tasks_eval.md, "avssl/models/audio.py".

    Args:
        width: channel multiplier (1.0: the paper's 64-512; 0.25: 16-128, the CPU-tiny size).
        blocks: how many blocks (1-4) to keep.
        in_channels: input channels (1: a spectrogram).
        pool: global pooling of ``forward``, ``"max"`` (the papers) or ``"avg"``.
        input_norm: ``"instance"`` (each input map standardised over frequency x time, no learnt
            parameters) or ``"none"`` (where loudness must count).
        convs: conv layers per block (2: the papers; 1: a CPU-scale variant, ~1/3 the cost).
        pools: how many of the blocks, from the first, end with the 2x2 pool (default: all); the
            others keep their input's size (a finer map for the same depth, e.g. a 16x16 grid
            from a 64 frame with 3 blocks and 2 pools).
    """

    BASE = (64, 128, 256, 512)

    def __init__(
        self,
        width: float = 1.0,
        blocks: int = 4,
        in_channels: int = 1,
        pool: str = "max",
        input_norm: str = "instance",
        convs: int = 2,
        pools: int | None = None,
    ) -> None:
        super().__init__()
        if convs not in (1, 2):
            raise ValueError(f"convs must be 1 or 2, got {convs}")
        if not 1 <= blocks <= len(self.BASE):
            raise ValueError(f"blocks must be in 1..{len(self.BASE)}, got {blocks}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        pools = blocks if pools is None else pools
        if not 0 <= pools <= blocks:
            raise ValueError(f"pools must be in 0..blocks ({blocks}), got {pools}")
        self.pools = pools
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if input_norm not in ("instance", "none"):
            raise ValueError(f"input_norm must be 'instance' or 'none', got {input_norm!r}")
        self.input_norm = input_norm
        self.channels = tuple(_scaled(c, width) for c in self.BASE[:blocks])
        self.pool = pool
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(self.channels):
            convs_: list[nn.Module] = []
            for k in range(convs):
                convs_ += [
                    nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
            layers.append(nn.Sequential(*convs_, nn.MaxPool2d(2) if i < pools else nn.Identity()))
            cin = cout
        self.blocks = nn.ModuleList(layers)
        self.feature_dim = self.channels[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def num_layers(self) -> int:
        """How many blocks ``features`` can stop after."""
        return len(self.blocks)

    def layer_dim(self, layer: int) -> int:
        """Channels of block ``layer``'s output (1-based)."""
        self._check_layer(layer)
        return self.channels[layer - 1]

    def _check_layer(self, layer: int) -> None:
        if not 1 <= layer <= len(self.blocks):
            raise ValueError(f"layer must be in 1..{len(self.blocks)}, got {layer}")

    def features(self, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The output map of block ``layer`` (1-based; default the last), ``(B, C, F', T')``."""
        layer = len(self.blocks) if layer is None else layer
        self._check_layer(layer)
        if self.input_norm == "instance":
            x = F.instance_norm(x, eps=1e-5)
        for block in self.blocks[:layer]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, F, T)`` -> ``(B, feature_dim)``, globally max (or avg) pooled."""
        return self.pool_map(self.features(x))

    def pool_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """A ``(B, C, F', T')`` map of the last block -> ``(B, C)``, pooled as ``forward`` pools."""
        return fmap.amax((2, 3)) if self.pool == "max" else fmap.mean((2, 3))


@dataclass(frozen=True)
class AudioBackboneSpec:
    """One audio tower: ``build(**kwargs)`` gives a module taking ``(B, 1, F, T)``."""

    name: str
    feature_dim: int  # with the default keyword arguments
    build: Callable[..., AudioConvNet]
    description: str


AUDIO_BACKBONES: dict[str, AudioBackboneSpec] = {
    s.name: s
    for s in (
        AudioBackboneSpec(
            "audio_vgg", 512, AudioConvNet, "L3-Net audio tower, 4 blocks 64-128-256-512"
        ),
        AudioBackboneSpec(
            "audio_tiny",
            128,
            functools.partial(AudioConvNet, width=0.25),
            "the same at width 0.25 (16-32-64-128), CPU scale",
        ),
    )
}


def build_audio_backbone(name: str, **kwargs: Any) -> AudioConvNet:
    """Audio tower ``name`` (:data:`AUDIO_BACKBONES`) at random init; ``kwargs``: ``width``,
    ``blocks``, ``in_channels``, ``pool``, ``input_norm`` (:class:`AudioConvNet`). Seed torch
    first for repeatable weights. Raises ValueError for an unknown name or a bad keyword."""
    try:
        spec = AUDIO_BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown audio backbone {name!r}; expected one of: {', '.join(AUDIO_BACKBONES)}"
        ) from None
    try:
        return spec.build(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad keyword for audio backbone {name!r}: {e}") from None


class AudioEncoder(nn.Module):
    """A front end and a tower: waveforms ``(B, N)`` at ``frontend.sample_rate`` -> features.

    ``forward(x)`` is the tower's global feature; ``features(x, layer)`` block ``layer``'s map.
    """

    def __init__(self, frontend: LogSpectrogram, net: AudioConvNet) -> None:
        super().__init__()
        self.frontend = frontend
        self.net = net

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def features(self, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return self.net.features(self.frontend(x), layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.frontend(x))
