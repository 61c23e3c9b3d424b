"""Lab 1 solvers and step operators: hand-checked small cases, trace layout, ground truth, bad input."""

import dataclasses
import itertools
import re

import numpy as np
import pytest

from labkit import sparse

X3, Y3 = sparse.hw_data()


@pytest.fixture
def Xy():
    return sparse.hw_data()


def test_hw_data_is_the_handout_problem(Xy):
    X, y = Xy
    assert X.shape == (3, 5) and y.shape == (3,)
    assert X[0].tolist() == [1, -2, -1, -1, 1] and y.tolist() == [7, 1, 1]


def test_one_gd_step_by_hand(Xy):
    X, y = Xy
    run = sparse.gd(X, y, steps=1)
    # W^1 = 0 - 0.02 * 2 X^T (0 - y) = 0.04 X^T y = 0.04 * (8, -15, -3, -5, 6)
    np.testing.assert_allclose(run.W[1], [0.32, -0.6, -0.12, -0.2, 0.24], rtol=0, atol=1e-15)
    assert run.loss[0] == 51.0  # 7^2 + 1^2 + 1^2
    np.testing.assert_allclose(run.loss[1], np.sum((X @ run.W[1] - y) ** 2), rtol=1e-15)


def test_gradient_matches_the_sum_over_data_points(Xy):
    X, y = Xy
    W = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    by_point = sum(2 * (X[i] @ W - y[i]) * X[i] for i in range(3))
    np.testing.assert_allclose(sparse.gradient(X, y, W), by_point, rtol=0, atol=1e-12)


def test_soft_threshold_by_hand():
    W = np.array([0.5, -0.5, 0.2, -0.1, 0.0, 3.0])
    np.testing.assert_allclose(sparse.soft_threshold(W, 0.2), [0.3, -0.3, 0, 0, 0, 2.8], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sparse.soft_threshold(W, 0.0), W)


def test_project_topk_keeps_the_k_largest_magnitudes():
    W = np.array([0.5, -2.0, 1.0, 0.1, -1.5])
    np.testing.assert_array_equal(sparse.project_topk(W, 2), [0, -2.0, 0, 0, -1.5])
    np.testing.assert_array_equal(sparse.project_topk(W, 5), W)
    rows = np.array([[3.0, -1.0, 2.0, -4.0, 0.0], [0.1, 0.2, -0.3, 0.05, 0.0]])
    np.testing.assert_array_equal(sparse.project_topk(rows, 1), [[0, 0, 0, -4.0, 0], [0, 0, -0.3, 0, 0]])


def test_project_topk_breaks_ties_toward_the_lower_index():
    np.testing.assert_array_equal(sparse.project_topk(np.array([0.5, 1.0, -1.0, 1.0]), 2), [0, 1.0, -1.0, 0])


def test_trimmed_soft_threshold_penalizes_only_the_smallest():
    W = np.array([0.5, -2.0, 0.05, 1.0, -0.3])
    # the three smallest |W_i| are 0.05, 0.3, 0.5; the two largest (-2, 1) are left alone
    expected = [0.4, -2.0, 0, 1.0, -0.2]
    np.testing.assert_allclose(sparse.trimmed_soft_threshold(W, 0.1, 3), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sparse.trimmed_soft_threshold(W, 0.1, 0), W)
    np.testing.assert_array_equal(sparse.trimmed_soft_threshold(W, 0.1, 5), sparse.soft_threshold(W, 0.1))


def test_trace_shapes_and_row_zero(Xy):
    X, y = Xy
    W0 = np.array([0.1, 0.0, -0.2, 0.3, 0.0])
    run = dict(steps=7, W0=W0)
    runs = [sparse.gd(X, y, **run), sparse.projected_gd(X, y, **run), sparse.l1_gd(X, y, lam=0.5, **run),
            sparse.proximal_l1(X, y, threshold=0.01, **run), sparse.trimmed_l1(X, y, threshold=0.1, **run)]
    for run in runs:
        assert run.W.shape == (8, 5) and run.loss.shape == (8,)
        np.testing.assert_array_equal(run.W[0], W0)
        np.testing.assert_allclose(run.loss, np.sum((run.W @ X.T - y) ** 2, axis=1), rtol=1e-14)
    assert sparse.gd(X, y, steps=0).W.shape == (1, 5)
    assert sparse.gd(X, y).W.shape == (201, 5)  # the handout's 200 steps


