"""The network an evaluation measures: a trained run, a checkpoint, an exported backbone, or the
random-initialisation baseline -- one spec string for every ``avssl-eval`` command.

``MODEL`` forms (:func:`load_encoder`):

* ``runs/sl`` -- a run directory (its ``checkpoint.pt``);
* ``runs/sl/checkpoint.pt`` -- a training checkpoint (``avssl-train``);
* ``random:convnet_tiny`` -- the same backbone at random initialisation (seeded), the baseline
  every table needs; keyword arguments from ``model_kwargs`` (e.g. ``{"channels": [16, 32]}``)
  or copied from a run with ``like=RUN`` so the baseline has the trained network's exact shape.

The backbone is taken out of the task model (the shared tower of Shuffle & Learn / O3N / arrow of
time: state-dict keys under ``encoder.net.`` or ``net.``) and returned in eval mode with a
:class:`ModelInfo` describing it (what reports print next to every number).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avssl.checkpoints import checkpoint_file, load_checkpoint, load_weights
from avssl.models.backbones import BACKBONES, build_backbone

__all__ = ["ModelInfo", "load_encoder", "backbone_state"]

_PREFIXES = ("encoder.net.", "net.")


@dataclass
class ModelInfo:
    source: str  # "run" | "checkpoint" | "random"
    spec: str  # the MODEL string as given
    backbone: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # the pretext task of a trained run
    path: str | None = None  # checkpoint path
    fingerprint: str = ""  # of the weights (random: of backbone + kwargs + seed); feature caches
    in_channels: int = 3  # the first layer's input channels (3 = RGB frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backbone_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's entries of a task model's state dict (prefix removed)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model_state.items():
        for pre in _PREFIXES:
            if k.startswith(pre):
                out[k[len(pre) :]] = v
                break
    return out


def _fingerprint(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _checkpoint(spec: str) -> Path:
    return checkpoint_file(
        spec, expected="a run directory with checkpoint.pt, a checkpoint file, or random:BACKBONE"
    )


def _in_channels(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            return int(m.in_channels)
    return 3


def load_encoder(
    spec: str,
    *,
    model_kwargs: dict[str, Any] | None = None,
    like: str | None = None,
    seed: int = 0,
) -> tuple[nn.Module, ModelInfo]:
    """The backbone named by ``spec`` (see the module docstring), in eval mode, on the CPU."""
    if spec.startswith("random:"):
        name = spec.split(":", 1)[1]
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)}")
        kwargs = dict(model_kwargs or {})
        if like is not None:
            ck = load_checkpoint(_checkpoint(like))
            if ck["backbone"] != name:
                raise ValueError(f"like={like}: its backbone is {ck['backbone']}, not {name}")
            kwargs = {**json.loads(ck.get("backbone_kwargs", "{}")), **kwargs}
        torch.manual_seed(seed)
        net = build_backbone(name, **kwargs)
        fp = hashlib.blake2b(
            json.dumps([name, kwargs, seed], sort_keys=True).encode(), digest_size=8
        ).hexdigest()
        info = ModelInfo("random", spec, name, kwargs, fingerprint=f"random-{fp}")
    else:
        path = _checkpoint(spec)
        ck = load_checkpoint(path)
        name = ck["backbone"]
        kwargs = {**json.loads(ck.get("backbone_kwargs", "{}")), **(model_kwargs or {})}
        net = build_backbone(name, **kwargs)
        state = backbone_state(ck["model"])
        if not state:
            raise ValueError(f"{path}: no backbone weights (keys under {' or '.join(_PREFIXES)})")
        load_weights(net, state, path, what=f"{name} backbone")
        source = "run" if Path(spec).is_dir() else "checkpoint"
        info = ModelInfo(
            source, spec, name, kwargs, task=ck.get("task"), path=str(path),
            fingerprint=_fingerprint(state),
        )  # fmt: skip
    net.eval()
    info.in_channels = _in_channels(net)
    return net, info
