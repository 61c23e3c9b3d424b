"""Lab 1: sparse least squares, L(W) = sum_i (X_i W - y_i)^2, minimized by full-batch gradient descent.

Every method of the lab is one member of a single family of updates (a :class:`Method`):

    V       = W - lr * (dL/dW(W) + lam * sign(W))                 sign(0) = 0
    W_next  = V, except that all but the ``n_kept`` entries of largest |V| are soft-thresholded by threshold

    gd               lam = 0,  threshold = 0
    projected_gd(k)  threshold = inf, n_kept = k     (an infinite soft threshold is hard pruning)
    l1_gd(lam)       lam
    proximal_l1(t)   threshold = t, n_kept = 0
    trimmed_l1(t, n) threshold = t, n_kept = d - n   (only the n smallest entries are penalized)

:func:`run` iterates any list of methods at once, one row of W per method, so a whole question (or the
whole lab) costs one loop over the steps. Each run comes back as a :class:`Trace` of every iterate.

Every solver takes the functions it is built from as keyword arguments: ``gradient`` (dL/dW) and the step
operator it uses (``project_topk``, ``soft_threshold`` or ``trimmed_soft_threshold``), by default this
module's own. A notebook passes the student's functions, so the student's code makes the graded runs; with
the defaults, all methods run in one vectorized loop (labkit's functions on every row at once); with any
other function each run's rows go through the given functions one step, one row at a time.

Size (about 420 lines): the one family of updates, its named methods and the Lab 1 experiments that
compare them, which read best next to each other.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labkit.blanks import student_writes
from labkit.checks import check_int, check_number

STEPS = 200
LR = 0.02
LAMS = (0.2, 0.5, 1.0, 2.0)  # (d) L1 strengths
PROXIMAL_THRESHOLDS = (0.004, 0.01, 0.02, 0.04)  # (e) = LR * LAMS
TRIMMED_THRESHOLDS = (0.02, 0.04, 0.1, 0.2)  # (f) = LR * (1, 2, 5, 10)


@dataclass(frozen=True)
class Method:
    """One update rule of the family in the module docstring, with the label its runs carry."""

    label: str
    lam: float = 0.0
    threshold: float = 0.0
    n_kept: int = 0

    def __post_init__(self):
        check_number("lam", self.lam, low=0)
        check_number("threshold", self.threshold, low=0, inf=True)
        check_int("n_kept", self.n_kept, 0)


@dataclass(frozen=True, eq=False)
class Trace:
    """One run: ``W[k]`` is W^k and ``loss[k]`` is L(W^k) for k = 0..steps; row 0 is the start."""

    label: str
    W: np.ndarray
    loss: np.ndarray

    @property
    def support(self) -> tuple[int, ...]:
        """Indices of the nonzero entries of the final W."""
        return _support(self.W[-1])

    @property
    def support_step(self) -> int:
        """The first step k from which the support of W^k stays equal to the final support."""
        same = np.all((self.W != 0) == (self.W[-1] != 0), axis=1)
        return int(len(same) - np.argmin(same[::-1])) if not same.all() else 0


def hw_data() -> tuple[np.ndarray, np.ndarray]:
    """The handout's three data points: X of shape (3, 5) and y of shape (3,)."""
    X = np.array([[1, -2, -1, -1, 1], [2, -1, 2, 0, -2], [-1, 0, 2, 2, 1]], dtype=float)
    y = np.array([7, 1, 1], dtype=float)
    return X, y


