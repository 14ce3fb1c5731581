"""What every ``avssl-prep`` subcommand is made of: a :class:`Command` (its ``--help`` texts, its
options, its run), the options the preps share, the argument types, and configs filled from the
parsed options by the typed loader (:mod:`avssl.config`, as ``avssl-train --set`` fills its own).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from avssl.config import config_from_dict

from .shards import parse_shard

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One ``avssl-prep`` subcommand (an entry of ``data_prep.cli.COMMANDS``).

    ``run(args)`` prepares the set and returns the text to print (None when it printed as it
    went); bad input raises and becomes one line and exit status 2 (``avssl.errors.run_cli``).
    ``merge(out, params, opened)`` is set for the per-file preps that ``--shard`` through
    :mod:`data_prep.shards`: it reruns the prep on ``params`` with the shards' results by path.
    """

    name: str
    help: str
    description: str
    options: tuple[Any, ...]  # rows of :func:`add_options`, in --help order
    run: Callable[[argparse.Namespace], str | None]
    merge: Callable[[Path, dict[str, Any], dict[str, Any]], Any] | None = None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def offsets(text: str) -> tuple[float, float]:
    """``MIN:MAX`` seconds with ``0 < MIN <= MAX``."""
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        msg = f"expected MIN:MAX seconds such as 0.5:2, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return lo, hi


#: The settings of the options the preps share (less the help text, which each command words
#: for what the option does there); a row of :func:`add_options` may change one, e.g. a default.
OUT = {"type": Path, "required": True, "metavar": "OUT"}
OPTIONAL_OUT = {"type": Path, "default": None, "metavar": "DIR"}  # a default folder without it
WORKERS = {"type": positive_int, "default": None, "metavar": "W"}
SEED = {"type": int, "default": 0}
SHARD = {"type": parse_shard, "default": None, "metavar": "I/N"}
TIMEOUT = {"type": float, "metavar": "S"}


def add_options(p: argparse._ActionsContainer, rows: tuple[Any, ...]) -> None:
    """One option (or positional argument) per row ``(flag, settings, help)``, in order; a row
    that is a function adds its own (e.g. a group of options): ``row(p)``."""
    for row in rows:
        if callable(row):
            row(p)
        else:
            flag, settings, text = row
            p.add_argument(flag, **settings, help=text)


def call_with_options(
    func: Callable[..., Any], args: argparse.Namespace, *positional: Any, **kw: Any
) -> str:
    """``func(*positional, ...).summary()``, the keyword-only parameters of ``func`` taken from
    the parsed options of the same name, unless given in ``kw``."""
    given = vars(args)
    for p in inspect.signature(func).parameters.values():
        if p.kind is p.KEYWORD_ONLY and p.name in given:
            kw.setdefault(p.name, given[p.name])
    return str(func(*positional, **kw).summary())


def rerun_with_results(
    prep: Callable[..., Any], results: str, out: Path, params: dict[str, Any], opened: Any
) -> Any:
    """A per-file prep's :attr:`Command.merge`: ``prep`` run again on the shards' ``params``
    (``root`` first) with their results by path as its parameter ``results``."""
    params = dict(params)
    return prep(params.pop("root"), out, **params, **{results: opened})


def config_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """A ``cls`` config from the parsed options named like its fields, then ``values``, with the
    checks of :func:`avssl.config.config_from_dict`; fields without an option keep defaults."""
    given = vars(args)
    data = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}  # type: ignore[arg-type]
    return config_from_dict(cls, {**data, **values}, source="the command line")


def add_config_options(
    g: argparse._ActionsContainer, defaults: Any, rows: tuple[tuple[Any, ...], ...]
) -> None:
    """One option per row ``(flag, type, metavar, help[, field])`` that sets the config field
    named like the flag (or ``field``), defaulting to that field of ``defaults``; the help is
    formatted with ``d=defaults`` (``"default {d.tau_max}"``)."""
    for flag, kind, metavar, text, *field in rows:
        dest = field[0] if field else flag[2:].replace("-", "_")
        g.add_argument(
            flag,
            type=kind,
            default=getattr(defaults, dest),
            metavar=metavar,
            dest=dest,
            help=text.format(d=defaults),
        )
