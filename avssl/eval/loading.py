"""The network an evaluation measures: one loader for the MODEL argument of every ``avssl-eval``
command (a run directory, a checkpoint, ``random:BACKBONE``, ``random:RUN``, ``pixels``,
``mfcc``). Design notes: docs/design/models_tasks_eval.md, "avssl/eval/loading.py".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avssl.checkpoints import checkpoint_file, load_checkpoint, load_weights

CLIP_BACKBONES = frozenset({"r3d_18", "r2plus1d_18"})
_PREFIXES = ("encoder.net.", "net.")
_AUDIO_PREFIXES = ("audio_net.", "audio.")

#: The MFCC baseline's recipe (librosa 0.11; :func:`avssl.eval.audio.mfcc_features`).
MFCC_RECIPE: dict[str, Any] = {
    "sample_rate": 16000,
    "n_mfcc": 20,
    "n_mels": 40,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "fmin": 0.0,
    "fmax": 8000.0,
    "delta_width": 9,
    "stats": ["mean", "std"],
}


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
    like: str | None = None  # random: the trained run (or checkpoint) whose network this is

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def digest(value: Any) -> str:
    """A short hash of a JSON-able value (fingerprints, cache keys)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def backbone_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone's entries of a task model's state dict (prefix removed)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model_state.items():
        for pre in _PREFIXES:
            if k.startswith(pre):
                out[k[len(pre) :]] = v
                break
    return out


def _audio_state(model_state: dict[str, torch.Tensor], keys: list[str]) -> dict[str, Any]:
    """The tower's entries of a checkpoint's state dict: under ``audio_net.`` or ``audio.``,
    at the inner prefix where all of the tower's own ``keys`` are found."""
    for top in _AUDIO_PREFIXES:
        sub = {k[len(top) :]: v for k, v in model_state.items() if k.startswith(top)}
        inner = sorted({k[: -len(keys[0])] for k in sub if k.endswith(keys[0])},
                       key=lambda q: (len(q), q))  # fmt: skip
        for q in inner:
            if (not q or q.endswith(".")) and all(q + k in sub for k in keys):
                return {k: sub[q + k] for k in keys}
    return {}


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


def _json_arg(value: Any, what: str) -> dict[str, Any]:
    """A JSON object given as text (or already a dict); ``{}`` for None or empty text."""
    if value is None or value == "":
        return {}
    out = json.loads(value) if isinstance(value, str) else value
    if not isinstance(out, dict):
        raise ValueError(f"{what} must be a JSON object, got {value!r}")
    return dict(out)


def _in_channels(net: nn.Module) -> int:
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            return int(m.in_channels)
    return 3


@dataclass(frozen=True)
class _Tower:
    """Where a checkpoint keeps one kind of tower and how to build it."""

    what: str  # in messages: "backbone", "audio backbone"
    weights: str  # in weight-loading messages: "backbone", "audio tower"
    key: str  # the checkpoint entry naming it; its keywords are under KEY_kwargs
    names: Callable[[], Mapping[str, Any]]  # the registry
    build: Callable[..., nn.Module]
    state: Callable[[Path, str, dict[str, Any], nn.Module], dict[str, Any]]  # or raise


def _vision_state(path: Path, name: str, model: dict[str, Any], net: nn.Module) -> dict[str, Any]:
    state = backbone_state(model)
    if not state:
        raise ValueError(f"{path}: no backbone weights (keys under {' or '.join(_PREFIXES)})")
    return state


def _audio_tower_state(path: Path, name: str, model: dict[str, Any], net: nn.Module) -> dict:
    keys = list(net.state_dict())
    state = _audio_state(model, keys)
    if not state:
        sample = [k for k in model if k.startswith(_AUDIO_PREFIXES)][:5]
        raise ValueError(
            f"{path}: no {name} weights under {' or '.join(_AUDIO_PREFIXES)} (expected keys "
            f"ending in e.g. {keys[0]!r}; found {sample or 'none'})"
        )
    return state


def _vision_tower() -> _Tower:
    from avssl.models.backbones import BACKBONES, build_backbone

    return _Tower(
        "backbone", "backbone", "backbone", lambda: BACKBONES, build_backbone, _vision_state
    )


def _audio_tower() -> _Tower:
    from avssl.models.audio import AUDIO_BACKBONES, build_audio_backbone

    return _Tower("audio backbone", "audio tower", "audio_backbone", lambda: AUDIO_BACKBONES,
                  build_audio_backbone, _audio_tower_state)  # fmt: skip


