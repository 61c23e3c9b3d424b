"""Lab 1: sparse least squares, L(W) = sum_i (X_i W - y_i)^2, minimized by full-batch gradient descent.

Every solver takes a gradient step W - lr * dL/dW and then applies a sparsity operator (none, top-k
projection, soft thresholding, trimmed soft thresholding) or adds an L1 subgradient. Solvers return a
:class:`Trace` of every iterate. A *sweep* runs one solver for several strengths at once, one row of W per
strength, so a whole question costs one loop over the steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

STEPS = 200
LR = 0.02
LAMS = (0.2, 0.5, 1.0, 2.0)  # (d) L1 strengths
PROXIMAL_THRESHOLDS = (0.004, 0.01, 0.02, 0.04)  # (e) = LR * LAMS
TRIMMED_THRESHOLDS = (0.02, 0.04, 0.1, 0.2)  # (f) = LR * (1, 2, 5, 10)


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


def hw_data() -> tuple[np.ndarray, np.ndarray]:
    """The handout's three data points: X of shape (3, 5) and y of shape (3,)."""
    X = np.array([[1, -2, -1, -1, 1], [2, -1, 2, 0, -2], [-1, 0, 2, 2, 1]], dtype=float)
    y = np.array([7, 1, 1], dtype=float)
    return X, y


