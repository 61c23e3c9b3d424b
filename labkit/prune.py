"""Weight pruning: masks, per-layer and global percentile pruning, schedules, channel pruning.

The handout's vocabulary: ``q`` is the percentage (0..100) of weights to prune; a *mask* is a bool
tensor shaped like a layer's weight (True = kept); masks travel as ``{layer name: mask}`` over the
*prunable layers*: those the model declares (``prunable_layer_names``; for a model that declares none,
every Conv2d and Linear except the shortcut projections ``id_mapping``). Only weights are pruned; biases
and BatchNorm stay dense. Channel pruning removes the ``channel_groups`` the model declares.

The runs take the handout's functions as arguments, so a student's own versions can drive them (labkit's
are the defaults): ``prune_layer(layer, q)`` (``prune_by_percentage``), ``prune_net(net, q)``
(``global_prune_by_percentage``), and the fine-tuning mask step ``make_masks(net) -> masks`` (once)
with ``keep_masks(net, masks)`` (after every optimizer step; ``masks_from_zeros`` / ``apply_masks``).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn
from tqdm.auto import tqdm

from labkit.blanks import student_writes
from labkit.checks import check_int
from labkit.train import Callback, fit

# ---------------------------------------------------------------------------------------------------
# Checks


def _check_percent(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r}: allowed is a number in 0..100 (a percentage)")
    if not 0 <= value <= 100:  # NaN fails here too
        raise ValueError(f"{name}={value!r}: allowed is a number in 0..100 (a percentage)")
    return float(value)


def _weight(layer) -> torch.Tensor:
    if not isinstance(layer, nn.Module) or not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise TypeError(f"layer={type(layer).__name__}: allowed is a module with a weight tensor "
                        "(nn.Conv2d, nn.Linear)")
    return layer.weight


# ---------------------------------------------------------------------------------------------------
# Prunable layers and percentile pruning


def prunable_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every prunable layer, in the order the model declares them
    (``prunable_layer_names``, as every ``labkit.models`` network does: 20 for ResNet-20, 5 for
    LeNet-5); for a model that declares none, every nn.Conv2d / nn.Linear (quantized subclasses
    included) except the shortcuts (``id_mapping`` in the name), in module order."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net={type(net).__name__}: allowed is an nn.Module")
    names = getattr(net, "prunable_layer_names", None)
    if names is None:
        layers = [(name, m) for name, m in net.named_modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear)) and "id_mapping" not in name]
    else:
        layers = [(name, _module(net, name, (nn.Conv2d, nn.Linear), "pruning")) for name in names]
    if not layers:
        raise ValueError(f"net={type(net).__name__} has no prunable layer: allowed is a model with a Conv2d "
                         "or Linear outside id_mapping, or one that declares prunable_layer_names")
    return layers


@student_writes("02_pruning_resnet20", used_by=("03_quantization_resnet20", "05_lenet5_pruning",
                                                "06_deep_compression"))  # a blank's answer
def _threshold(magnitudes: torch.Tensor, q: float) -> torch.Tensor:
    """``np.percentile(magnitudes, q)`` (linear interpolation), computed as numpy computes it in the
    tensor's dtype; two ``kthvalue`` calls, so any size works (older ``torch.quantile`` refuses more
    than 2**24 elements)."""
    if not torch.isfinite(magnitudes).all():
        raise ValueError("the weights hold NaN or Inf: percentile pruning needs finite weights")
    n = magnitudes.numel()
    if n == 0:
        raise ValueError("the weight is empty: percentile pruning needs at least one weight")
    index = (n - 1) * (q / 100)
    lo = math.floor(index)
    t = index - lo
    a = magnitudes.kthvalue(lo + 1).values
    b = magnitudes.kthvalue(min(lo + 1, n - 1) + 1).values
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


@student_writes("02_pruning_resnet20", used_by=("03_quantization_resnet20", "05_lenet5_pruning",
                                                "06_deep_compression"))  # a blank's answer
def _prune_at(layer: nn.Module, threshold: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        mask = layer.weight.abs() > threshold
        layer.weight.mul_(mask)
    return mask


@student_writes("02_pruning_resnet20", used_by=("05_lenet5_pruning", "06_deep_compression"))
def prune_by_percentage(layer: nn.Module, q: float = 70.0) -> torch.Tensor:
    """Prune ``layer.weight`` in place by the handout's rule and return the mask (True = kept).

    threshold = the q-th percentile of |w| (``np.percentile``'s linear interpolation); a weight is
    kept iff |w| > threshold. Ties at the threshold are all pruned, so the sparsity can exceed q%.
    q=0: threshold = min |w|, so the smallest-magnitude weight(s) are still pruned (exact zeros among
    them); q=100: threshold = max |w|, everything is pruned. Ranking by w**2 (seed 000's importance)
    gives the same order as |w|, hence the same masks: there is no separate function for it.
    """
    weight = _weight(layer)
    q = _check_percent(q, "q")
    return _prune_at(layer, _threshold(weight.detach().abs().flatten(), q))


@student_writes("02_pruning_resnet20", used_by=("03_quantization_resnet20", "06_deep_compression"))
def global_prune_by_percentage(net: nn.Module, q: float = 70.0) -> dict[str, torch.Tensor]:
    """Like ``prune_by_percentage`` with ONE threshold: the q-th percentile of |w| over all prunable
    layers together, so layers with small weights end up sparser. Returns masks by layer name."""
    layers = prunable_layers(net)
    q = _check_percent(q, "q")
    threshold = _threshold(torch.cat([layer.weight.detach().abs().flatten() for _, layer in layers]), q)
    return {name: _prune_at(layer, threshold) for name, layer in layers}


def _prune(net: nn.Module, q: float, global_: bool, prune_layer=None, prune_net=None) -> None:
    """Prune every prunable layer of ``net`` to q percent: ``prune_net(net, q)`` if ``global_`` (default
    ``global_prune_by_percentage``), else ``prune_layer(layer, q)`` per layer (default
    ``prune_by_percentage``). Their return values are not used: the masks are read from the zeros."""
    if global_:
        (prune_net or global_prune_by_percentage)(net, q)
        return
    for _, layer in prunable_layers(net):
        (prune_layer or prune_by_percentage)(layer, q)


def pruned_smallest(before: Mapping[str, torch.Tensor], net: nn.Module, global_: bool = False) -> bool:
    """Did a pruning step remove the smallest weights? ``before``: each prunable layer's weight (or |w|)
    before the step, by name; ``net``: after it. True iff every weight that is zero now had a magnitude
    no larger than every weight that is nonzero now, within each layer, or over all layers together
    with ``global_`` (what one threshold for all layers gives; per-layer thresholds do not)."""
    pruned_max, kept_min = [], []
    for layer, old in _masked_layers(net, before):
        magnitude = old.detach().abs().to(layer.weight.device)
        kept = layer.weight.detach() != 0
        pruned_max.append(magnitude[~kept].max() if (~kept).any() else magnitude.new_tensor(-math.inf))
        kept_min.append(magnitude[kept].min() if kept.any() else magnitude.new_tensor(math.inf))
    if not pruned_max:
        return True
    if global_:
        return bool(torch.stack(pruned_max).max() <= torch.stack(kept_min).min())
    return all(bool(p <= k) for p, k in zip(pruned_max, kept_min, strict=True))


# ---------------------------------------------------------------------------------------------------
# Masks


def _masked_layers(net: nn.Module, masks) -> list[tuple[nn.Module, torch.Tensor]]:
    """``(layer, mask)`` for each entry of ``masks``, checked against ``net``'s prunable layers."""
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks={type(masks).__name__}: allowed is a dict {{layer name: mask tensor}}")
    layers = dict(prunable_layers(net))
    pairs = []
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"masks has layer name {name!r}: allowed are the prunable layers "
                             f"{', '.join(layers)}")
        shape = tuple(layers[name].weight.shape)
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != shape:
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"masks[{name!r}] has shape {got}: allowed is the weight's shape {shape}")
        pairs.append((layers[name], mask))
    return pairs