def _random_tower(
    name: str, tower: _Tower, like: str | None
) -> tuple[str, str | None, dict[str, Any] | None]:
    """``random:NAME``: (the tower's name, the run it copies, that run's checkpoint). NAME is a
    tower (``--like RUN`` copies that run's keywords) or a run / checkpoint (``random:RUN``: its
    tower, the same as ``random:TOWER --like RUN``)."""
    if name not in tower.names():
        if not Path(name).exists():
            known = ", ".join(sorted(tower.names()))
            raise ValueError(f"unknown {tower.what} {name!r} (nor a run directory or "
                             f"checkpoint for random:RUN); available: {known}")  # fmt: skip
        if like is not None and Path(like) != Path(name):
            raise ValueError(f"random:{name} and like={like}: name the run once")
        like, ck = name, load_checkpoint(_checkpoint(name))
        if not ck.get(tower.key):
            raise ValueError(f"random:{name}: its checkpoint has no {tower.what} (a "
                             f"{ck.get('task', 'avssl-train')} run)")  # fmt: skip
        return str(ck[tower.key]), like, ck
    if like is None:
        return name, None, None
    ck = load_checkpoint(_checkpoint(like))
    if ck.get(tower.key) != name:
        raise ValueError(f"like={like}: its {tower.what} is {ck.get(tower.key)}, not {name}")
    return name, like, ck


def run_dir_of(ref: str | None) -> Path | None:
    """The run directory that ``ref`` (a run directory or checkpoint) names: the directory, or
    a checkpoint's folder when that holds a run (config.yaml or metrics.jsonl); else None."""
    if ref is None:
        return None
    p = Path(ref)
    if p.is_dir():
        return p
    runs = p.is_file() and any((p.parent / n).is_file() for n in ("config.yaml", "metrics.jsonl"))
    return p.parent if runs else None


def _load_tower(
    spec: str, tower: _Tower, model_kwargs: dict[str, Any] | None, like: str | None, seed: int
) -> tuple[nn.Module, ModelInfo, dict[str, Any] | None]:
    """The tower ``spec`` names, its info, and the checkpoint it came from (``random:`` with
    ``like``: that run's; else None)."""
    ck: dict[str, Any] | None = None
    if spec.startswith("random:"):
        name, like, ck = _random_tower(spec.split(":", 1)[1], tower, like)
        kwargs = {**_json_arg(ck and ck.get(f"{tower.key}_kwargs"), f"{tower.key}_kwargs"),
                  **(model_kwargs or {})}  # fmt: skip
        torch.manual_seed(seed)
        net = tower.build(name, **kwargs)
        fp = f"random-{digest([name, kwargs, seed])}"
        info = ModelInfo("random", spec, name, kwargs, fingerprint=fp, like=like)
    else:
        path = _checkpoint(spec)
        ck = load_checkpoint(path)
        name = str(ck.get(tower.key) or "")
        if not name:
            task = ck.get("task", "avssl-train")
            raise ValueError(f"{path}: no {tower.weights} (no {tower.key!r} entry; a {task} "
                             "checkpoint without one?)")  # fmt: skip
        kwargs = {**_json_arg(ck.get(f"{tower.key}_kwargs"), f"{tower.key}_kwargs"),
                  **(model_kwargs or {})}  # fmt: skip
        net = tower.build(name, **kwargs)
        state = tower.state(path, name, ck.get("model", {}), net)
        load_weights(net, state, path, what=f"{name} {tower.weights}")
        source = "run" if Path(spec).is_dir() else "checkpoint"
        info = ModelInfo(source, spec, name, kwargs, task=ck.get("task"), path=str(path),
                         fingerprint=_fingerprint(state))  # fmt: skip
    net.eval()
    info.in_channels = _in_channels(net)
    return net, info, ck


def load_encoder(
    spec: str, *, model_kwargs: dict[str, Any] | None = None, like: str | None = None,
    seed: int = 0,
) -> tuple[nn.Module, ModelInfo]:  # fmt: skip
    """The vision backbone named by ``spec`` (module docstring), in eval mode, on the CPU
    (``like`` applies to ``random:`` only; a checkpoint ignores it)."""
    net, info, _ = _load_tower(spec, _vision_tower(), model_kwargs, like, seed)
    return net, info