def loss(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """L(W) = sum_i (X_i W - y_i)^2 for W of shape (d,), or for each row of W of shape (..., d)."""
    return np.sum((W @ X.T - y) ** 2, axis=-1)


def gradient(X: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """dL/dW = sum_i 2 (X_i W - y_i) X_i^T, for W of shape (d,) or for each row of W of shape (..., d)."""
    return 2 * (W @ X.T - y) @ X


def soft_threshold(W, threshold: float) -> np.ndarray:
    """Proximal operator of threshold * ||W||_1: sign(W_i) * max(|W_i| - threshold, 0), elementwise."""
    _check_nonnegative("threshold", threshold)
    return _soft(np.asarray(W, dtype=float), threshold)


def project_topk(W, k: int) -> np.ndarray:
    """Keep the k entries of largest |W_i| along the last axis and zero the rest.

    Ties are broken toward the lower index, so the result is deterministic."""
    W = _with_last_axis(W)
    _check_count("k", k, 1, W.shape[-1])
    return _project(W, k)


def trimmed_soft_threshold(W, threshold: float, n_penalized: int) -> np.ndarray:
    """Soft-threshold only the ``n_penalized`` entries of smallest |W_i| along the last axis and keep the
    others as they are. The penalized entries are exactly those ``project_topk(W, d - n_penalized)`` zeros
    (same tie rule)."""
    W = _with_last_axis(W)
    _check_nonnegative("threshold", threshold)
    _check_count("n_penalized", n_penalized, 0, W.shape[-1])
    return _trimmed(W, threshold, n_penalized)


def gd(X, y, *, steps: int = STEPS, lr: float = LR, W0=None) -> Trace:
    """Plain gradient descent: W^{k+1} = W^k - lr * dL/dW(W^k)."""
    return _descend(X, y, lambda W, G: W - lr * G, ["gd"], steps=steps, lr=lr, W0=W0)[0]


def projected_gd(X, y, *, k: int = 2, steps: int = STEPS, lr: float = LR, W0=None) -> Trace:
    """Projected gradient descent onto ||W||_0 <= k: a gradient step, then :func:`project_topk`."""
    X, y = _check_problem(X, y)
    _check_count("k", k, 1, X.shape[1])
    return _descend(X, y, lambda W, G: _project(W - lr * G, k), [f"projected_gd(k={k})"],
                    steps=steps, lr=lr, W0=W0)[0]


def l1_gd(X, y, *, lam: float, steps: int = STEPS, lr: float = LR, W0=None) -> Trace:
    """(Sub)gradient descent on L + lam * ||W||_1: W - lr * (dL/dW + lam * sign(W)), with sign(0) = 0."""
    return sweep("l1_gd", X, y, [lam], steps=steps, lr=lr, W0=W0)[0]


def proximal_l1(X, y, *, threshold: float, steps: int = STEPS, lr: float = LR, W0=None) -> Trace:
    """Proximal gradient descent for L1: a gradient step, then :func:`soft_threshold` (threshold = lr*lam)."""
    return sweep("proximal_l1", X, y, [threshold], steps=steps, lr=lr, W0=W0)[0]


def trimmed_l1(X, y, *, threshold: float, n_penalized: int = 3, steps: int = STEPS, lr: float = LR,
               W0=None) -> Trace:
    """Proximal gradient descent for trimmed L1: a gradient step, then :func:`trimmed_soft_threshold`."""
    return sweep("trimmed_l1", X, y, [threshold], n_penalized=n_penalized, steps=steps, lr=lr, W0=W0)[0]


_SWEEPABLE = {"l1_gd": "lam", "proximal_l1": "threshold", "trimmed_l1": "threshold"}


def sweep(method: str, X, y, strengths: Sequence[float], *, n_penalized: int = 3, steps: int = STEPS,
          lr: float = LR, W0=None) -> list[Trace]:
    """Run ``method`` ('l1_gd' with lam, 'proximal_l1' or 'trimmed_l1' with threshold) once per strength,
    all in one batched loop; returns one Trace per strength, in order."""
    if method not in _SWEEPABLE:
        raise ValueError(f"method must be one of {sorted(_SWEEPABLE)}, got {method!r}")
    name = _SWEEPABLE[method]
    s = np.asarray(strengths, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"strengths must be a non-empty 1-D sequence of {name} values, got {strengths!r}")
    _check_nonnegative(name, s)
    X, y = _check_problem(X, y)
    _check_count("n_penalized", n_penalized, 0, X.shape[1])
    s = s[:, None]  # one row of W per strength
    update = {
        "l1_gd": lambda W, G: W - lr * (G + s * np.sign(W)),
        "proximal_l1": lambda W, G: _soft(W - lr * G, s),
        "trimmed_l1": lambda W, G: _trimmed(W - lr * G, s, n_penalized),
    }[method]
    labels = [f"{method}({name}={v:g})" for v in s[:, 0]]
    return _descend(X, y, update, labels, steps=steps, lr=lr, W0=W0)


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
    _check_count("k", k, 1, d)
    best_W, best_loss = None, np.inf
    for support in itertools.combinations(range(d), k):
        W = np.zeros(d)
        W[list(support)] = np.linalg.lstsq(X[:, support], y, rcond=None)[0]
        if loss(X, y, W) < best_loss:
            best_W, best_loss = W, float(loss(X, y, W))
    return best_W, best_loss


def comparison_table(traces: Sequence[Trace], X, y, *, k: int = 2) -> list[dict]:
    """One row per exact solution and per run: method, final loss, final support (nonzero indices) and
    whether that support is the support of the best k-sparse solution."""
    W_ls, loss_ls = least_squares_min(X, y)
    W_k, loss_k = best_k_sparse(X, y, k)
    rows = [("least squares (exact)", W_ls, loss_ls), (f"best {k}-sparse (exact)", W_k, loss_k)]
    rows += [(t.label, t.W[-1], float(t.loss[-1])) for t in traces]
    return [{"method": label, "final loss": value, "support": _support(W),
             "optimal support": _support(W) == _support(W_k)} for label, W, value in rows]


def _descend(X, y, update: Callable, labels: list[str], *, steps, lr, W0) -> list[Trace]:
    """Iterate ``W <- update(W, dL/dW(W))`` ``steps`` times from W0, for len(labels) runs at once (one row
    of W per run)."""
    X, y = _check_problem(X, y)
    _check_count("steps", steps, 0, None)
    if not (isinstance(lr, (int, float, np.number)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    d = X.shape[1]
    W0 = np.zeros(d) if W0 is None else _finite_array("W0", W0)
    if W0.shape != (d,):
        raise ValueError(f"W0 must have shape ({d},) to match X of shape {X.shape}, got shape {W0.shape}")
    Ws = np.empty((steps + 1, len(labels), d))
    Ws[0] = W0
    for k in range(steps):
        Ws[k + 1] = update(Ws[k], gradient(X, y, Ws[k]))
    losses = loss(X, y, Ws)
    return [_trace(label, Ws[:, r], losses[:, r]) for r, label in enumerate(labels)]


def _trace(label: str, W: np.ndarray, losses: np.ndarray) -> Trace:
    """A Trace owning read-only copies of its arrays."""
    W, losses = W.copy(), losses.copy()
    W.flags.writeable = losses.flags.writeable = False
    return Trace(label, W, losses)


def _soft(W: np.ndarray, threshold) -> np.ndarray:
    return np.sign(W) * np.maximum(np.abs(W) - threshold, 0.0)


def _largest(W: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k entries of largest |W| along the last axis, ties to the lower index."""
    order = np.argsort(-np.abs(W), axis=-1, kind="stable")
    keep = np.zeros(W.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return keep


def _project(W: np.ndarray, k: int) -> np.ndarray:
    return np.where(_largest(W, k), W, 0.0)


def _trimmed(W: np.ndarray, threshold, n_penalized: int) -> np.ndarray:
    return np.where(_largest(W, W.shape[-1] - n_penalized), W, _soft(W, threshold))


def _support(W: np.ndarray) -> tuple[int, ...]:
    return tuple(np.flatnonzero(W).tolist())


def _check_problem(X, y) -> tuple[np.ndarray, np.ndarray]:
    X, y = _finite_array("X", X), _finite_array("y", y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must have shape (n, d) and y shape (n,), got X {X.shape} and y {y.shape}")
    return X, y


def _with_last_axis(W) -> np.ndarray:
    W = np.asarray(W, dtype=float)
    if W.ndim == 0:
        raise ValueError(f"W must have at least one axis, got the scalar {W!r}")
    return W


def _finite_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, got {value!r}") from e
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return a


def _check_count(name: str, value, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def _check_nonnegative(name: str, value) -> None:
    v = np.asarray(value)
    if not (np.issubdtype(v.dtype, np.number) and np.all(np.isfinite(v)) and np.all(v >= 0)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
