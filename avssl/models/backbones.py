"""Backbones: the feature towers the pretext tasks share, from random initialisation only; every
entry of :data:`BACKBONES` returns global features ``(B, feature_dim)``.
Design notes: docs/design/models_tasks_eval.md, "avssl/models/backbones.py".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn


def _scaled(n: int, width: float) -> int:
    """``n`` channels/units times ``width``, rounded, at least 1."""
    return max(1, round(n * width))


class CaffeNet(nn.Module):
    """The CaffeNet tower (Krizhevsky et al. 2012), with BatchNorm; ``forward`` returns fc7
    after its ReLU. Any input of at least 39 px works.
    Design notes: docs/design/models_tasks_eval.md, "avssl/models/backbones.py".

    Args:
        width: multiplier on every channel and unit count (rounded). ``1.0`` is the paper's net
            (feature 4096, ~58M parameters); ``0.25`` is the CPU-scale demo size (24-64-96-96-64
            channels, fc 1024, ~3.7M parameters).
        fc_dim: units of fc6 and fc7 (the feature size); default ``round(4096 * width)``.
        in_channels: input channels (3 for RGB frames or dynamic images).
    """

    MIN_SIZE = 39  # smallest H and W that survive conv1 and the three 3x3/2 pools (see above)

    def __init__(self, width: float = 1.0, fc_dim: int | None = None, in_channels: int = 3) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"CaffeNet width must be > 0, got {width}")
        c1, c2, c3, c4, c5 = (_scaled(n, width) for n in (96, 256, 384, 384, 256))
        fc = fc_dim if fc_dim is not None else _scaled(4096, width)
        if fc < 1:
            raise ValueError(f"CaffeNet fc_dim must be >= 1, got {fc}")
        self.in_channels = in_channels
        self.feature_dim = fc

        def conv(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        def pool() -> nn.Module:
            return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

        self.features = nn.Sequential(
            *conv(in_channels, c1, 11, stride=4),  # conv1 -> 55x55 at 227 px
            pool(),  # pool1 -> 27
            *conv(c1, c2, 5, pad=2),  # conv2
            pool(),  # pool2 -> 13
            *conv(c2, c3, 3, pad=1),  # conv3
            *conv(c3, c4, 3, pad=1),  # conv4
            *conv(c4, c5, 3, pad=1),  # conv5
            pool(),  # pool5 -> 6
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.fc = nn.Sequential(
            nn.Linear(c5 * 6 * 6, fc, bias=False),  # fc6
            nn.BatchNorm1d(fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, fc, bias=False),  # fc7
            nn.BatchNorm1d(fc),
            nn.ReLU(inplace=True),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` with H, W >= 39 -> fc7 features ``(B, feature_dim)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.MIN_SIZE:
            raise ValueError(
                f"CaffeNet expects (B, {self.in_channels}, H, W) with H, W >= {self.MIN_SIZE}, "
                f"got {tuple(x.shape)}"
            )
        x = self.avgpool(self.features(x))
        return self.fc(torch.flatten(x, 1))


class ConvNetTiny(nn.Module):
    """A small CNN for CPU-scale demos and tests: not from the papers (a 64x64 input gives a 256-D
    feature). Design notes: docs/design/models_tasks_eval.md, "avssl/models/backbones.py".

    Args:
        channels: output channels of the blocks.
        in_channels: input channels.
        spatial: the feature keeps an ``spatial x spatial`` average-pooled map, so
            ``feature_dim = channels[-1] * spatial**2`` (1: global pooling).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        in_channels: int = 3,
        spatial: int = 1,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("ConvNetTiny needs at least one block")
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in channels:
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        # spatial > 1 keeps a coarse s x s map (flattened): where things are, which the
        # order tasks compare across frames, survives; global pooling (1) discards it.
        self.pool = nn.AdaptiveAvgPool2d(spatial)
        self.feature_dim = channels[-1] * spatial * spatial
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, feature_dim)``, ``channels[-1] * spatial**2``."""
        return torch.flatten(self.pool(self.features(x)), 1)


def _vit(**kwargs: Any) -> nn.Module:
    from avssl.models.vit import ViT

    return ViT(**kwargs)


def _vgg_av(**kwargs: Any) -> nn.Module:
    """The "Objects that Sound" / L3-Net vision subnetwork: the same VGG-style design as their
    audio tower (:class:`avssl.models.audio.AudioConvNet`: blocks of 2 x conv3x3-BN-ReLU and a
    2x2 max pool, 64-128-256-512 channels), on RGB frames, without input standardisation. A 224
    frame ends at a 14x14x512 grid (AVOL-Net's grid); ``features(x)`` returns that map."""
    from avssl.models.audio import AudioConvNet

    return AudioConvNet(**{"in_channels": 3, "input_norm": "none", **kwargs})


def _torchvision_trunk(constructor: str, dim: int) -> Callable[..., nn.Module]:
    """A builder for torchvision's ``constructor`` with ``fc = nn.Identity()``.

    Keyword arguments go to the constructor (e.g. ``zero_init_residual=True``) except
    ``weights``, which is always ``None``: avssl never loads pretrained weights.
    """

    def build(**kwargs: Any) -> nn.Module:
        if "weights" in kwargs or "pretrained" in kwargs:
            raise ValueError(
                f"{constructor}: avssl backbones start from random init; do not pass weights"
            )
        model = torchvision.models.get_model_builder(constructor)(weights=None, **kwargs)
        # The classifier goes; the pooled features before it are what the tasks consume. fc was
        # the only layer after the global average pool, so the state dict loses only fc.*.
        model.fc = nn.Identity()
        model.feature_dim = dim
        return model

    build.__name__ = f"build_{constructor}"
    build.__doc__ = f"torchvision ``{constructor}(weights=None)`` with ``fc = nn.Identity()``."
    return build


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: how to build it and what it eats and returns.

    Attributes:
        name: key in :data:`BACKBONES`.
        video: input is ``(B, 3, T, H, W)`` if True, else ``(B, 3, H, W)``.
        feature_dim: feature size with the default keyword arguments.
        build: ``build(**kwargs) -> nn.Module``; prefer :func:`build_backbone`.
        torchvision: the torchvision constructor whose model the export loads into, or None
            (then the export loads into this backbone built with the same keyword arguments).
    """

    name: str
    video: bool
    feature_dim: int
    build: Callable[..., nn.Module]
    torchvision: str | None


def _torchvision_spec(name: str, video: bool) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        video=video,
        feature_dim=512,
        build=_torchvision_trunk(name, 512),
        torchvision=name,
    )


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec(
            name="caffenet", video=False, feature_dim=4096, build=CaffeNet, torchvision=None
        ),
        BackboneSpec(
            name="caffenet_small",
            video=False,
            feature_dim=1024,
            build=functools.partial(CaffeNet, width=0.25),
            torchvision=None,
        ),
        BackboneSpec(
            name="convnet_tiny", video=False, feature_dim=256, build=ConvNetTiny, torchvision=None
        ),
        BackboneSpec(name="vgg_av", video=False, feature_dim=512, build=_vgg_av, torchvision=None),
        BackboneSpec(name="vit_tiny", video=False, feature_dim=192, build=_vit, torchvision=None),
        _torchvision_spec("resnet18", video=False),
        _torchvision_spec("r3d_18", video=True),
        _torchvision_spec("r2plus1d_18", video=True),
    )
}


def _spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; expected one of: {', '.join(BACKBONES)}"
        ) from None


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build backbone ``name`` from random init; ``forward(x)`` gives ``(B, feature_dim)``.
    ``kwargs`` go to the builder (:class:`CaffeNet`, :class:`ConvNetTiny`, the ViT, torchvision's
    constructors). Raises ValueError for an unknown name (the message lists the known ones)."""
    return _spec(name).build(**kwargs)


def feature_dim_of(module: nn.Module) -> int:
    """The ``feature_dim`` of a module from :func:`build_backbone` (typed for mypy)."""
    dim = getattr(module, "feature_dim", None)
    if not isinstance(dim, int):
        raise ValueError(f"{type(module).__name__} has no int feature_dim (got {dim!r})")
    return dim


def unwrap_model(module: nn.Module) -> nn.Module:
    """The module inside DDP/DataParallel and ``torch.compile`` wrappers, in any nesting (their
    key prefixes ``module.`` and ``_orig_mod.`` would otherwise end up in a state dict)."""
    while True:
        inner = getattr(module, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        elif isinstance(inner, nn.Module):
            module = inner
        else:
            return module


def _few(keys: list[str], n: int = 5) -> str:
    """The first ``n`` keys, and how many more, for an error message."""
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return f"{keys[:n]}{more}"


def export_backbone(name: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """Trained weights of backbone ``name`` as a plain state dict: tensors only, on the CPU,
    contiguous and copied, BN buffers included; DDP/DataParallel and ``torch.compile`` wrappers
    are removed first.

    The torchvision entries (``resnet18``, ``r3d_18``, ``r2plus1d_18``) load into torchvision's
    model of the same name with ``strict=False``, which reports exactly ``missing_keys ==
    ["fc.weight", "fc.bias"]`` (``fc`` keeps its init, ready to fine-tune; set ``model.fc =
    nn.Identity()`` first for ``strict=True``). The others (torchvision has no CaffeNet with BN)
    load with ``strict=True`` into ``build_backbone(name, **same_kwargs)``: the keyword arguments
    (``width``, ``fc_dim``, ...) are not stored and must be given again.

    Raises:
        ValueError: unknown ``name``, or ``module``'s parameter names do not match that backbone.
    """
    spec = _spec(name)
    module = unwrap_model(module)
    state = module.state_dict()
    # Check the module against a reference built on the meta device (no memory, no init cost), so
    # a wrong module fails here, naming what differs, rather than at load time elsewhere. Our own
    # backbones change their keys with their kwargs (convnet_tiny's depth), so there the class is
    # what must match; torchvision's keys must match those of its default constructor.
    with torch.device("meta"):
        if spec.torchvision is None:
            ref_type = type(spec.build())
            if type(module) is not ref_type:
                raise ValueError(
                    f"module does not match backbone {name!r}: expected a {ref_type.__name__}, "
                    f"got a {type(module).__name__}"
                )
        else:
            ref = torchvision.models.get_model_builder(spec.torchvision)(weights=None)
            expected = {k for k in ref.state_dict() if k not in ("fc.weight", "fc.bias")}
            if set(state) != expected:
                missing = sorted(expected - set(state))
                unexpected = sorted(set(state) - expected)
                raise ValueError(
                    f"module does not match backbone {name!r} (torchvision {spec.torchvision}): "
                    f"missing {_few(missing)}, unexpected {_few(unexpected)}"
                )
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
