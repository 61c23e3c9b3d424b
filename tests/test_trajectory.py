"""labkit.trajectory: the measurements a run prints instead of prose quoting numbers."""

from types import SimpleNamespace

import numpy as np
import pytest

from labkit import sparse, trajectory


def run(label, W, loss):
    return SimpleNamespace(label=label, W=np.asarray(W, dtype=float), loss=np.asarray(loss, dtype=float))


def test_convergence_measures_steps_zeros_jitter_and_bias_against_the_truth():
    truth = np.array([0.0, 2.0])
    W = [[0.0, 0.0], [0.5, 1.0], [0.05, 1.5], [-0.05, 1.9], [0.05, 1.9]]
    [row] = trajectory.convergence([run("r", W, [4.0, 1.0, 1e-3, 1e-12, 1e-12])], truth, window=2, near=0.1)
    assert row == {"method": "r", "final L": 1e-12, "L < 1e-10 from step": 3, "exact zeros": 0,
                   "sign changes, last 2": 2, "|W_off| <= 0.1 from step": 2,
                   "max |W - W*| on support": pytest.approx(0.1)}


def test_convergence_says_never_with_a_dash_and_checks_shapes():
    [row] = trajectory.convergence([run("r", [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0])], [0.0, 1.0])
    assert row["L < 1e-10 from step"] == row["|W_off| <= 0.1 from step"] == trajectory.NONE
    assert row["exact zeros"] == 0 and row["max |W - W*| on support"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        trajectory.convergence([run("r", [[0.0, 0.0]], [1.0, 2.0])], [0.0, 1.0])


def test_support_history_and_early_steps_on_lab1_projected_gd():
    X, y = sparse.hw_data()
    run_c = sparse.projected_gd(X, y, k=2)
    history = trajectory.support_history(run_c)
    assert history[0]["from step"] == 1 and history[-1]["to step"] == len(run_c.loss) - 1
    assert history[-1]["support"] == run_c.support and history[-1]["from step"] == run_c.support_step
    assert all(a["to step"] + 1 == b["from step"] for a, b in zip(history[:-1], history[1:], strict=True))
    [row] = trajectory.early_steps([run_c], [0, 5])
    assert row["L at step 0"] == pytest.approx(float(y @ y)) and row["support at step 0"] == ()
    assert row["support at step 5"] == sparse._support(run_c.W[5])
    with pytest.raises(ValueError, match="step 999"):
        trajectory.early_steps([run_c], [999])


def test_convergence_tells_subgradient_jitter_from_proximal_zeros_on_lab1():
    X, y = sparse.hw_data()
    truth, _ = sparse.best_k_sparse(X, y, 2)
    runs = [sparse.l1_gd(X, y, lam=2.0), sparse.proximal_l1(X, y, threshold=0.04)]
    sub, prox = trajectory.convergence(runs, truth)
    assert sub["exact zeros"] == 0 and sub["sign changes, last 50"] > 10
    assert prox["exact zeros"] == 3 and prox["sign changes, last 50"] == 0