def load_audio_model(
    spec: str, *, model_kwargs: dict[str, Any] | None = None,
    frontend: dict[str, Any] | None = None, like: str | None = None, seed: int = 0,
) -> tuple[Any, ModelInfo]:  # fmt: skip
    """The audio encoder (front end + tower, :class:`avssl.models.audio.AudioEncoder`) named by
    ``spec``, in eval mode, on the CPU.

    ``frontend`` overrides front-end keys (the checkpoint's ``audio_frontend``, else the 48 kHz
    log-spectrogram); ``model_kwargs`` the tower's keywords. The ModelInfo's ``kwargs`` hold the
    tower's keywords; the front end is ``encoder.frontend.config``.
    """
    from avssl.models.audio import AudioConvNet, AudioEncoder, build_frontend

    if like is not None and not spec.startswith("random:"):
        raise ValueError("like= applies to random:NAME baselines only")
    net, info, ck = _load_tower(spec, _audio_tower(), model_kwargs, like, seed)
    fe_cfg = {**_json_arg(ck and ck.get("audio_frontend"), "audio_frontend"), **(frontend or {})}
    assert isinstance(net, AudioConvNet)
    return AudioEncoder(build_frontend(fe_cfg), net).eval(), info


@dataclass
class LoadedModel:
    """A tower or a hand-crafted baseline (``net is None``) with what results and caches need."""

    net: nn.Module | None  # a vision backbone, an AudioEncoder, or None (pixels, mfcc)
    info: dict[str, Any]  # the result's "model"
    fingerprint: str
    tag: str  # for default output file names
    backbone: str  # "pixels" / "mfcc" for the baselines
    clip: bool = False  # (B, 3, T, H, W) input
    train_config: dict[str, Any] | None = None
    run_dir: Path | None = None  # the trained run measured (its results go to RUN/eval)
    baseline_of: Path | None = None  # random: the run it is the baseline of (RUN/eval/random)


def _checkpoint_config(path: str | None) -> dict[str, Any] | None:
    try:
        ck = load_checkpoint(checkpoint_file(path)) if path is not None else {}
    except FileNotFoundError:
        return None
    cfg = json.loads(ck["config"]) if isinstance(ck.get("config"), str) else None
    return cfg if isinstance(cfg, dict) else None


def model_tag(info: ModelInfo, *, with_fingerprint: bool = True) -> str:
    """For default file names: ``random-BACKBONE-<fingerprint[:6]>`` (without the fingerprint if
    asked), the run directory's name, or ``<folder>-<stem>`` of a checkpoint file."""
    if info.source == "random":
        fp = info.fingerprint.removeprefix("random-")[:6]
        return f"random-{info.backbone}-{fp}" if with_fingerprint else f"random-{info.backbone}"
    p = Path(info.spec)
    return p.name if p.is_dir() else f"{p.parent.name}-{p.stem}"


def load_model(
    spec: str, *, audio: bool = False, model_kwargs: dict[str, Any] | None = None,
    like: str | None = None, seed: int = 0, frontend: dict[str, Any] | None = None,
    pixels_size: int = 16, n_mfcc: int = MFCC_RECIPE["n_mfcc"],
) -> LoadedModel:  # fmt: skip
    """Any MODEL of a frozen-feature command: a vision backbone (``audio=False``; baseline
    ``pixels`` at ``pixels_size``) or an audio encoder (``audio=True``; baseline ``mfcc`` with
    ``n_mfcc`` coefficients)."""
    if spec == ("mfcc" if audio else "pixels"):
        if audio:
            recipe = {**MFCC_RECIPE, "n_mfcc": n_mfcc}
            fp = "mfcc-" + digest(recipe)
            return LoadedModel(None, {"source": "mfcc", "spec": "mfcc", **recipe,
                                      "fingerprint": fp}, fp, "mfcc", "mfcc")  # fmt: skip
        if pixels_size < 1:
            raise ValueError(f"--pixels-size must be >= 1, got {pixels_size}")
        pix = {"source": "pixels", "spec": "pixels", "size": pixels_size,
               "dim": 3 * pixels_size * pixels_size}  # fmt: skip
        return LoadedModel(None, pix, f"pixels-{pixels_size}", f"pixels{pixels_size}", "pixels")
    if audio:
        from avssl.models.audio import frontend_config

        net, info = load_audio_model(spec, model_kwargs=model_kwargs, frontend=frontend,
                                     like=like, seed=seed)  # fmt: skip
        tower = {"channels": list(net.net.channels), "input_norm": net.net.input_norm}
        as_dict = {**info.to_dict(), "frontend": frontend_config(net.frontend), "tower": tower}
    else:
        net, info = load_encoder(spec, model_kwargs=model_kwargs, like=like, seed=seed)
        as_dict = info.to_dict()
    tag = model_tag(info, with_fingerprint=not audio)
    cfg = _checkpoint_config(info.like if info.source == "random" else info.path)
    return LoadedModel(net, as_dict, info.fingerprint, tag, info.backbone,
                       info.backbone in CLIP_BACKBONES, cfg,
                       Path(spec) if info.source == "run" else None,
                       run_dir_of(info.like) if info.source == "random" else None)  # fmt: skip


