"""Weight pruning: prunable layers, per-layer and global percentile pruning, masks and the mask step
(``MaskStep``, the one callback that keeps pruned weights at zero), sensitivity scans, the handout's
functions as tensor functions for ``Grader.check_function``, torch.nn.utils.prune interop. Iterative
schedules are ``labkit.schedules``, channel pruning ``labkit.channel_pruning``.

The handout's vocabulary: ``q`` is the percentage (0..100) of weights to prune; a *mask* is a bool
tensor shaped like a layer's weight (True = kept); masks travel as ``{layer name: mask}`` over the
*prunable layers*: those the model declares (``prunable_layer_names``; for a model that declares none,
every Conv2d and Linear except the shortcut projections ``id_mapping``). Only weights are pruned; biases
and BatchNorm stay dense.

The runs take the handout's functions as arguments, so a student's own versions can drive them (labkit's
are the defaults): ``prune_layer(layer, q)`` (``prune_by_percentage``), ``prune_net(net, q)``
(``global_prune_by_percentage``), and the fine-tuning mask step ``make_masks(net) -> masks`` (once)
with ``keep_masks(net, masks)`` (after every optimizer step; ``masks_from_zeros`` / ``apply_masks``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn
from tqdm.auto import tqdm

from labkit.blanks import student_writes
from labkit.train import Callback, fit

# ---------------------------------------------------------------------------------------------------
# Checks


def check_percent(value, name: str) -> float:
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


def submodule(model: nn.Module, name: str, allowed: tuple[type, ...], what: str = "channel pruning"
              ) -> nn.Module:
    """``model``'s submodule ``name``, a ValueError naming it unless it is one of ``allowed`` types."""
    module = model.get_submodule(name)
    if not isinstance(module, allowed):
        raise ValueError(f"{name} is a {type(module).__name__}: {what} handles only "
                         f"{' / '.join(t.__name__ for t in allowed)} there")
    return module


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
        layers = [(name, submodule(net, name, (nn.Conv2d, nn.Linear), "pruning")) for name in names]
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
    q = check_percent(q, "q")
    return _prune_at(layer, _threshold(weight.detach().abs().flatten(), q))


@student_writes("02_pruning_resnet20", used_by=("03_quantization_resnet20", "06_deep_compression"))
def global_prune_by_percentage(net: nn.Module, q: float = 70.0) -> dict[str, torch.Tensor]:
    """Like ``prune_by_percentage`` with ONE threshold: the q-th percentile of |w| over all prunable
    layers together, so layers with small weights end up sparser. Returns masks by layer name."""
    layers = prunable_layers(net)
    q = check_percent(q, "q")
    threshold = _threshold(torch.cat([layer.weight.detach().abs().flatten() for _, layer in layers]), q)
    return {name: _prune_at(layer, threshold) for name, layer in layers}


def prune_to(net: nn.Module, q: float, global_: bool, prune_layer=None, prune_net=None) -> None:
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


class MaskStep(Callback):
    """Keep pruned weights at zero while training: the handout's fine-tuning mask step, the one callback
    every labkit loop uses. ``masks`` (given, else ``make_masks(model)`` once, before the first epoch,
    after ``fit`` has placed the model; default ``masks_from_zeros``), then after every optimizer step
    ``keep_masks(model, masks)``, so neither momentum nor weight decay regrows a pruned weight.

    Without ``keep_masks`` (labkit's own step) the masks are checked against the model and stored in
    each weight's dtype, device and memory format at every epoch start and applied at once; each step
    is then one in-place multiply per layer (stored on first use in a hand-written loop, without
    ``on_epoch_start``). A given ``keep_masks`` (a student's) gets the masks as ``make_masks`` made
    them. Do not combine with ``to_torch_prune``: there torch's own forward hook applies the mask."""

    def __init__(self, masks: Mapping[str, torch.Tensor] | None = None, *, make_masks=None, keep_masks=None):
        self.masks = masks
        self.make_masks = make_masks or masks_from_zeros
        self.keep_masks = keep_masks
        self._stored = None  # labkit's own step: [(weight, mask as a tensor like the weight)]

    def _masks(self, model: nn.Module) -> Mapping[str, torch.Tensor]:
        if self.masks is None:
            self.masks = self.make_masks(model)
        return self.masks

    def _store(self, model: nn.Module) -> None:
        self._stored = [(layer.weight, torch.empty_like(layer.weight).copy_(mask))
                        for layer, mask in _masked_layers(model, _bool_masks(self._masks(model)))]

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:
        if self.keep_masks is not None:
            self._masks(model)
            return
        self._store(model)  # again each epoch: fit may have moved the model
        self.after_step(model)

    def after_step(self, model: nn.Module) -> None:
        if self.keep_masks is not None:
            self.keep_masks(model, self._masks(model))
            return
        if self._stored is None:
            self._store(model)
        with torch.no_grad():
            for weight, mask in self._stored:
                weight.mul_(mask)


def finetune_after_prune(net: nn.Module, data, config, masks: Mapping[str, torch.Tensor] | None = None,
                         *, make_masks=None, keep_masks=None, **fit_kwargs):
    """Fine-tune a pruned ``net`` with ``labkit.train.fit`` while its pruned weights stay zero and
    return fit's ``History``. ``masks`` default to ``make_masks(net)`` (default ``masks_from_zeros``),
    taken once; after every optimizer step ``keep_masks(net, masks)`` (default: labkit's in-place
    multiply) zeros the pruned weights again (``MaskStep``). Pass the handout's two pieces to run a
    student's own mask step. Extra keyword arguments go to ``fit`` (its ``callbacks`` run after the mask
    step)."""
    step = MaskStep(masks, make_masks=make_masks, keep_masks=keep_masks)
    return fit(net, data, config, callbacks=(step, *fit_kwargs.pop("callbacks", ())), **fit_kwargs)


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
    qs = [check_percent(q, f"sparsities[{i}]") for i, q in enumerate(sparsities)]
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