def test_trace_is_frozen_and_read_only(Xy):
    run = sparse.gd(*Xy, steps=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.W = None
    with pytest.raises(ValueError):
        run.W[0, 0] = 1.0


def test_every_step_applies_its_operator(Xy):
    X, y, lr = *Xy, sparse.LR
    cases = [
        (sparse.projected_gd(X, y, k=2, steps=30), lambda V: sparse.project_topk(V, 2)),
        (sparse.proximal_l1(X, y, threshold=0.04, steps=30), lambda V: sparse.soft_threshold(V, 0.04)),
        (sparse.trimmed_l1(X, y, threshold=0.1, steps=30),
         lambda V: sparse.trimmed_soft_threshold(V, 0.1, 3)),
    ]
    for run, operator in cases:
        prev = run.W[:-1]
        np.testing.assert_allclose(run.W[1:], operator(prev - lr * sparse.gradient(X, y, prev)), atol=1e-12)
    assert np.count_nonzero(cases[0][0].W, axis=1).max() <= 2


def test_l1_uses_sign_zero_equal_zero(Xy):
    X, y = Xy
    W0 = np.array([0.0, 0.5, 0.0, -0.5, 0.0])
    l1, plain = sparse.l1_gd(X, y, lam=2.0, steps=1, W0=W0), sparse.gd(X, y, steps=1, W0=W0)
    # the penalty moves only the nonzero entries, by lr * lam = 0.04 toward zero
    np.testing.assert_allclose(l1.W[1] - plain.W[1], [0, -0.04, 0, 0.04, 0], atol=1e-15)
    np.testing.assert_array_equal(sparse.l1_gd(X, y, lam=2.0, steps=1).W[1], sparse.gd(X, y, steps=1).W[1])


def test_sweep_matches_single_runs(Xy):
    X, y = Xy
    swept = sparse.sweep("proximal_l1", X, y, [0.01, 0.04], steps=50)
    for run, t in zip(swept, [0.01, 0.04], strict=True):
        np.testing.assert_allclose(run.W, sparse.proximal_l1(X, y, threshold=t, steps=50).W, atol=1e-12)
    assert [r.label for r in swept] == ["proximal_l1(threshold=0.01)", "proximal_l1(threshold=0.04)"]


def test_run_iterates_the_whole_lab_in_one_loop(Xy):
    X, y = Xy
    together = sparse.run(X, y, sparse.handout_methods())
    alone = [sparse.gd(X, y), sparse.projected_gd(X, y), *(sparse.l1_gd(X, y, lam=v) for v in sparse.LAMS),
             *(sparse.proximal_l1(X, y, threshold=t) for t in sparse.PROXIMAL_THRESHOLDS),
             *(sparse.trimmed_l1(X, y, threshold=t) for t in sparse.TRIMMED_THRESHOLDS)]
    assert [r.label for r in together] == [r.label for r in alone]
    assert len(together) == 14 and together[5].label == "l1_gd(lam=2)"
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.W, b.W, rtol=0, atol=1e-12)


def test_methods_are_validated():
    with pytest.raises(ValueError, match="lam=-1: allowed is a finite number >= 0"):
        sparse.Method("m", lam=-1)
    with pytest.raises(ValueError, match="threshold=nan: allowed is a number >= 0"):
        sparse.Method("m", threshold=np.nan)
    with pytest.raises(ValueError, match=re.escape("n_kept of m=6: allowed is an int in 0..5")):
        sparse.run(X3, Y3, [sparse.Method("m", n_kept=6)])
    with pytest.raises(TypeError, match=re.escape("methods=[]: allowed is a non-empty sequence of Method")):
        sparse.run(X3, Y3, [])
    with pytest.raises(ValueError, match="name='lasso': allowed is one of"):
        sparse.method("lasso", d=5)


