"""Argument checks shared by the library: one message format for a bad count or number."""

from __future__ import annotations

import numpy as np


def int_arg(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def float_arg(
    name: str, value: object, lo: float, hi: float = float("inf"), *, lo_open: bool = False
) -> float:
    left = "(" if lo_open else "["
    bound = (
        f"in {left}{lo}, {hi}]"
        if np.isfinite(hi)
        else f"finite and {'>' if lo_open else '>='} {lo}"
    )
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {bound}, got {value!r}") from None
    ok_lo = v > lo if lo_open else v >= lo
    if not (ok_lo and v <= hi) or not np.isfinite(v):  # NaN fails the comparisons
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v
