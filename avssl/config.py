"""Configs: typed dataclass defaults <- a YAML file <- ``--set a.b=c`` overrides.

Strict: an unknown key or a wrong type raises :class:`ValueError` naming the dotted key.
Design notes (supported types, an example): docs/design/data.md, "avssl.config".
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from avssl.data.manifest import atomic_write_text

T = TypeVar("T")

SET_SOURCE = "--set"
_TRUE_TEXT = frozenset({"true", "1", "yes", "y", "on"})
_FALSE_TEXT = frozenset({"false", "0", "no", "n", "off"})
_NONE_TEXT = frozenset({"null", "none", "~", ""})


def add_config_options(p: argparse.ArgumentParser, config_help: str, set_help: str) -> None:
    """``--config YAML`` and the repeatable ``--set KEY=VALUE`` (into ``overrides``): the two
    inputs of :func:`load_config` on a command line."""
    p.add_argument(
        "--config",
        default=None,
        metavar="YAML",
        help=f"{config_help}; a bare name or configs/NAME.yaml that is not a file here is the "
        "copy shipped with avssl (avssl/configs), so the README's paths work from any folder",
    )
    p.add_argument(
        SET_SOURCE,
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=set_help,
    )


#: The configurations that ship with avssl (``avssl/configs``; ``configs/`` in a clone links there).
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def resolve_config(yaml_path: str | os.PathLike[str]) -> Path:
    """The file ``--config`` names: the path itself when it exists; else, for a bare name or a
    path under a folder named ``configs`` (``configs/demo_shuffle_learn.yaml``, as the README
    writes them), the configuration of that name shipped with avssl, so the README's commands
    also run from any folder of an installed wheel. Otherwise the path as given (reading it
    then fails naming it)."""
    path = Path(yaml_path)
    if path.exists() or not (path.parent == Path(".") or path.parent.name == "configs"):
        return path
    name = path.name if path.suffix else path.name + ".yaml"
    packaged = PACKAGED_CONFIGS / name
    return packaged if packaged.is_file() else path


def load_config(
    cls: type[T],
    yaml_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls()`` (every field has a default), apply ``base`` (a mapping, e.g. a task's own
    defaults), the YAML file, then each override.

    Args:
        cls: a dataclass type whose fields all have defaults (nested dataclasses included).
        yaml_path: a YAML file holding a mapping of the fields that differ from the defaults
            (nested mappings for nested dataclasses); ``None`` for the defaults alone.
        overrides: ``"a.b=c"`` strings, applied in order after the file (later ones win).

    Raises:
        ValueError: an unknown key, a value of the wrong type, a malformed override, or a file
            that does not hold a mapping or is not plain YAML (``yaml.safe_load``: no tags that
            build Python objects).
    """
    cfg = _defaults(cls)
    if base:
        cfg = _apply_mapping(cfg, base, prefix="", source="<task defaults>")
    if yaml_path is not None:
        path = resolve_config(yaml_path)
        try:  # safe_load: plain YAML only; a tag such as !!python/object is refused
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            why = (
                "refused: a tag that builds a Python object (such as !!python/object); a "
                "configuration holds plain values only"
                if isinstance(e, yaml.constructor.ConstructorError)
                else "not valid YAML"
            )
            raise ValueError(f"{path}: {why}: {' '.join(str(e).split())}") from None
        if data is not None:
            cfg = _apply_mapping(cfg, data, prefix="", source=str(path))
    return apply_overrides(cfg, overrides)


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "<dict>") -> T:
    """Build ``cls()`` and apply ``data`` with the same checks as a YAML file.

    Used to reload the resolved config that :func:`dump_config` wrote to a run directory;
    ``source`` names where ``data`` came from in error messages.
    """
    return _apply_mapping(_defaults(cls), data, prefix="", source=source)


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return a copy of ``cfg`` with each ``"a.b=c"`` override applied; ``cfg`` is not changed.

    The value is read as YAML (``[1, 2]``, ``null``, ``1e-3``), and the raw text is tried when
    that does not fit the field, so ``name=123`` sets a ``str`` field to ``"123"``. Booleans also
    accept ``true/false/1/0/yes/no`` in any case; optional fields accept ``null``/``none``.
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a sequence of 'KEY=VALUE' strings, got {overrides!r}")
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not all(parts):
            raise ValueError(
                f"{SET_SOURCE} {item!r}: expected KEY=VALUE with a dotted KEY, e.g. optim.lr=1e-3"
            )
        cfg = _set_path(cfg, parts, text, prefix="")
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dicts and lists of ``cfg``'s init fields (tuples as lists, paths as str)."""
    if not _is_instance(cfg):
        raise TypeError(f"config_to_dict expects a dataclass instance, got {type(cfg).__name__}")
    out = _plain(cfg)
    assert isinstance(out, dict)
    return out


