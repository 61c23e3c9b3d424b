"""What a Lab 1 run did, as rows for a printed table (:func:`labkit.grading.format_table`): the numbers the
handout's written questions are about, printed by the run so that the notebook's prose need not quote
them (prose says what to look for; the table says what this run found).

Lab 1 (:mod:`labkit.sparse`): :func:`convergence` (how and how far each run converged),
:func:`support_history` (which entries a run kept, step by step) and :func:`early_steps` (the loss and
support at chosen steps).
A run is anything with ``label``, ``W`` (steps + 1 iterates, one per row) and ``loss`` (steps + 1 values),
as :class:`labkit.sparse.Trace`. A value that does not exist (a loss that never gets below the tolerance)
is ``"-"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NONE = "-"


def convergence(runs: Sequence, truth, *, tol: float = 1e-10, window: int = 50,
                near: float = 0.1) -> list[dict]:
    """One row per run, measured against ``truth`` (W*, e.g. the best 2-sparse solution): the final loss
    L; the step from which L stays below ``tol``; the exact zeros of the final W; the sign changes of W's
    entries over the last ``window`` steps (an entry jittering around 0 changes sign again and again); the
    step from which every entry that is zero in W* (``W_off``) stays within ``near`` of 0; and the largest
    |W_i - W*_i| over the entries nonzero in W* (the shrinkage, or "bias", of the weights to keep)."""
    truth = np.asarray(truth, dtype=float)
    zero, kept = truth == 0, truth != 0
    rows = []
    for run in runs:
        W, loss = np.asarray(run.W, dtype=float), np.asarray(run.loss, dtype=float)
        if W.ndim != 2 or W.shape[1] != truth.size or len(loss) != len(W):
            raise ValueError(f"{run.label}: W must have shape (steps + 1, {truth.size}) and loss one value "
                             f"per row of W, got {W.shape} and {loss.shape}")
        last = W[-(window + 1):]
        flips = int(np.sum(np.sign(last[1:]) * np.sign(last[:-1]) < 0))
        rows.append({"method": run.label, "final L": float(loss[-1]),
                     f"L < {tol:g} from step": _from_step(loss < tol),
                     "exact zeros": int(np.sum(W[-1] == 0)),
                     f"sign changes, last {window}": flips,
                     f"|W_off| <= {near:g} from step":
                         _from_step(np.all(np.abs(W[:, zero]) <= near, axis=1)),
                     "max |W - W*| on support":
                         float(np.max(np.abs(W[-1, kept] - truth[kept]))) if kept.any() else 0.0})
    return rows


def support_history(run) -> list[dict]:
    """The supports (indices of the nonzero entries) W took, in order, each with its first and last step.
    Step 0 (the start) is left out."""
    rows = []
    for step, W in enumerate(np.asarray(run.W)[1:], start=1):
        support = _support(W)
        if rows and rows[-1]["support"] == support:
            rows[-1]["to step"] = step
        else:
            rows.append({"method": run.label, "support": support, "from step": step, "to step": step})
    return rows


def early_steps(runs: Sequence, steps: Sequence[int]) -> list[dict]:
    """One row per run: L and the support of W at each step of ``steps``."""
    rows = []
    for run in runs:
        row = {"method": run.label}
        for k in steps:
            if not 0 <= k < len(run.loss):
                raise ValueError(f"step {k}: {run.label} has steps 0..{len(run.loss) - 1}")
            row[f"L at step {k}"] = float(run.loss[k])
            row[f"support at step {k}"] = _support(np.asarray(run.W)[k])
        rows.append(row)
    return rows


def _from_step(holds: np.ndarray) -> int | str:
    """The first step from which ``holds`` stays true to the end, or ``NONE`` if it is false at the end."""
    holds = np.asarray(holds, dtype=bool)
    if not holds[-1]:
        return NONE
    return 0 if holds.all() else int(len(holds) - np.argmin(holds[::-1]))


def _support(W) -> tuple[int, ...]:
    return tuple(np.flatnonzero(W).tolist())
