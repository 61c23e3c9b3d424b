"""Mixed precision (notebook 00, 1.10): bits per layer chosen by each layer's sensitivity under a
size budget.

``bit_sensitivity`` quantizes each prunable layer alone at several bit widths and measures the model;
``allocate_bits`` picks the widths with the best summed measure whose total size fits the budget;
``quantize_layers`` applies an allocation to a copy. The quantizer is a parameter:
``labkit.sharing.share_layer`` (k-means weight sharing) or ``fixed_point_layer`` (the handout's
linear quantizer).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping

import torch
from torch import nn

from labkit import quant
from labkit.checks import check_int
from labkit.prune import prunable_layers
from labkit.sharing import MAX_BITS, share_layer


def fixed_point_layer(layer: nn.Module, bits: int) -> None:
    """Quantize ``layer``'s weight in place with the handout's linear quantizer (``quant.quantize``,
    asymmetric, dynamic range): the fixed-point alternative to ``share_layer``."""
    with torch.no_grad():
        layer.weight.copy_(quant.quantize(layer.weight.detach(), check_int("bits", bits, 1, MAX_BITS)))


def quantize_layers(model: nn.Module, bits: Mapping[str, int], quantize=share_layer) -> nn.Module:
    """A copy of ``model`` with each layer named in ``bits`` quantized in place by
    ``quantize(layer, bits)`` (``share_layer``: k-means sharing; ``fixed_point_layer``)."""
    layers = dict(prunable_layers(model))
    unknown = [n for n in bits if n not in layers]
    if unknown:
        raise ValueError(f"bits has layers {unknown}: allowed are the prunable layers {list(layers)}")
    quantized = copy.deepcopy(model)
    for name, b in bits.items():
        quantize(quantized.get_submodule(name), b)
    return quantized


def bit_sensitivity(model: nn.Module, evaluate_fn, choices=(2, 3, 4, 5, 6), quantize=share_layer
                    ) -> dict[str, dict[int, float]]:
    """{layer: {bits: evaluate_fn(copy)}}: each prunable layer alone quantized at each of ``choices``
    bits (``quantize_layers``; the other layers stay float). ``model`` is left unchanged."""
    choices = [check_int(f"choices[{i}]", b, 1, MAX_BITS) for i, b in enumerate(choices)]
    return {name: {b: float(evaluate_fn(quantize_layers(model, {name: b}, quantize))) for b in choices}
            for name, _ in prunable_layers(model)}


def allocate_bits(sensitivity: Mapping[str, Mapping[int, float]], sizes: Mapping[str, int],
                  budget: int) -> dict[str, int]:
    """Mixed precision: the bits per layer whose summed ``sensitivity`` value (e.g. accuracy with only
    that layer quantized) is largest while sum(sizes[layer] * bits) <= ``budget`` bits. Exhaustive
    over every combination (fine for LeNet-5's 5 layers; refused past a million)."""
    names = list(sensitivity)
    options = [sorted(sensitivity[n]) for n in names]
    if math.prod(map(len, options)) > 1_000_000:
        raise ValueError(f"sensitivity spans {math.prod(map(len, options))} combinations: allowed are at "
                         "most 1,000,000 (fewer layers or bit choices)")
    best, best_value = None, -math.inf
    for combo in itertools.product(*options):
        size = sum(sizes[n] * b for n, b in zip(names, combo, strict=True))
        value = sum(sensitivity[n][b] for n, b in zip(names, combo, strict=True))
        if size <= budget and value > best_value:
            best, best_value = combo, value
    if best is None:
        raise ValueError(f"budget={budget} bits: allowed is at least the smallest choice, "
                         f"{sum(sizes[n] * o[0] for n, o in zip(names, options, strict=True))} bits")
    return dict(zip(names, best, strict=True))