def dump_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` (every field, resolved) as YAML to ``path`` atomically; return the path."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, text)
    return Path(path)


def _is_instance(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _defaults(cls: type[T]) -> T:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass type, got {cls!r}")
    try:
        return cls()
    except TypeError as e:
        raise TypeError(f"{cls.__name__}: every config field needs a default ({e})") from e


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls``'s init fields, in declaration order (cached)."""
    if cls in _FIELD_TYPES:
        return _FIELD_TYPES[cls]
    try:
        hints = typing.get_type_hints(cls)
    except NameError as e:
        raise TypeError(
            f"{cls.__qualname__}: cannot resolve field annotations ({e}); define config "
            "dataclasses and the types they name at module level"
        ) from e
    found = _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}
    return found


def _unknown_key(key: str, valid: Sequence[str], prefix: str, source: str) -> ValueError:
    dotted = prefix + key
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
    where = f"under {prefix[:-1]!r}" if prefix else "at the top level"
    return ValueError(
        f"{source}: unknown config key {dotted!r}{hint}; valid keys {where}: {', '.join(valid)}"
    )


def _apply_mapping(obj: Any, data: Any, *, prefix: str, source: str) -> Any:
    """``obj`` with the fields in ``data`` replaced (recursing into nested dataclasses)."""
    if not isinstance(data, Mapping):
        what = repr(prefix[:-1]) if prefix else "the config"
        raise ValueError(
            f"{source}: {what} must be a mapping of field names to values, "
            f"got {type(data).__name__} {data!r}"
        )
    types_ = _field_types(type(obj))
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in types_:
            raise _unknown_key(str(key), list(types_), prefix, source)
        changes[key] = _convert(
            value, types_[key], key=prefix + key, source=source, current=getattr(obj, key)
        )
    return dataclasses.replace(obj, **changes) if changes else obj


def _set_path(obj: Any, parts: list[str], text: str, *, prefix: str) -> Any:
    """``obj`` with the field at dotted ``parts`` set from the ``--set`` text ``text``."""
    types_ = _field_types(type(obj))
    key = parts[0]
    if key not in types_:
        raise _unknown_key(key, list(types_), prefix, SET_SOURCE)
    tp, current, dotted = types_[key], getattr(obj, key), prefix + key
    if len(parts) == 1:
        value = _convert_text(text, tp, key=dotted, current=current)
    else:
        if not _is_instance(current):
            section = _dataclass_arm(tp)
            if section is None:
                raise ValueError(
                    f"{SET_SOURCE}: {dotted!r} is a field of type {_type_name(tp)}, not a section; "
                    f"cannot set {'.'.join([dotted, *parts[1:]])!r}"
                )
            current = _defaults(section)
        value = _set_path(current, parts[1:], text, prefix=dotted + ".")
    return dataclasses.replace(obj, **{key: value})


def _dataclass_arm(tp: Any) -> type | None:
    """The dataclass type in ``tp`` (``Section`` or ``Section | None``), if any."""
    arms = _union_arms(tp) or (tp,)
    return next((a for a in arms if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


def _convert_text(text: str, tp: Any, *, key: str, current: Any) -> Any:
    """Convert ``--set`` text: as YAML first, then as the raw string if that does not fit."""
    try:
        parsed: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    try:
        return _convert(parsed, tp, key=key, source=SET_SOURCE, current=current, text=True)
    except ValueError as as_yaml:
        if isinstance(parsed, str) and parsed == text:
            raise
        try:  # e.g. name=123 for a str field, or a Literal of strings that YAML reads as bools
            return _convert(text, tp, key=key, source=SET_SOURCE, current=current, text=True)
        except ValueError:
            raise as_yaml from None


def _union_arms(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    arms = _union_arms(tp)
    if arms is not None:
        return " | ".join(_type_name(a) for a in arms)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return f"one of {', '.join(repr(a) for a in args)}"
    if origin is not None:
        return f"{origin.__name__}[{', '.join('...' if a is ... else _type_name(a) for a in args)}]"
    return getattr(tp, "__name__", repr(tp))


def _convert(
    value: Any, tp: Any, *, key: str, source: str, current: Any = None, text: bool = False
) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in the field's type.

    ``text`` marks values from ``--set``, which may spell booleans and ``None`` as words.
    ``current`` is the field's value now; a mapping for a nested dataclass updates it.
    """
    if tp is Any:
        return value
    arms = _union_arms(tp)
    if arms is not None:
        return _convert_union(value, arms, tp, key=key, source=source, current=current, text=text)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        for choice in args:
            if type(value) is type(choice) and value == choice:  # True is not 1 here
                return choice
        by_lower = {str(a).lower(): a for a in args}
        close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1)
        raise _mismatch(
            value, tp, key, source, f"; did you mean {by_lower[close[0]]!r}?" if close else ""
        )
    if origin in (list, tuple, dict):
        return _convert_collection(value, tp, key=key, source=source, text=text)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _mismatch(value, tp, key, source, " (a section: give a mapping of its fields)")
        base = current if isinstance(current, tp) else _defaults(tp)
        return _apply_mapping(base, value, prefix=key + ".", source=source)
    if tp in (bool, int, float, str, Path):
        out = _convert_scalar(value, tp, text=text)
        if out is _NO_FIT:
            raise _mismatch(value, tp, key, source)
        return out
    raise TypeError(f"{key}: unsupported config field type {_type_name(tp)}")


def _mismatch(value: Any, tp: Any, key: str, source: str, extra: str = "") -> ValueError:
    return ValueError(
        f"{source}: {key}={value!r}: expected {_type_name(tp)}, got {type(value).__name__}{extra}"
    )


def _convert_union(
    value: Any, arms: tuple[Any, ...], tp: Any, *, key: str, source: str, current: Any, text: bool
) -> Any:
    """``value`` in the first arm of ``X | Y | None`` it fits."""
    if type(None) in arms and (
        value is None or (text and isinstance(value, str) and value.lower() in _NONE_TEXT)
    ):
        return None
    others = [a for a in arms if a is not type(None)]
    if len(others) == 1 and _dataclass_arm(others[0]) is not None:
        # Section | None: the section's own error (e.g. a nested unknown key) says more
        return _convert(value, others[0], key=key, source=source, current=current, text=text)
    for arm in others:
        try:
            return _convert(value, arm, key=key, source=source, current=current, text=text)
        except ValueError:
            continue
    raise _mismatch(value, tp, key, source)


def _convert_collection(value: Any, tp: Any, *, key: str, source: str, text: bool) -> Any:
    """``value`` as a ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]`` or ``dict[K, V]`` field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(value, tp, key, source)
        k_tp, v_tp = args if args else (Any, Any)
        return {
            _convert(k, k_tp, key=f"{key}[{k!r}]", source=source, text=text): _convert(
                v, v_tp, key=f"{key}[{k!r}]", source=source, text=text
            )
            for k, v in value.items()
        }
    if not isinstance(value, (list, tuple)):
        raise _mismatch(value, tp, key, source)
    if origin is tuple and not (len(args) == 2 and args[1] is ...) and args != ():
        if len(value) != len(args):
            raise _mismatch(value, tp, key, source, f" of length {len(value)}")
        elem_types = list(args)
    else:
        elem_types = [args[0] if args else Any] * len(value)
    items = [
        _convert(v, t, key=f"{key}[{i}]", source=source, text=text)
        for i, (v, t) in enumerate(zip(value, elem_types, strict=True))
    ]
    return items if origin is list else tuple(items)


_NO_FIT = object()


def _convert_scalar(value: Any, tp: type, *, text: bool) -> Any:
    """``value`` as a ``bool``, ``int``, ``float``, ``str`` or ``Path`` field; ``_NO_FIT`` when
    it does not fit. Only ``bool`` fields take booleans (``True`` is not the int 1 here)."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if text and isinstance(value, (str, int)) else ""
        return True if word in _TRUE_TEXT else False if word in _FALSE_TEXT else _NO_FIT
    if isinstance(value, bool):
        return _NO_FIT
    if tp is int:
        return value if isinstance(value, int) else _NO_FIT
    if tp is float:
        if isinstance(value, (int, float)):
            return float(value)
        try:  # YAML 1.1 reads 1e-3 as a string
            return float(value) if isinstance(value, str) else _NO_FIT
        except ValueError:
            return _NO_FIT
    if tp is str:
        return value if isinstance(value, str) else _NO_FIT
    return Path(value) if isinstance(value, (str, Path)) else _NO_FIT


def _plain(obj: Any) -> Any:
    if _is_instance(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