def _bool_masks(masks) -> dict[str, torch.Tensor]:
    """``masks`` as bool tensors (True = kept): a mask of 0s and 1s is read as one, any other value (0.5
    would scale the weights, 2 would grow them) is refused naming its layer."""
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks={type(masks).__name__}: allowed is a dict {{layer name: mask tensor}}")
    out = {}
    for name, mask in masks.items():
        if isinstance(mask, torch.Tensor) and mask.dtype != torch.bool:
            if not ((mask == 0) | (mask == 1)).all():
                raise ValueError(f"masks[{name!r}] holds values other than 0 and 1 ({mask.dtype}): allowed "
                                 "is a bool tensor (True = kept), as prune_by_percentage returns")
            mask = mask != 0
        out[name] = mask
    return out


def apply_masks(net: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, the weights whose mask entry is False/0 (layers missing from ``masks`` are
    left alone)."""
    with torch.no_grad():
        for layer, mask in _masked_layers(net, _bool_masks(masks)):
            layer.weight.mul_(mask.to(layer.weight.device))


def masks_from_zeros(net: nn.Module) -> dict[str, torch.Tensor]:
    """The handout's ``finetune_after_prune`` start: mask = (weight != 0) for every prunable layer."""
    return {name: layer.weight.detach() != 0 for name, layer in prunable_layers(net)}


def sparsity_report(net: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights per prunable layer (name -> float), plus the key ``"total"``:
    zeros / weights over all prunable layers together."""
    report, zeros, total = {}, 0, 0
    for name, layer in prunable_layers(net):
        z, n = int((layer.weight == 0).sum()), layer.weight.numel()
        report[name] = z / n
        zeros, total = zeros + z, total + n
    report["total"] = zeros / total
    return report


def format_sparsity(report: Mapping[str, float]) -> str:
    """The handout's lines ``Sparsity of NAME: VALUE``, then ``Total sparsity: VALUE``."""
    lines = [f"Sparsity of {name}: {value}" for name, value in report.items() if name != "total"]
    return "\n".join([*lines, f"Total sparsity: {report['total']}"])


class KeepMasks(Callback):
    """Keep pruned weights at zero while training: after every optimizer step, weight *= mask, so
    neither momentum nor weight decay regrows a pruned weight.

    ``on_epoch_start`` checks the masks against the model, stores them in each weight's dtype, device
    and memory format, and applies them; ``after_step`` is then one in-place multiply per layer (it
    stores the masks itself when called without ``on_epoch_start``, as in a hand-written loop).
    Do not combine with ``to_torch_prune``: there torch's own forward hook applies the mask.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks = masks
        self._stored = None  # [(weight, mask as a tensor like the weight)]

    def _store(self, model: nn.Module) -> None:
        self._stored = [(layer.weight, torch.empty_like(layer.weight).copy_(mask))
                        for layer, mask in _masked_layers(model, _bool_masks(self.masks))]

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        self._store(model)  # again each epoch: fit may have moved the model
        self.after_step(model)

    def after_step(self, model: nn.Module) -> None:
        if self._stored is None:
            self._store(model)
        with torch.no_grad():
            for weight, mask in self._stored:
                weight.mul_(mask)


class MaskStep(Callback):
    """The handout's fine-tuning mask step with given functions: ``masks = make_masks(model)`` once,
    before the first epoch (after ``fit`` has placed the model; skipped when ``masks`` are given), then
    ``keep_masks(model, masks)`` after every optimizer step, as in the handout's ``finetune_after_prune``.
    With labkit's ``masks_from_zeros`` / ``apply_masks`` (the defaults) it does what ``KeepMasks`` does
    for masks read from the zeros."""

    def __init__(self, make_masks=None, keep_masks=None, masks: Mapping[str, torch.Tensor] | None = None):
        self.make_masks = make_masks or masks_from_zeros
        self.keep_masks = keep_masks or apply_masks
        self.masks = masks

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        if self.masks is None:
            self.masks = self.make_masks(model)

    def after_step(self, model: nn.Module) -> None:
        if self.masks is None:
            self.masks = self.make_masks(model)
        self.keep_masks(model, self.masks)


def _mask_callback(make_masks, keep_masks, masks=None) -> Callback:
    """``KeepMasks`` (labkit's fast mask step) unless a function of the mask step is given."""
    if make_masks is None and keep_masks is None:
        return KeepMasks(masks)
    return MaskStep(make_masks, keep_masks, masks)


def finetune_after_prune(net: nn.Module, data, config, masks: Mapping[str, torch.Tensor] | None = None,
                         *, make_masks=None, keep_masks=None, **fit_kwargs):
    """Fine-tune a pruned ``net`` with ``labkit.train.fit`` while its pruned weights stay zero and
    return fit's ``History``. ``masks`` default to ``make_masks(net)`` (default ``masks_from_zeros``),
    taken once; after every optimizer step ``keep_masks(net, masks)`` (default: labkit's ``KeepMasks``)
    zeros the pruned weights again. Pass the handout's two pieces to run a student's own mask step.
    Extra keyword arguments go to ``fit`` (its ``callbacks`` run after the mask step)."""
    if masks is None and make_masks is None:
        masks = masks_from_zeros(net)
    callbacks = (_mask_callback(make_masks, keep_masks, masks), *fit_kwargs.pop("callbacks", ()))
    return fit(net, data, config, callbacks=callbacks, **fit_kwargs)


# ---------------------------------------------------------------------------------------------------
# Iterative pruning schedules


def linear_sparsity(epoch: int, q_final: float = 70.0, prune_epochs: int = 10) -> float:
    """Percent the handout's linear schedule prunes to before epoch ``epoch`` (0-based):
    q_final * (epoch + 1) / prune_epochs, held at q_final from epoch prune_epochs - 1 on."""
    epoch = check_int("epoch", epoch, 0)
    q_final = _check_percent(q_final, "q_final")
    prune_epochs = check_int("prune_epochs", prune_epochs, 1)
    return q_final * min(epoch + 1, prune_epochs) / prune_epochs


def agp_sparsity(epoch: int, s_final: float, s_initial: float = 0.0, start_epoch: int = 0,
                 n_steps: int = 10, prune_every: int = 1) -> float:
    """Percent AGP (Zhu & Gupta 2017) prunes to before epoch ``epoch``: the k-th step (k = 1..n_steps,
    before epoch start_epoch + (k - 1) * prune_every) targets s_f + (s_i - s_f) * (1 - k / n_steps)**3,
    i.e. the paper's s_t with t - t0 = k * dt, so the last step reaches s_final. Before start_epoch:
    s_initial (the paper's step k = 0, which prunes nothing new, is skipped)."""
    epoch = check_int("epoch", epoch, 0)
    s_final, s_initial = _check_percent(s_final, "s_final"), _check_percent(s_initial, "s_initial")
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
            _prune(model, q, self.global_, self.prune_layer, self.prune_net)
            self.steps.append({"epoch": epoch, "q": q, "sparsity": sparsity_report(model)["total"],
                               "by_magnitude": pruned_smallest(before, model, self.global_)})
            final = epoch == max(self.targets)
            keep = final or self.keep_between_steps
            self._keep = None
            if keep:  # the masks of this step, read from its zeros
                self._keep = _mask_callback(self.make_masks, self.keep_masks,
                                            masks_from_zeros(model) if self.make_masks is None else None)
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


# ---------------------------------------------------------------------------------------------------
# The handout's functions as tensor -> tensor functions, so ``Grader.check_function`` can run a
# student's version on stored weights


def _layer_holding(weight: torch.Tensor) -> nn.Module:
    """A bias-free nn.Linear (2-D ``weight``) or nn.Conv2d (4-D) holding a copy of ``weight``."""
    if not isinstance(weight, torch.Tensor) or weight.dim() not in (2, 4):
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight of shape {got}: allowed is a 2-D (Linear) or 4-D (Conv2d) tensor")
    out_ch, in_ch, *kernel = weight.shape
    layer = nn.Conv2d(in_ch, out_ch, kernel, bias=False) if kernel else nn.Linear(in_ch, out_ch, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _net_holding(weights: Mapping[str, torch.Tensor]) -> nn.ModuleDict:
    return nn.ModuleDict({name: _layer_holding(w) for name, w in weights.items()})


def _weights_of(net: nn.ModuleDict) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in net.items()}


def on_weight(prune_layer):
    """``prune_layer(layer, q)``, which prunes a layer in place (the handout's
    ``prune_by_percentage``), as ``(weight, q) -> pruned weight`` on a copy of ``weight``."""
    def pruned_weight(weight: torch.Tensor, q: float) -> torch.Tensor:
        layer = _layer_holding(weight)
        prune_layer(layer, q)
        return layer.weight.detach()

    pruned_weight.__name__ = getattr(prune_layer, "__name__", "prune_layer")
    return pruned_weight


def on_weights(prune_net):
    """``prune_net(net, q)`` (the handout's ``global_prune_by_percentage``) as
    ``({layer name: weight}, q) -> {layer name: pruned weight}``, run on an nn.ModuleDict of bias-free
    layers with those names (so a layer named ``id_mapping`` must be left alone)."""
    def pruned_weights(weights: Mapping[str, torch.Tensor], q: float) -> dict[str, torch.Tensor]:
        net = _net_holding(weights)
        prune_net(net, q)
        return _weights_of(net)

    pruned_weights.__name__ = getattr(prune_net, "__name__", "prune_net")
    return pruned_weights


def mask_step_on_weights(make_masks, keep_masks):
    """The fine-tuning mask step as ``(pruned, stepped) -> weights`` (dicts by layer name):
    ``masks = make_masks(net)`` on a net holding the ``pruned`` weights; the weights then become
    ``stepped`` (as after ``optimizer.step()``) and ``keep_masks(net, masks)`` runs. Right: the
    pruned weights are zero again and the others are as in ``stepped``. Named after ``keep_masks``."""
    def mask_step(pruned: Mapping[str, torch.Tensor], stepped: Mapping[str, torch.Tensor]):
        net = _net_holding(pruned)
        masks = make_masks(net)
        with torch.no_grad():
            for name, layer in net.items():
                layer.weight.copy_(stepped[name])
        keep_masks(net, masks)
        return _weights_of(net)

    mask_step.__name__ = getattr(keep_masks, "__name__", "keep_masks")  # the check names the student's step
    return mask_step


# ---------------------------------------------------------------------------------------------------
# Sensitivity scan


def sensitivity_scan(net: nn.Module, evaluate_fn, sparsities, layers=None, prune_layer=None,
                     progress: bool = False) -> dict[str, list[float]]:
    """Prune one layer at a time to each of ``sparsities`` (percent) with ``prune_layer(layer, q)``
    (default ``prune_by_percentage``) and record ``evaluate_fn(net)`` (e.g. accuracy): {layer name:
    [value per sparsity]}. ``layers`` defaults to all prunable layers. Each layer's weight is restored
    after every evaluation (also when ``evaluate_fn`` or ``prune_layer`` raises), as is the train/eval
    mode, so ``net`` is left unchanged. ``progress``: a bar over the layers."""
    if prune_layer is not None and not callable(prune_layer):
        raise TypeError(f"prune_layer={prune_layer!r}: allowed is None (labkit's) or a function")
    prune_layer = prune_layer or prune_by_percentage
    all_layers = dict(prunable_layers(net))
    names = list(all_layers) if layers is None else list(layers)
    unknown = [name for name in names if name not in all_layers]
    if unknown:
        raise ValueError(f"layers={unknown}: allowed are the prunable layers {', '.join(all_layers)}")
    qs = [_check_percent(q, f"sparsities[{i}]") for i, q in enumerate(sparsities)]
    was_training = net.training
    results = {}
    for name in tqdm(names, desc="sensitivity scan", unit="layer", disable=not progress, leave=False):
        layer = all_layers[name]
        original = layer.weight.detach().clone()
        results[name] = []
        for q in qs:
            try:
                prune_layer(layer, q)
                results[name].append(float(evaluate_fn(net)))
            finally:
                with torch.no_grad():
                    layer.weight.copy_(original)
                net.train(was_training)
    return results


# ---------------------------------------------------------------------------------------------------
# torch.nn.utils.prune interop


def to_torch_prune(net: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Hand ``masks`` to ``torch.nn.utils.prune.custom_from_mask``: each layer gets ``weight_orig``
    (a parameter) and ``weight_mask`` (a buffer), and its forward uses weight_orig * weight_mask."""
    for layer, mask in _masked_layers(net, _bool_masks(masks)):
        torch_prune.custom_from_mask(layer, "weight", mask.to(layer.weight.device))


def from_torch_prune(net: nn.Module) -> dict[str, torch.Tensor]:
    """Read the ``weight_mask`` of every prunable layer pruned with ``torch.nn.utils.prune``, make the
    pruning permanent (``prune.remove``: weight = weight_orig * mask, a plain parameter again) and
    return the masks as bool tensors by layer name."""
    pruned = [(name, layer) for name, layer in prunable_layers(net) if hasattr(layer, "weight_mask")]
    if not pruned:
        raise ValueError(f"net={type(net).__name__}: no prunable layer carries torch.nn.utils.prune's "
                         "weight_mask; allowed is a net pruned with torch.nn.utils.prune")
    masks = {}
    for name, layer in pruned:
        masks[name] = layer.weight_mask.detach().bool()
        torch_prune.remove(layer, "weight")
    return masks


# ---------------------------------------------------------------------------------------------------
# Channel pruning


@dataclass(frozen=True)
class _ChannelCut:
    """Output channels ``keep`` of conv ``producer`` survive; the BatchNorm ``norm`` after it (if
    any) keeps the same entries and ``consumer`` the matching inputs (``block`` per channel)."""

    producer: str
    norm: str | None
    consumer: str
    keep: torch.Tensor
    block: int

    def input_index(self) -> torch.Tensor:
        offsets = torch.arange(self.block, device=self.keep.device)
        return (self.keep[:, None] * self.block + offsets).flatten()


def _channel_groups(model: nn.Module) -> list[tuple[str, str | None, str]]:
    """The model's declared ``channel_groups``: (producer conv, its BatchNorm or None, consumer)."""
    groups = list(getattr(model, "channel_groups", ()))
    if not groups:
        raise ValueError(f"model={type(model).__name__} declares no channel_groups: allowed are models with "
                         "conv layers that declare them (labkit.models' LeNet5, LeNet5Caffe, ResNetCIFAR)")
    return groups


def _module(model: nn.Module, name: str, allowed: tuple[type, ...], what: str = "channel pruning"
            ) -> nn.Module:
    module = model.get_submodule(name)
    if not isinstance(module, allowed):
        raise ValueError(f"{name} is a {type(module).__name__}: {what} handles only "
                         f"{' / '.join(t.__name__ for t in allowed)} there")
    return module


def _channel_cuts(model: nn.Module, ratio: float) -> list[_ChannelCut]:
    """Which output channels survive, chosen on ``model``'s current weights: the
    max(1, round((1 - ratio) * C)) of largest L2 norm (ties: lower index first), in channel order."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"ratio={ratio!r}: allowed is a number in [0, 1)")
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio={ratio!r}: allowed is a fraction in [0, 1) of output channels to remove")
    cuts = []
    for producer_name, norm_name, consumer_name in _channel_groups(model):
        producer = _module(model, producer_name, (nn.Conv2d,))
        if norm_name is not None:
            _module(model, norm_name, (nn.BatchNorm2d,))
        consumer = _module(model, consumer_name, (nn.Conv2d, nn.Linear))
        channels = producer.weight.shape[0]
        n_keep = max(1, round((1 - ratio) * channels))
        norms = producer.weight.detach().flatten(1).norm(dim=1)
        keep = norms.argsort(descending=True, stable=True)[:n_keep].sort().values
        cuts.append(_ChannelCut(producer_name, norm_name, consumer_name, keep,
                                consumer.weight.shape[1] // channels))
    return cuts


def channel_masks(model: nn.Module, ratio: float, keep_fn=None) -> dict[str, torch.Tensor]:
    """Masks equivalent to ``channel_prune(model, ratio, keep_fn)``: the removed output channels of each
    producer conv AND the matching input channels / features of the consumer are masked. Masking the
    consumer's inputs is what makes it exact: a zeroed channel still leaves ReLU(BN(0)) or ReLU(bias)
    != 0, which the consumer now ignores, so BatchNorm and biases need no change. After
    ``apply_masks(copy, masks)`` the copy computes what the physical model computes (train or eval
    mode) and its nonzero weights in these layers are the physical model's weights."""
    masks: dict[str, torch.Tensor] = {}
    for cut in _cuts(model, ratio, keep_fn):
        producer, consumer = model.get_submodule(cut.producer), model.get_submodule(cut.consumer)
        rows = torch.zeros_like(producer.weight, dtype=torch.bool)
        rows[cut.keep] = True
        cols = torch.zeros_like(consumer.weight, dtype=torch.bool)
        cols[:, cut.input_index()] = True
        masks[cut.producer] = masks.get(cut.producer, True) & rows
        masks[cut.consumer] = masks.get(cut.consumer, True) & cols
    return masks


def _index_(module: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    """Keep only ``index`` along ``dim`` of the parameter or buffer ``module.<name>`` (None: skip)."""
    old = getattr(module, name)
    if old is None:
        return
    new = old.detach().index_select(dim, index)
    setattr(module, name, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new)


def channel_prune(model: nn.Module, ratio: float, keep_fn=None) -> nn.Module:
    """A physically smaller deep copy of ``model`` (which is left unchanged): in each producer conv
    keep the max(1, round((1 - ratio) * C)) output channels of largest L2 norm, together with the
    following BatchNorm's entries and the next layer's matching inputs, for each of the model's
    ``channel_groups``. LeNet-5: conv1 (-> conv2) and
    conv2 (-> fc1, whose input features come in 5x5 blocks per channel). ResNet-20: the inner
    channels of each basic block (conv1 outputs, bn1, conv2 inputs); the residual width is intact.
    Layer classes (quantized ones included) are kept; their size attributes are updated. ``keep_fn``
    (see ``_cuts``) chooses the kept channels instead, e.g. a student's ``channels_to_keep``."""
    cuts = _cuts(model, ratio, keep_fn)
    small = copy.deepcopy(model)
    for cut in cuts:
        producer = small.get_submodule(cut.producer)
        for name in ("weight", "bias"):
            _index_(producer, name, 0, cut.keep)
        producer.out_channels = len(cut.keep)
        if cut.norm is not None:
            norm = small.get_submodule(cut.norm)
            for name in ("weight", "bias", "running_mean", "running_var"):
                _index_(norm, name, 0, cut.keep)
            norm.num_features = len(cut.keep)
        consumer = small.get_submodule(cut.consumer)
        _index_(consumer, "weight", 1, cut.input_index())
        size = "in_channels" if isinstance(consumer, nn.Conv2d) else "in_features"
        setattr(consumer, size, consumer.weight.shape[1])
    return small


def _cuts(model: nn.Module, ratio: float, keep_fn=None) -> list[_ChannelCut]:
    """``_channel_cuts``, or with each producer's kept channels chosen by ``keep_fn(weight, ratio)``, a
    bool tensor of length C_out (True = kept)."""
    if keep_fn is None:
        return _channel_cuts(model, ratio)
    cuts = []
    for cut in _channel_cuts(model, ratio):  # checks the ratio and the architecture
        weight = model.get_submodule(cut.producer).weight.detach()
        keep = torch.as_tensor(keep_fn(weight.clone(), ratio))
        if keep.dtype != torch.bool or tuple(keep.shape) != (weight.shape[0],):
            name = getattr(keep_fn, "__name__", keep_fn)
            raise ValueError(f"keep_fn={name!r} returned {keep.dtype} of shape "
                             f"{tuple(keep.shape)} for {cut.producer}: allowed is a bool tensor of shape "
                             f"({weight.shape[0]},), True for each output channel kept")
        index = keep.nonzero().flatten().to(cut.keep.device)
        if not len(index):
            raise ValueError(f"keep_fn keeps no output channel of {cut.producer}: allowed is at least one")
        cuts.append(_ChannelCut(cut.producer, cut.norm, cut.consumer, index, cut.block))
    return cuts


def keeps_largest_channels(weight: torch.Tensor, keep, ratio: float) -> bool:
    """Whether ``keep`` (bool per output channel of a conv ``weight``) is channel pruning's choice at
    ``ratio``: exactly max(1, round((1 - ratio) C_out)) channels, none with a smaller L2 norm than a
    removed one (ties may go either way)."""
    keep = torch.as_tensor(keep)
    norms = weight.detach().flatten(1).norm(dim=1)
    if keep.dtype != torch.bool or keep.shape != norms.shape:
        return False
    n_keep = max(1, round((1 - ratio) * len(norms)))
    if int(keep.sum()) != n_keep:
        return False
    return n_keep == len(norms) or bool(norms[keep].min() >= norms[~keep].max())