def loss(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """L(W) = sum_i (X_i W - y_i)^2 for W of shape (d,), or for each row of W of shape (..., d)."""
    return np.sum((W @ X.T - y) ** 2, axis=-1)


@student_writes("01_sparse_linear")
def gradient(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """dL/dW = sum_i 2 (X_i W - y_i) X_i^T, for W of shape (d,) or for each row of W of shape (..., d)."""
    return 2 * (W @ X.T - y) @ X


# ---- the step operators ------------------------------------------------------------------------------

@student_writes("01_sparse_linear")
def soft_threshold(W, threshold: float) -> np.ndarray:
    """Proximal operator of threshold * ||W||_1: sign(W_i) * max(|W_i| - threshold, 0), elementwise."""
    check_number("threshold", threshold, low=0)
    return _soft(_finite_array("W", W), threshold)


@student_writes("01_sparse_linear")
def project_topk(W, k: int) -> np.ndarray:
    """Keep the k entries of largest |W_i| along the last axis and zero the rest.

    Ties are broken toward the lower index, so the result is deterministic."""
    W = _with_last_axis(W)
    check_int("k", k, 1, W.shape[-1])
    return np.where(_largest(W, k), W, 0.0)


@student_writes("01_sparse_linear")
def trimmed_soft_threshold(W, threshold: float, n_penalized: int) -> np.ndarray:
    """Soft-threshold only the ``n_penalized`` entries of smallest |W_i| along the last axis and keep the
    others as they are. The penalized entries are exactly those ``project_topk(W, d - n_penalized)`` zeros
    (same tie rule)."""
    W = _with_last_axis(W)
    check_number("threshold", threshold, low=0)
    check_int("n_penalized", n_penalized, 0, W.shape[-1])
    return _trimmed(W, threshold, W.shape[-1] - n_penalized)


def group_soft_threshold(W, threshold: float) -> np.ndarray:
    """Proximal operator of threshold * sum of the rows' L2 norms (Group Lasso, one group per row): each row
    scaled by max(0, 1 - threshold / ||row||_2), so a row whose norm is at most ``threshold`` becomes 0."""
    check_number("threshold", threshold, low=0)
    W = np.asarray(W, dtype=float)
    norms = np.linalg.norm(W, axis=-1, keepdims=True)
    return W * np.maximum(0.0, 1 - threshold / np.maximum(norms, np.finfo(float).tiny))


def proximal_least_squares(A, B, prox, threshold: float, *, lr: float = 0.01, steps: int = 500) -> np.ndarray:
    """W minimizing ||A W - B||_F^2 + penalty by proximal gradient descent from zero: ``steps`` steps of
    W <- prox(W - lr * gradient, threshold), ``prox`` the penalty's proximal operator (e.g.
    :func:`soft_threshold` for L1, :func:`group_soft_threshold` for Group Lasso)."""
    A, B = np.asarray(A, dtype=float), np.asarray(B, dtype=float)
    W = np.zeros((A.shape[1], B.shape[1]))
    for _ in range(steps):
        W = prox(W - 2 * lr * A.T @ (A @ W - B), threshold)
    return W


_OWN_FUNCTIONS = {"gradient": gradient, "project_topk": project_topk, "soft_threshold": soft_threshold,
                  "trimmed_soft_threshold": trimmed_soft_threshold}


# ---- the solvers -------------------------------------------------------------------------------------

def gd(X, y, *, steps: int = STEPS, lr: float = LR, W0=None, gradient=gradient) -> Trace:
    """Plain gradient descent: W^{k+1} = W^k - lr * gradient(X, y, W^k)."""
    return run(X, y, [method("gd", d=_n_weights(X))], steps=steps, lr=lr, W0=W0, gradient=gradient)[0]


def projected_gd(X, y, *, k: int = 2, steps: int = STEPS, lr: float = LR, W0=None, gradient=gradient,
                 project_topk=project_topk) -> Trace:
    """Projected gradient descent onto ||W||_0 <= k: a gradient step, then ``project_topk(V, k)``."""
    return run(X, y, [method("projected_gd", d=_n_weights(X), k=k)], steps=steps, lr=lr, W0=W0,
               gradient=gradient, project_topk=project_topk)[0]


def l1_gd(X, y, *, lam: float, steps: int = STEPS, lr: float = LR, W0=None, gradient=gradient) -> Trace:
    """(Sub)gradient descent on L + lam * ||W||_1: W - lr * (gradient + lam * sign(W)), with sign(0) = 0."""
    return sweep("l1_gd", X, y, [lam], steps=steps, lr=lr, W0=W0, gradient=gradient)[0]


def proximal_l1(X, y, *, threshold: float, steps: int = STEPS, lr: float = LR, W0=None, gradient=gradient,
                soft_threshold=soft_threshold) -> Trace:
    """Proximal gradient descent for L1: a gradient step, then ``soft_threshold(V, threshold)``
    (threshold = lr * lam)."""
    return sweep("proximal_l1", X, y, [threshold], steps=steps, lr=lr, W0=W0, gradient=gradient,
                 soft_threshold=soft_threshold)[0]


def trimmed_l1(X, y, *, threshold: float, n_penalized: int = 3, steps: int = STEPS, lr: float = LR,
               W0=None, gradient=gradient, trimmed_soft_threshold=trimmed_soft_threshold) -> Trace:
    """Proximal gradient descent for trimmed L1: a gradient step, then
    ``trimmed_soft_threshold(V, threshold, n_penalized)``."""
    return sweep("trimmed_l1", X, y, [threshold], n_penalized=n_penalized, steps=steps, lr=lr, W0=W0,
                 gradient=gradient, trimmed_soft_threshold=trimmed_soft_threshold)[0]


def sweep(name: str, X, y, strengths: Sequence[float], *, n_penalized: int = 3, steps: int = STEPS,
          lr: float = LR, W0=None, gradient=gradient, soft_threshold=soft_threshold,
          trimmed_soft_threshold=trimmed_soft_threshold) -> list[Trace]:
    """Run 'l1_gd' (strengths = lams), 'proximal_l1' or 'trimmed_l1' (strengths = thresholds) once per
    strength, all in one loop; returns one Trace per strength, in order. The functions are those of
    :func:`run`."""
    if not _STRENGTH.get(name):
        raise ValueError(f"name={name!r}: allowed is one of {[n for n, s in _STRENGTH.items() if s]}")
    if isinstance(strengths, str) or np.ndim(strengths) != 1 or len(strengths) == 0:
        raise ValueError(f"strengths={strengths!r}: allowed is a non-empty 1-D sequence of "
                         f"{_STRENGTH[name]} values")
    d = _n_weights(X)
    methods = [method(name, s, d=d, n_penalized=n_penalized) for s in strengths]
    return run(X, y, methods, steps=steps, lr=lr, W0=W0, gradient=gradient, soft_threshold=soft_threshold,
               trimmed_soft_threshold=trimmed_soft_threshold)


_STRENGTH = {"gd": None, "projected_gd": None, "l1_gd": "lam", "proximal_l1": "threshold",
             "trimmed_l1": "threshold"}


def method(name: str, strength: float | None = None, *, d: int, k: int = 2, n_penalized: int = 3) -> Method:
    """The member of the family for a handout method on d weights: 'gd', 'projected_gd' (keeps k),
    'l1_gd' (strength = lam), 'proximal_l1' or 'trimmed_l1' (strength = threshold; n_penalized)."""
    if name not in _STRENGTH:
        raise ValueError(f"name={name!r}: allowed is one of {list(_STRENGTH)}")
    if _STRENGTH[name]:
        check_number(_STRENGTH[name], strength, low=0)
    if name == "gd":
        return Method("gd")
    if name == "projected_gd":
        check_int("k", k, 1, d)
        return Method(f"projected_gd(k={k})", threshold=math.inf, n_kept=k)
    if name == "l1_gd":
        return Method(f"l1_gd(lam={strength:g})", lam=strength)
    if name == "proximal_l1":
        return Method(f"proximal_l1(threshold={strength:g})", threshold=strength)
    check_int("n_penalized", n_penalized, 0, d)
    return Method(f"trimmed_l1(threshold={strength:g})", threshold=strength, n_kept=d - n_penalized)


def handout_methods(d: int = 5) -> list[Method]:
    """Every run of questions (b)-(f): gd, projected GD (k=2), L1 for each of LAMS, proximal L1 for each of
    PROXIMAL_THRESHOLDS, trimmed L1 (3 penalized) for each of TRIMMED_THRESHOLDS."""
    return [method("gd", d=d), method("projected_gd", d=d, k=2),
            *(method("l1_gd", lam, d=d) for lam in LAMS),
            *(method("proximal_l1", t, d=d) for t in PROXIMAL_THRESHOLDS),
            *(method("trimmed_l1", t, d=d, n_penalized=3) for t in TRIMMED_THRESHOLDS)]


def run(X, y, methods: Sequence[Method], *, steps: int = STEPS, lr: float = LR, W0=None,
        gradient=gradient, project_topk=project_topk, soft_threshold=soft_threshold,
        trimmed_soft_threshold=trimmed_soft_threshold) -> list[Trace]:
    """Iterate every method ``steps`` times from W0 (default 0), all at once with one row of W per method;
    returns one Trace per method, in order.

    Each step is ``V = W - lr * (gradient(X, y, W) + lam * sign(W))`` followed by the method's operator:
    none when its threshold is 0, ``project_topk(V, n_kept)`` when it is infinite, ``soft_threshold(V,
    threshold)`` when it keeps no entry, else ``trimmed_soft_threshold(V, threshold, d - n_kept)``. Any of
    the four functions may be replaced (e.g. by a student's); they are then called on one row (shape (d,))
    at a time and must return an array of that shape."""
    X, y = _check_problem(X, y)
    d = X.shape[1]
    check_int("steps", steps, 0, None)
    if check_number("lr", lr, allowed="a finite number > 0") <= 0:
        raise ValueError(f"lr={lr!r}: allowed is a finite number > 0")
    W0 = np.zeros(d) if W0 is None else _finite_array("W0", W0)
    if W0.shape != (d,):
        raise ValueError(f"W0 of shape {W0.shape}: allowed is shape ({d},), to match X of shape {X.shape}")
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise TypeError(f"methods={methods!r}: allowed is a non-empty sequence of Method")
    for m in methods:
        check_int(f"n_kept of {m.label}", m.n_kept, 0, d)
    functions = {"gradient": gradient, "project_topk": project_topk, "soft_threshold": soft_threshold,
                 "trimmed_soft_threshold": trimmed_soft_threshold}
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"{name}={fn!r}: allowed is a function")
    Ws = np.empty((steps + 1, len(methods), d))
    Ws[0] = W0
    if functions == _OWN_FUNCTIONS:
        _iterate_family(X, y, methods, Ws, lr)
    else:
        _iterate_rows(X, y, methods, Ws, lr, functions)
    losses = loss(X, y, Ws)
    return [_trace(m.label, Ws[:, r], losses[:, r]) for r, m in enumerate(methods)]


def _iterate_family(X, y, methods: Sequence[Method], Ws: np.ndarray, lr: float) -> None:
    """Fill Ws[1:] with this module's own step, every method at once (one row each)."""
    lam, threshold, n_kept = (np.array([[getattr(m, field)] for m in methods])  # one row per method
                              for field in ("lam", "threshold", "n_kept"))
    for k in range(len(Ws) - 1):
        W = Ws[k]
        Ws[k + 1] = _trimmed(W - lr * (gradient(X, y, W) + lam * np.sign(W)), threshold, n_kept)


def _iterate_rows(X, y, methods: Sequence[Method], Ws: np.ndarray, lr: float, functions: dict) -> None:
    """Fill Ws[1:] through the given functions, one method (row) at a time; each call gets copies."""
    d = X.shape[1]
    operators = [_operator(m, d) for m in methods]
    for k in range(len(Ws) - 1):
        for r, (m, operator) in enumerate(zip(methods, operators, strict=True)):
            W = Ws[k, r]
            V = W - lr * (_call(functions, "gradient", d, X.copy(), y.copy(), W.copy()) + m.lam * np.sign(W))
            if operator == ("zeros",):
                V = np.zeros(d)
            elif operator:
                V = _call(functions, operator[0], d, V, *operator[1:])
            Ws[k + 1, r] = V


def _operator(m: Method, d: int) -> tuple:
    """The step operator of a method as (function name, arguments after V); () for none."""
    if m.threshold == 0:
        return ()
    if m.threshold == math.inf:  # hard pruning: keep the n_kept largest (none kept: all zero)
        return ("project_topk", m.n_kept) if m.n_kept else ("zeros",)
    if m.n_kept == 0:
        return ("soft_threshold", m.threshold)
    return ("trimmed_soft_threshold", m.threshold, d - m.n_kept)


def _call(functions: dict, name: str, d: int, *args) -> np.ndarray:
    """``functions[name](*args)`` as a float array of shape (d,), or an error naming the function."""
    out = functions[name](*args)
    try:
        out = np.asarray(out, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must return an array of numbers, got {out!r:.80}") from e
    if out.shape != (d,):
        raise ValueError(f"{name} must return an array of shape ({d},) for a W of shape ({d},), "
                         f"got shape {out.shape}")
    return out


# ---- ground truth ------------------------------------------------------------------------------------

def least_squares_min(X, y) -> tuple[np.ndarray, float]:
    """The exact minimum of L with no sparsity constraint: (W, L(W)). For an underdetermined X (fewer data
    points than weights) the minimum is 0 and W is the minimum-norm solution."""
    X, y = _check_problem(X, y)
    W = np.linalg.lstsq(X, y, rcond=None)[0]
    return W, float(loss(X, y, W))


def best_k_sparse(X, y, k: int) -> tuple[np.ndarray, float]:
    """The minimum of L subject to ||W||_0 <= k, by least squares on every support of size k: (W, L(W)).
    Among supports with equal loss the first in lexicographic order wins."""
    X, y = _check_problem(X, y)
    d = X.shape[1]
    check_int("k", k, 1, d)
    best_W, best_loss = None, np.inf
    for support in itertools.combinations(range(d), k):
        W = np.zeros(d)
        W[list(support)] = np.linalg.lstsq(X[:, support], y, rcond=None)[0]
        if loss(X, y, W) < best_loss:
            best_W, best_loss = W, float(loss(X, y, W))
    return best_W, best_loss


def comparison_table(traces: Sequence[Trace], X, y, *, k: int = 2) -> list[dict]:
    """One row per exact solution and per run: method, final loss, final support (nonzero indices), whether
    that is the support of the best k-sparse solution, and from which step a run's support stayed final."""
    W_ls, loss_ls = least_squares_min(X, y)
    W_k, loss_k = best_k_sparse(X, y, k)
    rows = [("least squares (exact)", W_ls, loss_ls, "-"), (f"best {k}-sparse (exact)", W_k, loss_k, "-")]
    rows += [(t.label, t.W[-1], float(t.loss[-1]), t.support_step) for t in traces]
    return [{"method": label, "final loss": value, "support": _support(W),
             "optimal support": _support(W) == _support(W_k), "support final from step": step}
            for label, W, value, step in rows]


# ---- helpers -----------------------------------------------------------------------------------------

def _trace(label: str, W: np.ndarray, losses: np.ndarray) -> Trace:
    """A Trace owning read-only copies of its arrays."""
    W, losses = W.copy(), losses.copy()
    W.flags.writeable = losses.flags.writeable = False
    return Trace(label, W, losses)


@student_writes("01_sparse_linear")  # a blank's answer: blanked with it
def _soft(W: np.ndarray, threshold) -> np.ndarray:
    """sign(W) * max(|W| - threshold, 0), written as W - clip(W, -threshold, threshold): the same values,
    but zeroed entries come out as +0.0 rather than -0.0, and threshold = inf zeros everything."""
    return W - np.minimum(np.maximum(W, -threshold), threshold)


@student_writes("01_sparse_linear")  # a blank's answer: blanked with it
def _largest(W: np.ndarray, k) -> np.ndarray:
    """Boolean mask of the k entries of largest |W| along the last axis, ties to the lower index; k may be
    an array broadcasting against W[..., :1] (one count per row)."""
    order = np.argsort(-np.abs(W), axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")  # rank[i] = position of entry i in that order
    return rank < k


@student_writes("01_sparse_linear")  # a blank's answer: blanked with it
def _trimmed(W: np.ndarray, threshold, n_kept) -> np.ndarray:
    return np.where(_largest(W, n_kept), W, _soft(W, threshold))


def _support(W: np.ndarray) -> tuple[int, ...]:
    return tuple(np.flatnonzero(W).tolist())


def _n_weights(X) -> int:
    shape = np.shape(X)
    if len(shape) != 2:
        raise ValueError(f"X of shape {shape}: allowed is shape (n, d)")
    return shape[1]


def _check_problem(X, y) -> tuple[np.ndarray, np.ndarray]:
    X, y = _finite_array("X", X), _finite_array("y", y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X of shape {X.shape} and y of shape {y.shape}: allowed are X (n, d) and y (n,)")
    return X, y


def _with_last_axis(W) -> np.ndarray:
    W = _finite_array("W", W)
    if W.ndim == 0 or W.shape[-1] == 0:
        raise ValueError(f"W of shape {W.shape}: allowed is an array with at least one entry on its last "
                         "axis")
    return W


def _finite_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}={value!r}: allowed is an array of numbers") from e
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}={value!r}: allowed is an array of finite numbers")
    return a

