"""The figures the labs ask for (matplotlib). Each function returns the Figure it drew."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_history(histories: dict, title: str = "") -> plt.Figure:
    """Loss and accuracy per epoch for one or more runs (``{label: History}``), on shared axes."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, h in histories.items():
        epochs = range(1, len(h.train_loss) + 1)
        ax_loss.plot(epochs, h.train_loss, marker="o", label=f"{label} train")
        ax_loss.plot(epochs, h.test_loss, marker="s", linestyle="--", label=f"{label} test")
        ax_acc.plot(epochs, [100 * a for a in h.train_acc], marker="o", label=f"{label} train")
        ax_acc.plot(epochs, [100 * a for a in h.test_acc], marker="s", linestyle="--", label=f"{label} test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- Lab 1: traces of sparse least squares (labkit.sparse.Trace: W (steps+1, d), loss (steps+1,)) ----

def _plot_loss(ax, trace) -> None:
    ax.semilogy(trace.loss)
    ax.set(xlabel="step", ylabel="L (log scale)", title=trace.label)
    ax.grid(alpha=0.3)


def _plot_weights(ax, trace, steps: int | None = None) -> None:
    W = trace.W if steps is None else trace.W[: steps + 1]
    for i in range(W.shape[1]):
        ax.plot(W[:, i], label=f"W[{i}]")
    ax.set(xlabel="step", ylabel="value of W[i]", title=trace.label)
    ax.grid(alpha=0.3)


def plot_descent(trace, title: str = "") -> plt.Figure:
    """One run: L on a log scale vs step (left) and every element of W vs step (right)."""
    fig, (ax_loss, ax_w) = plt.subplots(1, 2, figsize=(11, 4))
    _plot_loss(ax_loss, trace)
    _plot_weights(ax_w, trace)
    ax_w.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sweep(traces, title: str = "") -> plt.Figure:
    """One column per run (e.g. per lam or threshold): L on a log scale (top), every element of W (bottom);
    rows share their y axis so the runs compare at a glance."""
    fig, axes = plt.subplots(2, len(traces), figsize=(3.6 * len(traces), 6.5), sharex=True, sharey="row",
                             squeeze=False)
    for col, trace in enumerate(traces):
        _plot_loss(axes[0, col], trace)
        _plot_weights(axes[1, col], trace)
    axes[1, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_early_steps(traces, baseline, steps: int = 20, title: str = "") -> plt.Figure:
    """Every element of W over the first ``steps`` steps: ``baseline`` (e.g. projected GD) in the first
    panel, then one panel per run in ``traces``, on a shared y axis."""
    runs = [baseline, *traces]
    fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3.8), sharey=True, squeeze=False)
    for ax, trace in zip(axes[0], runs, strict=True):
        _plot_weights(ax, trace, steps)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