@dataclass
class LoadedAV:
    """A two-tower audio-visual network (:class:`avssl.models.av.AVNet`) and its run's config."""

    model: Any  # avssl.models.av.AVNet, eval mode
    cfg: Any  # the run's TrainConfig
    path: str

    @property
    def frames(self) -> int:
        return int(self.cfg.data.av_frames)

    @property
    def frame_step(self) -> int:
        return int(self.cfg.data.av_frame_step)


def load_av_model(spec: str) -> LoadedAV:
    """An audio-visual run (directory or checkpoint) as its model in eval mode, on the CPU;
    ``random:RUN`` is the same network at random initialisation (seed 0): the baseline."""
    from avssl.config import config_from_dict
    from avssl.models.av import AVNet
    from avssl.tasks import TASKS
    from avssl.tasks.av import build_pair_model
    from avssl.train_config import TrainConfig

    random_init = spec.startswith("random:")
    ck_path = checkpoint_file(spec.split(":", 1)[1] if random_init else spec)
    ck = load_checkpoint(ck_path)
    task = ck.get("task")
    if task not in TASKS or not TASKS[task].pair:
        raise ValueError(f"{spec}: a {task} run; localization needs an audio-visual run "
                         "(ave_net, l3_net, avol_net, av_sync)")  # fmt: skip
    cfg = config_from_dict(TrainConfig, json.loads(ck["config"]), source=str(ck_path))
    torch.manual_seed(0)
    model = build_pair_model(cfg)
    assert isinstance(model, AVNet)
    if not random_init:
        load_weights(model, ck["model"], ck_path, what="model")
    model.eval()
    return LoadedAV(model, cfg, ("random:" if random_init else "") + str(ck_path))


def _colour_tracker(backbone: str, o: Any, centres: Any, **kw: Any) -> nn.Module:
    """A :class:`ColourTracker` with the ``tracking`` options ``o``, built after seeding 0."""
    from avssl.models.tracking import ColourTracker

    torch.manual_seed(0)
    return ColourTracker(
        backbone, centres=centres, temperature=o.temperature, normalize=o.normalize,
        embed_dim=o.embed_dim, head=o.head, head_layers=o.head_layers,
        head_width=o.head_width, coords=o.coords, input=o.input, **kw,
    )  # fmt: skip


def load_tracker(spec: str) -> tuple[Any, dict[str, Any]]:
    """A colourisation tracker (:class:`avssl.models.tracking.ColourTracker`) in eval mode on the
    CPU and its run's config (``{}`` for ``random:BACKBONE``, a default tracking network)."""
    from avssl.config import config_from_dict
    from avssl.models.backbones import BACKBONES
    from avssl.models.tracking import TrackingOptions

    random_init = spec.startswith("random:")
    what = spec.split(":", 1)[1] if random_init else spec
    if random_init and what in BACKBONES:
        o = TrackingOptions()
        kw: dict[str, Any] = {"channels": (32, 64)} if what == "convnet_tiny" else {}
        return _colour_tracker(what, o, torch.zeros(o.colours, 2), **kw).eval(), {}
    path = checkpoint_file(
        Path(what),
        expected="a colorization_tracking run directory, its checkpoint.pt, random:RUN, "
        "random:BACKBONE, pixels[:S] or lab-pixels[:S]",
    )
    ck = load_checkpoint(path)
    if ck.get("task") != "colorization_tracking":
        raise ValueError(f"{path}: a {ck.get('task')!r} checkpoint, not colorization_tracking")
    cfg = json.loads(ck["config"])
    o = config_from_dict(TrackingOptions, cfg.get("tracking", {}), source=str(path))
    aug = cfg.get("aug", {})
    model = _colour_tracker(
        ck["backbone"], o, ck["model"]["centres"],
        mean=tuple(aug.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(aug.get("std", (0.229, 0.224, 0.225))),
        **json.loads(ck.get("backbone_kwargs", "{}")),
    )  # fmt: skip
    if not random_init:
        load_weights(model, ck["model"], path, what="model")
    return model.eval(), cfg