def test_best_k_sparse_of_the_handout_is_hand_checkable(Xy):
    X, y = Xy
    W, loss = sparse.best_k_sparse(X, y, 2)
    np.testing.assert_allclose(W, [0, -3, 0, 0, 1], atol=1e-12)  # -3 X[:, 1] + X[:, 4] = (7, 1, 1) = y
    assert loss < 1e-20


def test_best_k_sparse_recovers_a_planted_system_and_beats_every_support():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 7))
    W_true = np.zeros(7)
    W_true[[2, 5]] = [1.5, -0.7]
    y = X @ W_true + 0.01 * rng.normal(size=6)
    W, loss = sparse.best_k_sparse(X, y, 2)
    assert tuple(np.flatnonzero(W)) == (2, 5)
    for support in itertools.combinations(range(7), 2):  # brute force over every support
        cols = list(support)
        residual = y - X[:, cols] @ np.linalg.lstsq(X[:, cols], y, rcond=None)[0]
        assert loss <= np.sum(residual**2) + 1e-12


def test_least_squares_min_is_the_minimum_norm_solution_gd_converges_to(Xy):
    X, y = Xy
    W, loss = sparse.least_squares_min(X, y)
    np.testing.assert_allclose(W, np.linalg.pinv(X) @ y, atol=1e-12)
    assert loss < 1e-20
    np.testing.assert_allclose(sparse.gd(X, y, steps=400).W[-1], W, atol=1e-12)


def test_comparison_table_flags_the_optimal_support(Xy):
    X, y = Xy
    runs = [sparse.gd(X, y), sparse.projected_gd(X, y)]
    rows = {r["method"]: r for r in sparse.comparison_table(runs, X, y)}
    assert rows["best 2-sparse (exact)"]["support"] == (1, 4)
    assert rows["projected_gd(k=2)"]["optimal support"] and not rows["gd"]["optimal support"]
    assert rows["gd"]["support"] == (0, 1, 2, 3, 4)
    assert rows["projected_gd(k=2)"]["final loss"] == runs[1].loss[-1]


def test_support_step_is_where_the_support_stops_changing():
    W = np.array([[0, 0], [1, 0], [1, 1], [1, 0], [2, 0]], dtype=float)
    assert sparse.Trace("t", W, np.zeros(5)).support_step == 3
    assert sparse.Trace("t", W[:1], np.zeros(1)).support_step == 0


