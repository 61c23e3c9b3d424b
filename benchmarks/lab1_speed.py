"""Lab 1 speed: labkit.sparse against the handout's loops, on the whole lab, in one process.

The baseline below follows the handout's answer code: one run per lam/threshold, the loss computed inside
the step loop, and soft thresholding through a scalar function applied element by element. labkit runs all
14 runs of the lab in one loop over the steps (``sparse.run`` with one row of W per run) and computes the
losses once at the end.
The script checks that both give the same iterates and losses, then prints the best of REPEATS timings
(taken in turns, so that both see the same machine load).

    .venv/bin/python benchmarks/lab1_speed.py
"""

import time

import numpy as np

from labkit import sparse

REPEATS = 30


# ---- the handout's way ------------------------------------------------------------------------------

def soft_thresholding(theta, lam):
    if theta > lam:
        return theta - lam
    elif theta < -lam:
        return theta + lam
    else:
        return 0


def handout_run(X, y, method, strength=0.0, steps=sparse.STEPS, lr=sparse.LR):
    W = np.zeros(X.shape[1])
    l_weight, l_loss = [], []
    for _ in range(steps):
        l_weight.append(W)
        l_loss.append(np.sum((np.dot(X, W) - y) ** 2))
        gr = 2 * np.dot(X.T, (np.dot(X, W) - y))
        if method == "l1_gd":
            gr = gr + strength * np.sign(W)
        W = W - lr * gr
        if method == "projected_gd" and np.count_nonzero(W) > 2:
            W[np.argsort(np.abs(W), kind="stable")[:3]] = 0  # stable: ties keep the lower index, as labkit
        if method == "proximal_l1":
            for j in range(len(W)):
                W[j] = soft_thresholding(W[j], strength)
        if method == "trimmed_l1":
            for i in np.argsort(np.abs(W), kind="stable")[:3]:
                W[i] = soft_thresholding(W[i], strength)
    l_weight.append(W)
    l_loss.append(np.sum((np.dot(X, W) - y) ** 2))
    return np.array(l_weight), np.array(l_loss)


def handout_lab(X, y):
    runs = [handout_run(X, y, "gd"), handout_run(X, y, "projected_gd")]
    for method, strengths in QUESTIONS:
        runs += [handout_run(X, y, method, s) for s in strengths]
    return runs


# ---- labkit -----------------------------------------------------------------------------------------

QUESTIONS = [("l1_gd", sparse.LAMS), ("proximal_l1", sparse.PROXIMAL_THRESHOLDS),
             ("trimmed_l1", sparse.TRIMMED_THRESHOLDS)]


def labkit_lab(X, y):
    return [(run.W, run.loss) for run in sparse.run(X, y, sparse.handout_methods(X.shape[1]))]


def best_times(fns, *args):
    """The best of REPEATS timings of each function, the functions taking turns so both see the same load."""
    best = [float("inf")] * len(fns)
    for _ in range(REPEATS):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn(*args)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main():
    X, y = sparse.hw_data()
    ours, theirs = labkit_lab(X, y), handout_lab(X, y)
    w_diff = max(np.abs(a[0] - b[0]).max() for a, b in zip(ours, theirs, strict=True))
    loss_diff = max(np.abs(a[1] - b[1]).max() for a, b in zip(ours, theirs, strict=True))
    assert w_diff < 1e-9 and loss_diff < 1e-9, (w_diff, loss_diff)
    print(f"{len(ours)} runs x {sparse.STEPS} steps; same results (max |dW| {w_diff:.1e}, "
          f"max |dL| {loss_diff:.1e})")
    t_handout, t_labkit = best_times([handout_lab, labkit_lab], X, y)
    print(f"handout loops: {1e3 * t_handout:7.2f} ms   (best of {REPEATS})")
    print(f"labkit.sparse: {1e3 * t_labkit:7.2f} ms   (best of {REPEATS})")
    print(f"speedup:       {t_handout / t_labkit:7.1f}x")


if __name__ == "__main__":
    main()
