"""The figures the labs ask for (matplotlib). Each function returns the Figure it drew.

Size (about 430 lines): independent functions, one per figure, kept together so that they share one
style and its helpers.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def _finish(fig: plt.Figure, axes, title: str) -> plt.Figure:
    """The labs' common figure finish: light grid and small legend on ``axes``, title, tight layout."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, also for 2 or 3 of them
    return _finish(fig, (ax_loss, ax_acc), title)


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


# ---- Lab 2: pruning ResNet-20 (accuracies in 0..1, sparsities in percent or as sparsity_report) ----

def plot_accuracy_vs_sparsity(accuracy: dict, dense_acc: float, marked=(), title: str = "") -> plt.Figure:
    """Test accuracy against the pruning percentage q (``{q: accuracy}``), the dense model as a dashed
    line; the q in ``marked`` (e.g. the handout's 30, 50, 70) are labelled with their accuracy."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    qs = sorted(accuracy)
    ax.plot(qs, [100 * accuracy[q] for q in qs], marker="o", label="pruned, no fine-tuning")
    ax.axhline(100 * dense_acc, color="gray", linestyle="--", label=f"dense ({100 * dense_acc:.2f}%)")
    for q in marked:
        ax.annotate(f"{100 * accuracy[q]:.1f}%", (q, 100 * accuracy[q]), textcoords="offset points",
                    xytext=(6, -12), fontsize=8)
    ax.set(xlabel="q: weights pruned in every layer (%)", ylabel="test accuracy (%)", ylim=(0, 100),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_schedule(ax, schedule, epochs: int, label: str, marker: str = "o") -> None:
    """The sparsity ``schedule`` has pruned to by each epoch (``sparsity_at``), epochs numbered from 1."""
    ax.step(range(1, epochs + 1), [schedule.sparsity_at(e) for e in range(epochs)], where="mid",
            marker=marker, label=label)


def plot_prune_runs(runs: dict, title: str = "") -> plt.Figure:
    """Pruning runs ``{label: (History, schedule)}`` side by side: test accuracy per epoch (left) and
    the sparsity the schedule has pruned to by each epoch (right; ``schedule.sparsity_at(epoch)``)."""
    fig, (ax_acc, ax_q) = plt.subplots(1, 2, figsize=(11, 4))
    for label, (history, schedule) in runs.items():
        epochs = range(1, len(history.test_acc) + 1)
        ax_acc.plot(epochs, [100 * a for a in history.test_acc], marker="o", label=label)
        _plot_schedule(ax_q, schedule, len(epochs), label, marker=".")
    n_epochs = max(len(history.test_acc) for history, _ in runs.values())
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", xticks=range(1, n_epochs + 1),
               title="test accuracy after each epoch")
    ax_q.set(xlabel="epoch", ylabel="target sparsity (%)", xticks=range(1, n_epochs + 1), ylim=(0, 100),
             title="pruned to before the epoch")
    return _finish(fig, (ax_acc, ax_q), title)


def plot_layer_sparsity(reports: dict, title: str = "") -> plt.Figure:
    """Per-layer sparsity of one or more models (``{label: sparsity_report}``) as grouped bars, one
    group per prunable layer; the legend gives each model's total sparsity."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    layers = [name for name in next(iter(reports.values())) if name != "total"]
    width = 0.8 / len(reports)
    for i, (label, report) in enumerate(reports.items()):
        ax.bar([j + (i - (len(reports) - 1) / 2) * width for j in range(len(layers))],
               [100 * report[name] for name in layers], width,
               label=f"{label} (total {100 * report['total']:.1f}%)")
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="zero weights (%)", ylim=(0, 100), title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_sensitivity(results: dict, sparsities, dense_acc: float, title: str = "") -> plt.Figure:
    """Per-layer sensitivity (``{layer: [accuracy per sparsity]}``, from ``prune.sensitivity_scan``):
    one curve per layer, coloured from the first layer (dark) to the last (light)."""
    fig, ax = plt.subplots(figsize=(9, 5))
    colors = plt.get_cmap("viridis")([i / max(1, len(results) - 1) for i in range(len(results))])
    for color, (name, accs) in zip(colors, results.items(), strict=True):
        ax.plot(sparsities, [100 * a for a in accs], marker="o", color=color, label=name)
    ax.axhline(100 * dense_acc, color="gray", linestyle="--", label="dense")
    ax.set(xlabel="sparsity of the one pruned layer (%)", ylabel="test accuracy (%)", xticks=sparsities,
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def plot_schedules(schedules: dict, epochs: int, title: str = "") -> plt.Figure:
    """Iterative pruning schedules ``{label: schedule}``: the sparsity each has pruned to by every
    epoch (``schedule.sparsity_at(epoch)``), epochs numbered from 1."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, schedule in schedules.items():
        _plot_schedule(ax, schedule, epochs, label)
    ax.set(xlabel="epoch", ylabel="sparsity pruned to before the epoch (%)", ylim=(0, 100),
           xticks=range(1, epochs + 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- Lab 3: fixed-point quantization ----

def plot_staircase(quantize_fn, x, bits=(2, 3, 4), title: str = "") -> plt.Figure:
    """The quantizer's transfer curve: ``quantize_fn(x, bit, symmetric)`` against ``x`` (a 1-D tensor,
    ascending) for each of ``bits``, asymmetric (left) and symmetric (right), with the identity dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, symmetric in zip(axes, (False, True), strict=True):
        ax.plot(x, x, color="k", linestyle="--", linewidth=1, label="float")
        for bit in bits:
            ax.plot(x, quantize_fn(x, bit, symmetric), label=f"{bit} bits")
        ax.set(xlabel="w (float)", ylabel="w_q (quantized)", title="symmetric" if symmetric else "asymmetric")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_weight_grid(w, grids: dict, title: str = "") -> plt.Figure:
    """Histogram of the nonzero elements of ``w``, one panel per entry of ``grids`` ({label: levels}),
    with the quantization levels drawn as vertical lines."""
    values = w[w != 0].ravel()
    fig, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 3.5), sharey=True, squeeze=False)
    for ax, (label, levels) in zip(axes[0], grids.items(), strict=True):
        ax.hist(values, bins=80, color="tab:gray")
        for level in levels:
            ax.axvline(float(level), color="tab:red", linewidth=1)
        ax.set(xlabel="weight value", title=f"{label} ({len(levels)} levels)")
    axes[0, 0].set_ylabel("count")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_bits(series: dict, float_acc: float | None = None, title: str = "",
                          float_label: str = "float") -> plt.Figure:
    """Test accuracy (%) against Nbits, one line per run in ``series`` ({label: {nbits: accuracy in
    0..1}}; each its own marker, so overlapping runs stay visible), with ``float_acc`` dashed when given."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, acc) in enumerate(series.items()):
        bits = sorted(acc)
        ax.plot(bits, [100 * acc[b] for b in bits], marker="os^Dv"[i % 5], markersize=9 - 2 * (i % 3),
                label=label)
    if float_acc is not None:
        ax.axhline(100 * float_acc, color="k", linestyle="--", linewidth=1, label=float_label)
    ax.set_xticks(sorted({b for acc in series.values() for b in acc}))
    ax.set(xlabel="Nbits", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- LeNet-5: LSQ and pruning (seed 000) ----

def plot_history_from_start(histories: dict, start: dict, title: str = "") -> plt.Figure:
    """``plot_history`` whose test curves begin at epoch 0 with ``start`` ({label: (test loss, test
    accuracy in 0..1)} of that run's model before its first epoch): where each run started from."""
    fig = plot_history(histories, title)
    for ax, index, scale in ((fig.axes[0], 0, 1), (fig.axes[1], 1, 100)):
        for label, values in start.items():
            line = next(line for line in ax.get_lines() if line.get_label() == f"{label} test")
            epochs, ys = line.get_data()
            line.set_data([0, *epochs], [scale * values[index], *ys])
        ax.relim()
        ax.autoscale_view()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def cost_curve(accuracies: dict, *costs: dict, name: str = "{}") -> dict:
    """One curve for :func:`plot_accuracy_vs_cost` from per-setting dicts:
    ``{name.format(key): (costs[0][key], ..., accuracies[key])}`` for every key of ``accuracies``."""
    return {name.format(k): (*(cost[k] for cost in costs), acc) for k, acc in accuracies.items()}


def plot_accuracy_vs_cost(curves: dict, xlabels, reference=None, title: str = "") -> plt.Figure:
    """Accuracy (%) against k costs (size, MACs, ...), one panel per cost on a log scale, sharing the
    accuracy axis. ``curves``: {label: {point name: (cost_1, ..., cost_k, accuracy in 0..1)}} with
    k = len(xlabels), each point annotated with its name; ``reference``: the same tuple for the
    uncompressed model, drawn as a black star."""
    fig, axes = plt.subplots(1, len(xlabels), figsize=(5.5 * len(xlabels), 4.2), sharey=True, squeeze=False)
    for k, (ax, xlabel) in enumerate(zip(axes[0], xlabels, strict=True)):
        for label, points in curves.items():
            xs = [p[k] for p in points.values()]
            (line,) = ax.plot(xs, [100 * p[-1] for p in points.values()], marker="o", label=label)
            for name, x, acc in _point_labels(points, k, reference):
                ax.annotate(name, (x, 100 * acc), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=line.get_color())
        if reference is not None:
            ax.plot(reference[k], 100 * reference[-1], marker="*", markersize=12, color="k", linestyle="",
                    label="uncompressed")
        ax.set(xlabel=xlabel, xscale="log")
        ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _point_labels(points: dict, k: int, reference) -> list[tuple[str, float, float]]:
    """(text, cost k, accuracy) to annotate: points at the same cost share one label ("0%..98%", at the
    most accurate of them), and a label on the reference star is left out (the legend names it)."""
    groups: dict[float, list] = {}
    for name, p in points.items():
        groups.setdefault(round(math.log(p[k]), 3), []).append((name, p[k], p[-1]))
    labels = []
    for group in groups.values():
        name, x, acc = max(group, key=lambda g: g[2])
        text = name if len(group) == 1 else f"{group[0][0]}..{group[-1][0]}"
        near = reference is not None and abs(math.log(x / reference[k])) < 0.02 \
            and abs(acc - reference[-1]) < 0.01
        if len(group) > 1 or not near:
            labels.append((text, x, acc))
    return labels


def plot_channel_pattern(kept: dict, title: str = "") -> plt.Figure:
    """Which output channels channel pruning keeps: one row per layer ({layer: bools per output
    channel, True = kept}), one column per channel; kept dark, removed light, no channel blank."""
    width = max(len(k) for k in kept.values())
    image = [[float(v) for v in k] + [float("nan")] * (width - len(k)) for k in kept.values()]
    cmap = plt.get_cmap("Greens").copy()
    cmap.set_bad("white")
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * width, 1.2 + 0.6 * len(kept)))
    ax.imshow(image, cmap=cmap, vmin=-0.25, vmax=1.1)
    ax.set_yticks(range(len(kept)), [f"{name}: {sum(map(bool, k))}/{len(k)} kept"
                                     for name, k in kept.items()])
    ax.set_xticks(range(width))
    ax.set_xticks([i - 0.5 for i in range(width + 1)], minor=True)
    ax.set_yticks([i - 0.5 for i in range(len(kept) + 1)], minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set(xlabel="output channel", title=title)
    fig.tight_layout()
    return fig


# ---- Deep Compression (labkit.compress, labkit.codec) and the concept questions ----

def plot_compression_stages(report, title: str = "") -> plt.Figure:
    """Bytes of each prunable layer (and of the rest) at every stage of a ``codec.CompressionReport``
    (dense, pruned, shared, huffman) as grouped bars on a log scale, the paper's view of where the
    bytes go; the legend gives each stage's total and ratio."""
    stages = ("dense", "pruned", "shared", "huffman")
    rows = [row for row in report.rows if row["dense"] or row["huffman"]]
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(rows)), 4.2))
    for i, stage in enumerate(stages):
        total = report.total(stage)
        heights = [row[stage] or float("nan") for row in rows]  # no bar where a stage has no bytes
        ax.bar([j + (i - 1.5) * width for j in range(len(rows))], heights, width,
               label=f"{stage}: {total:,} B ({report.total('dense') / total:.1f}x)")
    ax.set_xticks(range(len(rows)), [row["layer"] for row in rows], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set(ylabel="bytes (log scale)", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bars(values: dict, ylabel: str, title: str = "", log: bool = False) -> plt.Figure:
    """Grouped bars: ``values`` is {group: {series: value}}, one group of bars per key, each bar
    labelled with its value (3 significant digits)."""
    series = list(dict.fromkeys(s for group in values.values() for s in group))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(11, max(6, 1.1 * len(values) * (1 + len(series)))), 4))
    for i, name in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j, g in enumerate(values.values()) if name in g]
        ys = [g[name] for g in values.values() if name in g]
        bars = ax.bar(xs, ys, width, label=name or None)
        ax.bar_label(bars, [f"{y:,.0f}" if abs(y) >= 100 else f"{y:.3g}" for y in ys], fontsize=8)
    ax.set_xticks(range(len(values)), list(values))
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    if any(series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_magnitudes(weights: dict, title: str = "") -> plt.Figure:
    """Histogram of log10 |w| for each tensor in ``weights`` ({label: tensor}); exact zeros have no
    logarithm, so the legend counts them."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, w in weights.items():
        w = w.detach().flatten().cpu().double()
        nonzero = w[w != 0]
        ax.hist(nonzero.abs().log10().numpy(), bins=80, histtype="step", linewidth=1.5,
                label=f"{label}: {int((w == 0).sum())} exact zeros of {w.numel()}")
    ax.set(xlabel="log10 |w| (nonzero weights)", ylabel="count", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_matrices(matrices: dict, title: str = "") -> plt.Figure:
    """Each matrix of ``matrices`` ({label: 2-D array}) as a heat map on a shared symmetric colour
    scale; exact zeros are drawn white."""
    import numpy as np

    arrays = {label: np.asarray(m, dtype=float) for label, m in matrices.items()}
    vmax = max(float(np.abs(a).max()) for a in arrays.values()) or 1.0
    cmap = plt.get_cmap("coolwarm").copy()
    cmap.set_bad("white")
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.9 * len(arrays), 4), squeeze=False,
                             layout="constrained")
    for ax, (label, a) in zip(axes[0], arrays.items(), strict=True):
        image = ax.imshow(np.where(a == 0, np.nan, a), cmap=cmap, vmin=-vmax, vmax=vmax)
        ax.set(title=f"{label}\n{int((a == 0).all(axis=1).sum())} zero rows, {int((a == 0).sum())} zeros",
               xlabel="column", ylabel="row (group)")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title)
    return fig


def plot_ste_gradient(w, w_q, upstream, grad, title: str = "") -> plt.Figure:
    """The STE at work: the quantized weights against the float ones (left, on the grid) and the
    gradient that reaches the float weights against the upstream gradient dL/dw_q (right, on the
    identity line: passed straight through, not quantized)."""
    fig, (ax_q, ax_g) = plt.subplots(1, 2, figsize=(11, 4))
    ax_q.plot(w.detach().flatten(), w_q.detach().flatten(), ".", markersize=3)
    ax_q.set(xlabel="w (float)", ylabel="w_q = Q(w)", title=f"forward: {len(w_q.unique())} levels")
    ax_g.plot(upstream.flatten(), grad.flatten(), ".", markersize=3)
    ax_g.set(xlabel="dL/dw_q (upstream)", ylabel="dL/dw (w.grad)",
             title=f"backward: {len(grad.unique())} distinct gradient values")
    for ax in (ax_q, ax_g):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sparse_speedup(timings: dict, title: str = "") -> plt.Figure:
    """Dense time over CSR time against density, one curve per ``{label: kernels.csr_timings rows}``; above
    the line at 1 the zeros pay."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in timings.items():
        ax.plot([r["density"] for r in rows], [r["speedup"] for r in rows], marker="o", label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="CSR as fast as dense")
    ax.set(xscale="log", yscale="log", xlabel="density (fraction of weights kept)",
           ylabel="speedup of CSR over dense")
    return _finish(fig, [ax], title)
