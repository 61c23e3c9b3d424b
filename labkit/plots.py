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
