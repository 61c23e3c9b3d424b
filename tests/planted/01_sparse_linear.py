"""Planted wrong student functions for notebook 01 (Lab 1), each a plausible bug, and the questions each
must lose: its own function check and every graded run that calls it (the runs of (b)-(f) take the
student's functions as arguments of labkit.sparse's loops)."""

WRONG = {
    # the residual the wrong way round: gradient *ascent*, every run diverges
    "gradient": '''def gradient(X, y, W):
    return 2 * X.T @ (y - X @ W)
''',
    # keeps the k largest *signed* values instead of the k largest magnitudes (drops W_1 = -3)
    "project_topk": '''def project_topk(W, k):
    W = np.asarray(W, dtype=float)
    order = np.argsort(-W, axis=-1, kind="stable")
    keep = np.zeros(W.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    return np.where(keep, W, 0.0)
''',
    # shrinks by the threshold but forgets max(., 0): small entries flip sign instead of becoming 0
    "soft_threshold": '''def soft_threshold(W, threshold):
    W = np.asarray(W, dtype=float)
    return np.sign(W) * (np.abs(W) - threshold)
''',
    # penalizes the n_penalized *largest* entries instead of the smallest
    "trimmed_soft_threshold": '''def trimmed_soft_threshold(W, threshold, n_penalized):
    W = np.asarray(W, dtype=float)
    order = np.argsort(-np.abs(W), axis=-1, kind="stable")
    penalized = np.zeros(W.shape, dtype=bool)
    np.put_along_axis(penalized, order[..., :n_penalized], True, axis=-1)
    return np.where(penalized, soft_threshold(W, threshold), W)
''',
}

_RUNS = ["b.W", "b.loss", "c.W", "c.loss", "d.W", "d.loss", "e.W", "e.zeros", "e.loss", "f.W", "f.loss"]
DOWNSTREAM = {
    "gradient": ["a.gradient", *_RUNS],  # every run takes its gradient steps with it
    "project_topk": ["c.project_topk", "c.W", "c.loss"],
    # the solution's trimmed_soft_threshold calls the student's soft_threshold, so (f) loses too
    "soft_threshold": ["e.soft_threshold", "e.W", "e.zeros", "e.loss",
                       "f.trimmed_soft_threshold", "f.W", "f.loss"],
    "trimmed_soft_threshold": ["f.trimmed_soft_threshold", "f.W", "f.loss"],
}

# more plausible bugs, each (function, code, questions it must lose)
EXTRA = {
    # the 1/2 convention of L = 1/2 sum (...)^2: half the step. (b), (c) and (f) still converge to L = 0,
    # so b.loss, c.loss and f.loss hold; the weights after 200 steps and both L1 runs do not.
    "gradient/no-factor-2": ("gradient", '''def gradient(X, y, W):
    return X.T @ (X @ W - y)
''', ["a.gradient", "b.W", "c.W", "d.W", "d.loss", "e.W", "e.loss", "f.W"]),
    # forgets the negative side: negative weights are zeroed (W_1 = -3 cannot survive (e))
    "soft_threshold/positive-only": ("soft_threshold", '''def soft_threshold(W, threshold):
    W = np.asarray(W, dtype=float)
    return np.maximum(W - threshold, 0.0)
''', ["e.soft_threshold", "e.W", "e.zeros", "e.loss", "f.trimmed_soft_threshold"]),
}
