"""Properties a measured answer must have, judged on the student's own run.

A recorded reference says what one machine measured on one profile and data set; a property says what
the handout asks about and holds on any data set and device: "every layer is 70% sparse", "fine-tuning
recovers to within 3 points of this run's dense accuracy", "accuracy falls as q grows". The grader uses
a property where no recorded reference exists for the profile / data set.

A property is a small JSON-ready dict made by the constructors below; :func:`problems` judges an
answer (in :func:`labkit.answers.encode`'s form) against it. Every number leaf of the answer counts
(bools as 0/1); ``ref`` may name an earlier question, whose answer is then the bound (a number, or a
dict with the same keys, compared key by key).
"""

from __future__ import annotations

import math

import numpy as np

ORDERS = ("decreasing", "increasing")


def between(lo: float, hi: float) -> dict:
    """Every leaf in ``[lo, hi]``."""
    return {"between": [_number("lo", lo), _number("hi", hi)]}


def equals(x, atol: float = 0.0) -> dict:
    """Every leaf equal to ``x`` (within ``atol``)."""
    return {"equals": _number("x", x), "atol": _tolerance("atol", atol)}


def at_least(ref, margin: float = 0.0) -> dict:
    """Every leaf ``>= ref - margin``; ``ref`` a number or an earlier question's id."""
    return {"at_least": _ref(ref), "margin": _tolerance("margin", margin)}


def at_most(ref, margin: float = 0.0) -> dict:
    """Every leaf ``<= ref + margin``; ``ref`` a number or an earlier question's id."""
    return {"at_most": _ref(ref), "margin": _tolerance("margin", margin)}


def same_as(question: str, atol: float = 0.0) -> dict:
    """The same structure as an earlier question's answer, every leaf within ``atol`` of its counterpart."""
    if not isinstance(question, str) or not question:
        raise TypeError(f"question={question!r}: allowed is a question id (a non-empty string)")
    return {"same_as": question, "atol": _tolerance("atol", atol)}


def ordered(order: str, slack: float = 0.0) -> dict:
    """The leaves, in order (dict insertion order, list order), monotone up to ``slack``."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: allowed are {', '.join(ORDERS)}")
    return {"ordered": order, "slack": _tolerance("slack", slack)}


def all_of(*specs: dict) -> dict:
    """Every one of ``specs`` holds."""
    if not specs or not all(isinstance(s, dict) for s in specs):
        raise TypeError(f"all_of{specs!r}: allowed is one or more property dicts")
    return {"all_of": list(specs)}


_FORMS = {"between", "equals", "at_least", "at_most", "same_as", "ordered", "all_of"}


def validate(spec) -> dict:
    """``spec`` if it is a property made by this module's constructors; TypeError otherwise."""
    if not isinstance(spec, dict) or len(_FORMS & set(spec)) != 1:
        forms = ", ".join(sorted(_FORMS))
        raise TypeError(f"expect={spec!r:.120}: allowed is a property from labkit.properties (one of "
                        f"{forms})")
    for sub in spec.get("all_of", []):
        validate(sub)
    return spec


def referenced(spec: dict) -> list[str]:
    """The question ids ``spec`` reads besides the answer itself."""
    if "all_of" in spec:
        return [q for s in spec["all_of"] for q in referenced(s)]
    ref = spec.get("at_least", spec.get("at_most"))
    if isinstance(ref, dict):
        return [ref["question"]]
    return [spec["same_as"]] if "same_as" in spec else []


def describe(spec: dict) -> str:
    """``spec`` in words, for messages."""
    if "all_of" in spec:
        return " and ".join(describe(s) for s in spec["all_of"])
    if "between" in spec:
        return f"every value in [{spec['between'][0]:g}, {spec['between'][1]:g}]"
    if "equals" in spec:
        return f"every value == {spec['equals']:g}" + (f" (within {spec['atol']:g})" if spec["atol"] else "")
    if "same_as" in spec:
        return f"the same as {spec['same_as']!r}" + (f" (within {spec['atol']:g})" if spec["atol"] else "")
    if "ordered" in spec:
        return f"values {spec['ordered']} in order" + (f" (slack {spec['slack']:g})" if spec["slack"] else "")
    key = "at_least" if "at_least" in spec else "at_most"
    ref = spec[key]
    bound = repr(ref["question"]) + "'s answer" if isinstance(ref, dict) else f"{ref:g}"
    sign = "-" if key == "at_least" else "+"
    return f"every value {'>=' if key == 'at_least' else '<='} {bound}" + (
        f" {sign} {spec['margin']:g}" if spec["margin"] else "")


