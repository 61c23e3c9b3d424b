"""Argument checks shared by labkit's modules, so every bad count reads the same way:
``name=value: allowed is ...`` (TypeError for a wrong type, ValueError for a wrong value)."""

from __future__ import annotations

import math
import numbers

import numpy as np


def check_int(name: str, value, low: int, high: int | None = None, allowed: str | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in ``low..high`` (``high`` None: no upper
    bound); else TypeError / ValueError naming ``name``, the value and ``allowed`` (by default
    "an int >= low" or "an int in low..high")."""
    if allowed is None:
        allowed = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}): allowed is {allowed}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value!r}: allowed is {allowed}")
    return int(value)


def check_integers(name: str, values) -> np.ndarray:
    """``values`` (a sequence, array or tensor of ints) as a flat int64 array; TypeError when they are
    floats or bools (which a cast would truncate or misread), naming ``name``."""
    a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if a.size and a.dtype.kind not in "iu":
        raise TypeError(f"{name} holds {a.dtype} values: allowed are ints (a cast would truncate them)")
    return a.astype(np.int64).ravel()


def check_number(name: str, value, low: float | None = None, allowed: str | None = None,
                 inf: bool = False) -> float:
    """``value`` as a float if it is a real number (not a bool), finite unless ``inf``, and >= ``low`` (None:
    no bound); else TypeError / ValueError naming ``name``, the value and ``allowed`` (by default "a finite
    number >= low")."""
    if allowed is None:
        allowed = ("a number" if inf else "a finite number") + ("" if low is None else f" >= {low:g}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}): allowed is {allowed}")
    if math.isnan(value) or (math.isinf(value) and not inf) or (low is not None and value < low):
        raise ValueError(f"{name}={value!r}: allowed is {allowed}")
    return float(value)
