"""Iterative pruning schedules: the handout's linear ramp (Lab 2 (d)/(e)) and AGP (Zhu & Gupta, 2017), as
``labkit.train`` callbacks that prune before chosen epochs with the handout's functions (``prune_layer`` /
``prune_net``, labkit's by default) and keep the masks with ``labkit.prune.MaskStep``; each records its
steps (``steps``: sparsity asked, reached, and whether the smallest weights went).
"""

from __future__ import annotations

from torch import nn

from labkit.checks import check_int
from labkit.prune import MaskStep, check_percent, prunable_layers, prune_to, pruned_smallest, sparsity_report
from labkit.train import Callback


def linear_sparsity(epoch: int, q_final: float = 70.0, prune_epochs: int = 10) -> float:
    """Percent the handout's linear schedule prunes to before epoch ``epoch`` (0-based):
    q_final * (epoch + 1) / prune_epochs, held at q_final from epoch prune_epochs - 1 on."""
    epoch = check_int("epoch", epoch, 0)
    q_final = check_percent(q_final, "q_final")
    prune_epochs = check_int("prune_epochs", prune_epochs, 1)
    return q_final * min(epoch + 1, prune_epochs) / prune_epochs


def agp_sparsity(epoch: int, s_final: float, s_initial: float = 0.0, start_epoch: int = 0,
                 n_steps: int = 10, prune_every: int = 1) -> float:
    """Percent AGP (Zhu & Gupta 2017) prunes to before epoch ``epoch``: the k-th step (k = 1..n_steps,
    before epoch start_epoch + (k - 1) * prune_every) targets s_f + (s_i - s_f) * (1 - k / n_steps)**3,
    i.e. the paper's s_t with t - t0 = k * dt, so the last step reaches s_final. Before start_epoch:
    s_initial (the paper's step k = 0, which prunes nothing new, is skipped)."""
    epoch = check_int("epoch", epoch, 0)
    s_final, s_initial = check_percent(s_final, "s_final"), check_percent(s_initial, "s_initial")
    if s_initial > s_final:
        raise ValueError(f"s_initial={s_initial} > s_final={s_final}: AGP only increases the sparsity")
    start_epoch = check_int("start_epoch", start_epoch, 0)
    n_steps = check_int("n_steps", n_steps, 1)
    prune_every = check_int("prune_every", prune_every, 1)
    k = min(max((epoch - start_epoch) // prune_every + 1, 0), n_steps)
    return s_final + (s_initial - s_final) * (1 - k / n_steps) ** 3


class _PruneSchedule(Callback):
    """Before each epoch in ``targets`` ({epoch: percent}), prune every prunable layer to that percent
    (``global_``: one threshold over all of them). From the last pruning epoch on, the masks are kept
    after every step; between earlier steps only if ``keep_between_steps``.

    The pruning functions (``prune_layer(layer, q)``, or ``prune_net(net, q)`` with ``global_``) and
    the mask step (``make_masks(net)`` after each kept step, ``keep_masks(net, masks)`` after every
    optimizer step) default to labkit's; see the module docstring. ``steps`` records each pruning
    step: epoch, q, the total sparsity after it, and ``by_magnitude`` (``pruned_smallest`` of the
    step: the smallest weights went, per layer, or over all layers together with ``global_``)."""

    name = "schedule"

    def __init__(self, targets: dict[int, float], keep_between_steps: bool, global_: bool, *,
                 prune_layer=None, prune_net=None, make_masks=None, keep_masks=None):
        for arg, fn in (("prune_layer", prune_layer), ("prune_net", prune_net), ("make_masks", make_masks),
                        ("keep_masks", keep_masks)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg}={fn!r}: allowed is None (labkit's) or a function")
        self.targets = targets
        self.keep_between_steps = keep_between_steps
        self.global_ = global_
        self.prune_layer, self.prune_net = prune_layer, prune_net
        self.make_masks, self.keep_masks = make_masks, keep_masks
        self.steps: list[dict] = []
        self._keep = None

    @property
    def pruning_epochs(self) -> list[int]:
        return list(self.targets)

    def sparsity_at(self, epoch: int) -> float:
        """The target (percent) of the latest pruning step at or before ``epoch``; 0 before the first."""
        epoch = check_int("epoch", epoch, 0)
        done = [e for e in self.targets if e <= epoch]
        return self.targets[max(done)] if done else 0.0

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        if epoch in self.targets:
            q = self.targets[epoch]
            before = {name: layer.weight.detach().clone() for name, layer in prunable_layers(model)}
            prune_to(model, q, self.global_, self.prune_layer, self.prune_net)
            self.steps.append({"epoch": epoch, "q": q, "sparsity": sparsity_report(model)["total"],
                               "by_magnitude": pruned_smallest(before, model, self.global_)})
            final = epoch == max(self.targets)
            keep = final or self.keep_between_steps
            self._keep = None
            if keep:  # the masks of this step, read from its zeros
                self._keep = MaskStep(make_masks=self.make_masks, keep_masks=self.keep_masks)
        if self._keep is not None:
            self._keep.on_epoch_start(epoch, model)

    def after_step(self, model: nn.Module) -> None:
        if self._keep is not None:
            self._keep.after_step(model)


class LinearSchedule(_PruneSchedule):
    """The handout's iterative pruning: before epoch e < prune_epochs prune to
    ``linear_sparsity(e, q_final, prune_epochs)`` percent (7(e+1)% by default). Pruned weights may
    regrow until the final pruning step (epoch prune_epochs - 1); from then on the masks are kept."""

    name = "linear"

    def __init__(self, q_final: float = 70.0, prune_epochs: int = 10, global_: bool = False, **functions):
        prune_epochs = check_int("prune_epochs", prune_epochs, 1)
        super().__init__({e: linear_sparsity(e, q_final, prune_epochs) for e in range(prune_epochs)},
                         keep_between_steps=False, global_=global_, **functions)


class AGPSchedule(_PruneSchedule):
    """Automated gradual pruning (Zhu & Gupta 2017): before epochs start_epoch + j * prune_every
    (j = 0..n_steps-1) prune to ``agp_sparsity`` percent (s_final, s_initial are percentages like
    q). As in the paper the masks are kept between steps, so a pruned weight never comes back and
    each step only adds to the mask."""

    name = "agp"

    def __init__(self, s_final: float, s_initial: float = 0.0, start_epoch: int = 0, n_steps: int = 10,
                 prune_every: int = 1, global_: bool = False, **functions):
        start_epoch = check_int("start_epoch", start_epoch, 0)
        n_steps = check_int("n_steps", n_steps, 1)
        prune_every = check_int("prune_every", prune_every, 1)
        epochs = [start_epoch + j * prune_every for j in range(n_steps)]
        super().__init__({e: agp_sparsity(e, s_final, s_initial, start_epoch, n_steps, prune_every)
                          for e in epochs}, keep_between_steps=True, global_=global_, **functions)