def problems(spec: dict, answer, answers: dict) -> list[str]:
    """What is wrong with ``answer`` (encoded) under ``spec`` (empty when it holds); ``answers`` maps
    earlier question ids to their encoded answers, for properties that name one."""
    if "all_of" in spec:
        return [p for s in spec["all_of"] for p in problems(s, answer, answers)]
    leaves = _leaves(answer)
    if not leaves:  # None: not numbers; []: nothing measured (e.g. a loop that raised before its first step)
        return [f"expected numbers, got {answer!r:.80}"]
    if "between" in spec:
        lo, hi = spec["between"]
        return _failing(leaves, lambda k, v: lo <= v <= hi, describe(spec))
    if "equals" in spec:
        x, atol = spec["equals"], spec["atol"]
        return _failing(leaves, lambda k, v: abs(v - x) <= atol, describe(spec))
    if "ordered" in spec:
        sign = -1 if spec["ordered"] == "decreasing" else 1
        bad = [f"{leaves[i][0]} -> {leaves[i + 1][0]}: {leaves[i][1]:.6g} -> {leaves[i + 1][1]:.6g}"
               for i in range(len(leaves) - 1)
               if sign * (leaves[i + 1][1] - leaves[i][1]) < -spec["slack"]]
        return [f"expected {describe(spec)}; out of order at " + "; ".join(bad[:3])] if bad else []
    if "same_as" in spec:
        other = _answer_of(spec["same_as"], answers)
        if isinstance(other, str):
            return [other]
        other_leaves = _leaves(other)
        if other_leaves is None or [k for k, _ in other_leaves] != [k for k, _ in leaves]:
            return [f"expected {describe(spec)}; the structures differ"]
        return _failing([(k, v - w) for (k, v), (_, w) in zip(leaves, other_leaves, strict=True)],
                        lambda k, d: abs(d) <= spec["atol"], describe(spec))
    key = "at_least" if "at_least" in spec else "at_most"
    bound = _bound(spec[key], answers)
    if isinstance(bound, str):
        return [bound]
    sign = 1 if key == "at_least" else -1

    def holds(k, v):
        b = bound(k)
        return b is not None and sign * (v - b) >= -spec["margin"]

    return _failing(leaves, holds, describe(spec))


def _bound(ref, answers: dict):
    """A function ``leaf key -> bound`` (None when the key has no counterpart), or a problem string."""
    if not isinstance(ref, dict):
        return lambda k: ref
    other = _answer_of(ref["question"], answers)
    if isinstance(other, str):
        return other
    other_leaves = _leaves(other)
    if other_leaves is None:
        return f"the answer of {ref['question']!r} is not a number or a dict of numbers"
    if len(other_leaves) == 1 and other_leaves[0][0] == "":
        return lambda k: other_leaves[0][1]
    table = dict(other_leaves)
    return table.get


def _answer_of(question: str, answers: dict):
    if question not in answers:
        return f"needs the answer of {question!r}, which was not given (its cell did not run or failed)"
    return answers[question]


def _leaves(value, key: str = "") -> list[tuple[str, float]] | None:
    """``[(path, number)]`` of every number in an encoded value, or None if something is not a number."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return [(key, float(value))]
    if isinstance(value, dict) and "$array" in value:
        flat = np.asarray(value["data"], dtype=float).ravel()
        return [(f"{key}[{i}]", float(v)) for i, v in enumerate(flat)]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    out = []
    for k, v in items:
        sub = _leaves(v, f"{key}[{k}]" if key else str(k))
        if sub is None:
            return None
        out += sub
    return out


def _failing(leaves, holds, text: str) -> list[str]:
    bad = [(k, v) for k, v in leaves if not (math.isfinite(v) and holds(k, v))]
    if not bad:
        return []
    shown = ", ".join(f"{k or 'value'} = {v:.6g}" for k, v in bad[:4])
    more = f" (and {len(bad) - 4} more)" if len(bad) > 4 else ""
    return [f"expected {text}; {len(bad)} of {len(leaves)} fail: {shown}{more}"]


def _number(name: str, value) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name}={value!r}: allowed is a finite number")
    return float(value)


def _tolerance(name: str, value) -> float:
    value = _number(name, value)
    if value < 0:
        raise ValueError(f"{name}={value!r}: allowed is a finite number >= 0")
    return value


def _ref(ref):
    if isinstance(ref, str):
        if not ref:
            raise ValueError("ref='': allowed is a number or a non-empty question id")
        return {"question": ref}
    return _number("ref", ref)
