"""Answers as JSON: how a notebook's values (numbers, strings, lists, dicts, numpy arrays, torch tensors) are
stored in reference and answer files, and how two stored values are compared under a :class:`Rule`.

Arrays and tensors are stored with their library, dtype and shape, so a reference decodes to what the
notebook produced. Shared by the notebook's grader (:mod:`labkit.grading`), the scoring of submissions
(:mod:`labkit.scoring`) and the properties (:mod:`labkit.properties`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from labkit.checks import check_number


@dataclass(frozen=True)
class Rule:
    """How numbers are compared: exactly when both tolerances are None, else
    ``|got - expected| <= atol + rtol * |expected|`` elementwise (a missing tolerance counts as 0)."""

    atol: float | None = None
    rtol: float | None = None

    def __post_init__(self):
        for name in ("atol", "rtol"):
            v = getattr(self, name)
            if v is not None:
                check_number(name, v, low=0, allowed="None or a finite number >= 0")

    @property
    def exact(self) -> bool:
        return self.atol is None and self.rtol is None

    def to_json(self):
        if self.exact:
            return "exact"
        return {k: v for k, v in (("atol", self.atol), ("rtol", self.rtol)) if v is not None}

    @classmethod
    def from_json(cls, obj) -> Rule:
        return cls() if obj == "exact" else cls(obj.get("atol"), obj.get("rtol"))

    def __str__(self):
        return "exact" if self.exact else ", ".join(f"{k}={v:g}" for k, v in self.to_json().items())

    def matches(self, expected: np.ndarray, got: np.ndarray) -> np.ndarray:
        """Elementwise: does ``got`` match ``expected`` (NaN matches NaN)?"""
        if self.exact or expected.dtype == bool or got.dtype == bool:
            same = expected == got
            if expected.dtype.kind == "f" and got.dtype.kind == "f":
                same |= np.isnan(expected) & np.isnan(got)
            return same
        return np.isclose(got, expected, atol=self.atol or 0.0, rtol=self.rtol or 0.0, equal_nan=True)


def encode(value):
    """A JSON-ready form of ``value``; arrays and tensors become ``{"$array": library, "dtype", "shape",
    "data"}``. Raises TypeError for anything else than the supported types."""
    torch = sys.modules.get("torch")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str) or k.startswith("$")]
        if bad:
            raise TypeError(f"dict key {bad[0]!r}: allowed are strings not starting with '$'")
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"arrays must hold bools, integers or floats, got dtype {value.dtype}")
        return {"$array": "numpy", "dtype": str(value.dtype), "shape": list(value.shape),
                "data": value.tolist()}
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_complex():
            raise TypeError(f"tensors must hold bools, integers or floats, got dtype {t.dtype}")
        return {"$array": "torch", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": t.tolist()}
    raise TypeError(f"cannot store a value of type {type(value).__name__} as a reference: {value!r:.80}")


def decode(obj):
    """The value :func:`encode` made ``obj`` from (arrays as numpy arrays, tensors as torch tensors)."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, dict) and "$array" in obj:
        if obj["$array"] == "torch":
            import torch

            return torch.tensor(obj["data"], dtype=getattr(torch, obj["dtype"])).reshape(obj["shape"])
        return np.array(obj["data"], dtype=obj["dtype"]).reshape(obj["shape"])
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    return obj


def compare(expected, got, rule: Rule, where: str = "") -> list[str]:
    """Problems found comparing two encoded values (empty when they match), each prefixed by where it is
    inside the value, e.g. ``['lam=0.2'][3]``."""
    at = f"at {where}: " if where else ""
    e_num, g_num = _as_array(expected), _as_array(got)
    if e_num is not None and g_num is not None:
        return _compare_arrays(e_num, g_num, rule, at)
    if _kind(expected) != _kind(got):
        return [f"{at}expected {describe(expected)}, got {describe(got)}"]
    if isinstance(expected, dict):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if missing or extra:
            return [f"{at}keys differ: missing {missing}, unexpected {extra}"]
        return [p for k in expected for p in compare(expected[k], got[k], rule, f"{where}[{k!r}]")]
    if isinstance(expected, list):
        if len(expected) != len(got):
            return [f"{at}expected a list of length {len(expected)}, got length {len(got)}"]
        return [p for i, (e, g) in enumerate(zip(expected, got, strict=True))
                for p in compare(e, g, rule, f"{where}[{i}]")]
    return [] if expected == got else [f"{at}expected {expected!r}, got {got!r}"]


def _as_array(obj) -> np.ndarray | None:
    if isinstance(obj, (bool, int, float)):
        return np.asarray(obj)
    if isinstance(obj, dict) and "$array" in obj:
        return np.asarray(obj["data"], dtype=bool if obj["dtype"] == "bool" else None).reshape(obj["shape"])
    return None


def _compare_arrays(expected: np.ndarray, got: np.ndarray, rule: Rule, at: str) -> list[str]:
    if expected.shape != got.shape:
        return [f"{at}expected shape {expected.shape}, got shape {got.shape}"]
    if (expected.dtype == bool) != (got.dtype == bool):
        return [f"{at}expected dtype {expected.dtype}, got dtype {got.dtype}"]
    bad = ~rule.matches(expected, got)
    if not bad.any():
        return []
    diff = np.where(bad, np.abs(got.astype(float) - expected.astype(float)), -1.0)
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    e, g, d = expected[worst].item(), got[worst].item(), diff[worst]
    if expected.ndim == 0:
        return [f"{at}expected {e!r}, got {g!r} (|diff| {d:.3g}, rule {rule})"]
    msg = (f"{at}{int(bad.sum())} of {bad.size} elements differ (rule {rule}); worst at index "
           f"{tuple(int(i) for i in worst)}: expected {e!r}, got {g!r} (|diff| {d:.3g})")
    if expected.size <= 12:
        msg += f"\n      expected {expected.tolist()}\n      got      {got.tolist()}"
    return [msg]


def _kind(obj) -> str:
    if isinstance(obj, dict) and "$array" in obj:
        return "array"
    return {dict: "dict", list: "list", str: "str", bool: "bool"}.get(type(obj), type(obj).__name__)


def describe(obj) -> str:
    """A short description of an encoded value for messages: its kind and a preview."""
    if _kind(obj) == "array":
        return f"an array of dtype {obj['dtype']} and shape {tuple(obj['shape'])}"
    return f"a {_kind(obj)} ({obj!r:.60})"


def encode_answer(value):
    """:func:`encode`, or a ``{"$raised": ...}`` marker for a value of a type that cannot be stored."""
    try:
        return encode(value)
    except TypeError as e:
        return {"$raised": str(e)}