@pytest.mark.parametrize("call, words", [
    (lambda: sparse.gd(X3, Y3[:2]), "y of shape (2,): allowed are X (n, d) and y (n,)"),
    (lambda: sparse.gd(X3[0], Y3), "X of shape (5,): allowed is shape (n, d)"),
    (lambda: sparse.gd(np.where(X3 == 2, np.nan, X3), Y3), "allowed is an array of finite numbers"),
    (lambda: sparse.gd(X3, [7, np.inf, 1]), "y=[7, inf, 1]: allowed is an array of finite numbers"),
    (lambda: sparse.gd(X3, Y3, steps=-1), "steps=-1: allowed is an int >= 0"),
    (lambda: sparse.gd(X3, Y3, lr=0), "lr=0: allowed is a finite number > 0"),
    (lambda: sparse.gd(X3, Y3, lr=-0.1), "lr"),
    (lambda: sparse.gd(X3, Y3, lr=np.nan), "lr"),
    (lambda: sparse.gd(X3, Y3, W0=np.zeros(4)), "W0 of shape (4,): allowed is shape (5,)"),
    (lambda: sparse.gd(X3, Y3, W0=[0, 0, np.nan, 0, 0]), "allowed is an array of finite numbers"),
    (lambda: sparse.projected_gd(X3, Y3, k=0), "k=0: allowed is an int in 1..5"),
    (lambda: sparse.projected_gd(X3, Y3, k=6), "k=6: allowed is an int in 1..5"),
    (lambda: sparse.l1_gd(X3, Y3, lam=-0.1), "lam=-0.1: allowed is a finite number >= 0"),
    (lambda: sparse.proximal_l1(X3, Y3, threshold=-1), "threshold=-1: allowed is a finite number >= 0"),
    (lambda: sparse.proximal_l1(X3, Y3, threshold=np.nan), "threshold"),
    (lambda: sparse.trimmed_l1(X3, Y3, threshold=-0.1), "threshold"),
    (lambda: sparse.trimmed_l1(X3, Y3, threshold=0.1, n_penalized=6),
     "n_penalized=6: allowed is an int in 0..5"),
    (lambda: sparse.sweep("lasso", X3, Y3, [0.1]), "name='lasso': allowed is one of"),
    (lambda: sparse.sweep("gd", X3, Y3, [0.1]),
     "name='gd': allowed is one of ['l1_gd', 'proximal_l1', 'trimmed_l1']"),
    (lambda: sparse.sweep("l1_gd", X3, Y3, []),
     "strengths=[]: allowed is a non-empty 1-D sequence of lam values"),
    (lambda: sparse.soft_threshold(np.ones(3), -0.5), "threshold=-0.5: allowed is a finite number >= 0"),
    (lambda: sparse.project_topk(np.ones(3), 4), "k=4: allowed is an int in 1..3"),
    (lambda: sparse.project_topk(1.0, 1), "allowed is an array with at least one entry on its last axis"),
    (lambda: sparse.trimmed_soft_threshold(np.ones(3), 0.1, -1), "n_penalized=-1: allowed is an int in 0..3"),
    (lambda: sparse.best_k_sparse(X3, Y3, 0), "k=0: allowed is an int in 1..5"),
])
def test_bad_input_raises_value_error_naming_it(call, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


def test_non_numeric_data_and_counts_of_the_wrong_type_raise_type_error():
    with pytest.raises(TypeError, match="allowed is an array of numbers"):
        sparse.gd([["a"] * 5] * 3, Y3)
    with pytest.raises(TypeError, match=re.escape("steps=2.5 (float): allowed is an int >= 0")):
        sparse.gd(X3, Y3, steps=2.5)
    with pytest.raises(TypeError, match=re.escape("k=2.0 (float): allowed is an int in 1..5")):
        sparse.projected_gd(X3, Y3, k=2.0)


# ---- the functions a notebook passes in (the student's) ----------------------------------------------

def _wrapped():
    """labkit's own functions behind new function objects: the solvers then take the row-by-row path."""
    return dict(gradient=lambda X, y, W: sparse.gradient(X, y, W),
                project_topk=lambda W, k: sparse.project_topk(W, k),
                soft_threshold=lambda W, t: sparse.soft_threshold(W, t),
                trimmed_soft_threshold=lambda W, t, n: sparse.trimmed_soft_threshold(W, t, n))


def test_given_functions_reproduce_the_vectorized_lab(Xy):
    X, y = Xy
    fast = sparse.run(X, y, sparse.handout_methods())
    slow = sparse.run(X, y, sparse.handout_methods(), **_wrapped())
    for a, b in zip(fast, slow, strict=True):
        assert a.label == b.label and a.support == b.support and a.support_step == b.support_step
        np.testing.assert_allclose(a.W, b.W, rtol=0, atol=1e-12)


def test_each_solver_calls_the_functions_it_is_given(Xy):
    X, y = Xy
    calls = []

    def spy(name, fn):
        def wrapper(*args):
            calls.append((name, np.shape(args[0]) if name != "gradient" else np.shape(args[2])))
            return fn(*args)
        return wrapper

    f = {name: spy(name, fn) for name, fn in _wrapped().items()}
    sparse.gd(X, y, steps=3, gradient=f["gradient"])
    sparse.projected_gd(X, y, steps=3, gradient=f["gradient"], project_topk=f["project_topk"])
    sparse.l1_gd(X, y, lam=1.0, steps=3, gradient=f["gradient"])
    sparse.proximal_l1(X, y, threshold=0.01, steps=3, gradient=f["gradient"],
                       soft_threshold=f["soft_threshold"])
    sparse.trimmed_l1(X, y, threshold=0.1, steps=3, gradient=f["gradient"],
                      trimmed_soft_threshold=f["trimmed_soft_threshold"])
    names = [name for name, _ in calls]
    assert names.count("gradient") == 15 and names.count("project_topk") == 3
    assert names.count("soft_threshold") == 3 and names.count("trimmed_soft_threshold") == 3
    assert {shape for _, shape in calls} == {(5,)}  # one row at a time


def test_a_wrong_function_changes_the_run(Xy):
    X, y = Xy
    right = sparse.projected_gd(X, y)
    signed = sparse.projected_gd(X, y, project_topk=lambda W, k: np.where(W >= np.sort(W)[-k], W, 0.0))
    assert right.support == (1, 4) and signed.support != (1, 4)
    assert signed.loss[-1] > 1.0
    frozen = sparse.gd(X, y, steps=5, gradient=lambda X, y, W: np.zeros_like(W))
    np.testing.assert_array_equal(frozen.W, np.zeros((6, 5)))
    # soft thresholding without max(., 0) shrinks like the subgradient step of (d): no exact zeros any more
    no_max = sparse.proximal_l1(X, y, threshold=0.04,
                                soft_threshold=lambda W, t: np.sign(W) * (np.abs(W) - t))
    assert np.count_nonzero(no_max.W[-1]) == 5 and sparse.proximal_l1(X, y, threshold=0.04).support == (1, 4)


def test_sweep_passes_the_functions_on(Xy):
    X, y = Xy
    identity = lambda W, t, n: W  # noqa: E731 - no proximal step at all: plain GD
    runs = sparse.sweep("trimmed_l1", X, y, [0.02, 0.2], trimmed_soft_threshold=identity)
    for run in runs:
        np.testing.assert_allclose(run.W, sparse.gd(X, y).W, atol=1e-12)


def test_given_functions_get_copies(Xy):
    X, y = Xy

    def vandal(X, y, W):
        g = sparse.gradient(X, y, W)
        W[:] = 99.0  # writes into its argument
        X[:] = 0.0
        return g

    np.testing.assert_allclose(sparse.gd(X, y, steps=20, gradient=vandal).W, sparse.gd(X, y, steps=20).W,
                               atol=1e-12)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(gradient=lambda X, y, W: np.zeros(4)), ValueError, "gradient must return an array of shape (5,)"),
    (dict(gradient=lambda X, y, W: ["a"] * 5), TypeError, "gradient must return an array of numbers"),
    (dict(gradient="2 X^T (XW - y)"), TypeError, "gradient='2 X^T (XW - y)': allowed is a function"),
    (dict(soft_threshold=lambda W, t: W[:2]), ValueError,
     "soft_threshold must return an array of shape (5,)"),
])
def test_bad_functions_raise_naming_them(Xy, kwargs, error, words):
    X, y = Xy
    with pytest.raises(error, match=re.escape(words)):
        sparse.run(X, y, [sparse.method("proximal_l1", 0.01, d=5)], steps=2, **kwargs)


def test_group_soft_threshold_drops_weak_rows_whole_and_shrinks_the_others():
    W = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # row norms 5, 0.5, 0
    out = sparse.group_soft_threshold(W, 1.0)
    np.testing.assert_allclose(out[0], W[0] * (1 - 1.0 / 5.0))
    assert (out[1:] == 0).all()
    with pytest.raises(ValueError, match="threshold"):
        sparse.group_soft_threshold(W, -1.0)


def test_proximal_least_squares_finds_the_row_support_with_group_lasso():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 6))
    W_true = np.zeros((6, 2))
    W_true[[1, 4]] = [[1.5, -2.0], [2.5, 1.0]]
    B = A @ W_true
    unpenalized = sparse.proximal_least_squares(A, B, sparse.soft_threshold, 0.0, lr=0.005, steps=2000)
    np.testing.assert_allclose(unpenalized, np.linalg.lstsq(A, B, rcond=None)[0], atol=1e-6)
    grouped = sparse.proximal_least_squares(A, B, sparse.group_soft_threshold, 0.05, lr=0.005, steps=2000)
    assert set(np.flatnonzero(np.abs(grouped).sum(1))) == {1, 4}
