"""Loading checkpoints safely (``torch.load(weights_only=True)``), with errors that name the file.

Design notes: docs/design/data.md, "avssl.checkpoints".
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

_SHOW = 8  # keys listed per kind of mismatch (the count says how many more)


def checkpoint_file(
    spec: str | os.PathLike[str], *, expected: str = "a run directory or a checkpoint.pt"
) -> Path:
    """The checkpoint a command-line spec names: ``RUN/checkpoint.pt`` for a run directory, else
    the file itself. Raises :class:`FileNotFoundError` saying what was ``expected``."""
    p = Path(spec)
    ck = p / "checkpoint.pt" if p.is_dir() else p
    if not ck.is_file():
        raise FileNotFoundError(f"{spec}: no checkpoint (expected {expected})")
    return ck


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, as a dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint that loads safely (truncated, not a torch
            file, or holding pickled objects other than tensors and primitives), or it does not
            hold a mapping. The message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        # the line naming the refused global (torch's wording varies by version), not the advice
        why = next((ln for ln in lines if "global" in ln.lower()), lines[0] if lines else "")
        raise ValueError(
            f"{p}: refused: the checkpoint holds pickled objects other than tensors and plain "
            f"values, which could run code when loaded (weights_only=True: {why}); "
            "load only checkpoints written by avssl-train, or re-save the weights alone"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{p}: not a readable checkpoint (truncated or not a torch file: {msg})"
        ) from None
    if not isinstance(ck, Mapping):
        raise ValueError(f"{p}: not an avssl checkpoint (holds a {type(ck).__name__}, not a dict)")
    return dict(ck)


def _listing(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_weights(
    module: nn.Module, state: Mapping[str, Any], path: str | os.PathLike[str], *, what: str = ""
) -> None:
    """``module.load_state_dict(state)`` (strict), with a :class:`ValueError` naming ``path``
    (and ``what``, e.g. "model") and listing missing keys, unexpected keys and shape mismatches
    when ``state`` does not fit ``module`` -- e.g. a checkpoint of another task or backbone."""
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path}: {what or 'weights'} is a {type(state).__name__}, not a state dict"
        )
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
        label = f" ({what})" if what else ""
        raise ValueError(
            f"{path}: the weights{label} do not fit the {type(module).__name__} built from its "
            f"configuration -- {'; '.join(parts)} (a checkpoint of another task, backbone or "
            "model size?)"
        )
    module.load_state_dict(state)
