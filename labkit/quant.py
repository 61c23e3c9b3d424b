"""Fixed-point fake quantization: the handout's STE quantizer, quantized Conv2d / Linear layers, and LSQ.

Two ways to train a quantized network:

* ``STE`` (Lab 3): linear quantization with dynamic scaling. The scale comes from the weights
  themselves at every step (max - min, or max |w|); the gradient passes straight through.
  ``QConv2d`` / ``QLinear`` apply it to their weight; ``quantizer=`` swaps in another forward pass
  (Lab 3's student ``ste_forward``), the backward pass stays straight through.
* LSQ (Esser et al. 2020, "Learned Step Size Quantization"): the step size is a parameter learned
  with the weights. ``LSQQuantizer`` holds it; ``LSQConv2d`` / ``LSQLinear`` use one for the weight
  (and optionally one for the input); ``lsq_quantize_model`` converts a float model.

Non-finite weights: the training forward pass does no value checks, because reading a value on the
host (``.item()``, ``if tensor:``) would stall a GPU at every step. Instead ``STE`` guarantees that a
NaN or Inf anywhere in ``w`` makes every element of ``w_q`` NaN (for ``bit >= 1``), so the loss turns
NaN at that very step. ``quantize`` is the checked entry point: it raises on non-finite input.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from labkit.blanks import student_writes
from labkit.checks import check_int

MAX_BIT = 16


def check_bit(bit, symmetric: bool = False) -> None:
    """Raise unless ``bit`` is None, 0 or an int in 1..16 (2..16 when symmetric)."""
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric={symmetric!r}: allowed are True or False")
    if bit is None:
        return
    check_int("bit", bit, 0, MAX_BIT, f"None, 0 or an int in 1..{MAX_BIT}")
    if symmetric and bit == 1:
        raise ValueError("bit=1 with symmetric=True: symmetric levels are k/(2^(bit-1)-1), which has no "
                         "level but 0 at 1 bit; use bit >= 2, or asymmetric 1-bit (levels min and max)")


@student_writes("03_quantization_resnet20")
def _scaling(w: torch.Tensor, bit: int, symmetric: bool):
    """``(x, alpha, beta, step)`` of the handout's dynamic scaling: ``x`` is ``w`` in at least float32
    and the quantization levels are alpha k / step + beta for integers k. Asymmetric: alpha = max - min,
    beta = min, k = 0..step = 2^bit - 1. Symmetric: alpha = max|w|, beta = 0, |k| <= step = 2^(bit-1) - 1.
    alpha is at least the smallest normal float, so an all-zero or constant tensor gives no 0/0."""
    x = w.to(torch.promote_types(w.dtype, torch.float32))
    tiny = torch.finfo(x.dtype).tiny
    if symmetric:
        return x, x.abs().max().clamp_min(tiny), 0.0, 2 ** (bit - 1) - 1
    beta = x.min()
    return x, (x.max() - beta).clamp_min(tiny), beta, 2**bit - 1  # constant w: w_s = 0, w_q = beta = w


@student_writes("03_quantization_resnet20")
def _fake_quant(w: torch.Tensor, bit, symmetric: bool) -> torch.Tensor:
    """The handout's formulas, as tensor ops only (no host sync); computed in at least float32."""
    if bit is None:
        return w
    if bit == 0:
        return w * 0
    x, alpha, beta, step = _scaling(w, bit, symmetric)
    ws = (x - beta) / alpha  # in [0, 1] (symmetric: [-1, 1])
    wq = torch.round(ws * step) / step * alpha + beta
    return (wq * (w != 0)).to(w.dtype)  # pruned zeros stay exactly zero


class STE(torch.autograd.Function):
    """Straight-through estimator: ``STE.apply(w, bit, symmetric=False, quantizer=None)``.

    Forward: ``bit`` None -> ``w``; 0 -> zeros; otherwise linear quantization with dynamic scaling.
    Asymmetric: alpha = max(w) - min(w), beta = min(w), R = round((w - beta)/alpha (2^bit - 1)) /
    (2^bit - 1), w_q = alpha R + beta. Symmetric: R = round(w/max|w| (2^(bit-1) - 1)) / (2^(bit-1) - 1),
    w_q = R max|w|. Zeros of ``w`` (pruned weights) stay exactly zero. A constant tensor maps to
    itself, an all-zero one to zeros; a NaN/Inf in ``w`` makes all of ``w_q`` NaN (module docstring).
    ``quantizer``: another forward pass ``quantizer(w, bit, symmetric) -> w_q`` to use instead of
    labkit's (Lab 3's ``ste_forward``, the student's); None: labkit's.
    Backward: the gradient reaches ``w`` unchanged, whichever forward pass ran.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, bit, symmetric: bool = False, quantizer=None) -> torch.Tensor:
        check_bit(bit, symmetric)
        if quantizer is None:
            return _fake_quant(w, bit, symmetric)
        return quantizer(w, bit, symmetric)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None, None


def _check_weights(w, bit, symmetric) -> None:
    check_bit(bit, symmetric)
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"w={type(w).__name__} {getattr(w, 'dtype', '')}: allowed is a floating-point tensor")
    if w.numel() == 0:
        raise ValueError("w is empty: allowed is a tensor with at least one weight")
    if not torch.isfinite(w).all():
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"w holds {bad} NaN/Inf values: quantization needs finite weights")
    if not torch.isfinite(w.max() - w.min()):
        raise ValueError(f"w spans {float(w.min()):g}..{float(w.max()):g}: its range overflows {w.dtype}; "
                         "allowed are weights whose max - min is finite")


def quantize(w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
    """The STE forward as a plain function (no autograd); raises ValueError on NaN/Inf in ``w``."""
    _check_weights(w, bit, symmetric)
    with torch.no_grad():
        return _fake_quant(w, bit, symmetric)


def quantization_levels(w: torch.Tensor, bit: int, symmetric: bool = False, quantizer=None) -> torch.Tensor:
    """The values ``quantizer(w, bit, symmetric)`` (default labkit's) can give a nonzero element of ``w``,
    ascending: 2^bit levels from min(w) to max(w) (asymmetric), or 2^bit - 1 levels from -max|w| to max|w|
    through 0 (symmetric); ``bit`` in 1..16 (2..16 when symmetric). Pruned zeros also stay 0. Read off
    the quantizer itself: its outputs on nonzero points 1/4 level apart over that range (which has the
    same dynamic scale as ``w``)."""
    check_int("bit", bit, 1, MAX_BIT)
    _check_weights(w, bit, symmetric)
    x = w.detach().to(torch.promote_types(w.dtype, torch.float32)).flatten()
    top = x.abs().max()
    lo, hi = (-top, top) if symmetric else (x.min(), x.max())
    points = torch.linspace(float(lo), float(hi), 2 ** (bit + 2) + 1, dtype=x.dtype)
    points = points[points != 0]
    with torch.no_grad():
        out = (quantizer or _fake_quant)(points, bit, symmetric)
    return torch.unique(out).to(w.dtype)


def zeros_of(quantizer):
    """``quantizer(w, bit, symmetric)`` (an STE forward pass, e.g. a student's) as a function with the
    same arguments and name that returns where its output is exactly 0 (a bool tensor): the exact
    check that pruned zeros stay zero, next to a value check with a tolerance."""
    def zeros(w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
        return quantizer(w, bit, symmetric) == 0

    zeros.__name__ = getattr(quantizer, "__name__", "quantizer")
    return zeros


def check_quantizer(quantizer) -> None:
    """Raise unless ``quantizer`` is None (labkit's STE forward) or a function ``(w, bit, symmetric)``."""
    if quantizer is not None and not callable(quantizer):
        raise TypeError(f"quantizer={quantizer!r}: allowed are None (labkit's STE forward pass) or a "
                        "function quantizer(w, bit, symmetric) -> w_q")


class _STEWeight:
    """Mixin for nn.Conv2d / nn.Linear: forward uses ``quantized_weight()`` (the STE of the weight,
    whose forward pass is ``quantizer``, default labkit's); parameters and state_dict keys stay those
    of the plain layer."""

    def __init__(self, *args, nbits=None, symmetric: bool = False, quantizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        check_bit(nbits, symmetric)
        check_quantizer(quantizer)
        self.nbits, self.symmetric, self.quantizer = nbits, symmetric, quantizer

    def quantized_weight(self) -> torch.Tensor:
        return STE.apply(self.weight, self.nbits, self.symmetric, self.quantizer)

    def extra_repr(self) -> str:
        name = getattr(self.quantizer, "__name__", "?")
        quantizer = "" if self.quantizer is None else f", quantizer={name}"
        return f"{super().extra_repr()}, nbits={self.nbits}, symmetric={self.symmetric}{quantizer}"


class QConv2d(_STEWeight, nn.Conv2d):
    """nn.Conv2d whose weight goes through the STE quantizer in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(_STEWeight, nn.Linear):
    """nn.Linear whose weight goes through the STE quantizer in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


def fixed_point_report(model: nn.Module) -> dict[str, dict]:
    """For every STE layer of ``model`` (``QConv2d`` / ``QLinear`` with ``nbits`` set), what its forward
    pass really uses, computed by its own ``quantized_weight()`` (so with its ``quantizer``):
    ``levels``, the number of distinct values of w_q where w != 0; ``allowed``, the most a
    ``nbits``-bit grid has (2^nbits, or 2^nbits - 1 symmetric); ``zeros_kept``, whether w_q is exactly
    0 wherever w is (pruned weights); ``sparsity``, the fraction of exact zeros of w_q."""
    report = {}
    with torch.no_grad():
        for name, layer in model.named_modules():
            if not isinstance(layer, _STEWeight) or layer.nbits is None:
                continue
            w, wq = layer.weight.detach(), layer.quantized_weight().detach()
            allowed = 2**layer.nbits - 1 if layer.symmetric else 2**layer.nbits
            report[name] = {"levels": int(wq[w != 0].unique().numel()), "allowed": allowed,
                            "zeros_kept": bool((wq[w == 0] == 0).all()),
                            "sparsity": float((wq == 0).sum()) / wq.numel()}
    return report


def is_fixed_point(model: nn.Module) -> bool:
    """True when ``model`` has STE layers and each one's w_q takes at most ``allowed`` values where
    w != 0 and keeps every zero of w (``fixed_point_report``): the weights the forward pass uses are
    really ``nbits``-bit fixed-point, with the pruned weights still 0."""
    report = fixed_point_report(model)
    return bool(report) and all(r["levels"] <= r["allowed"] and r["zeros_kept"] for r in report.values())


# ---- LSQ ---------------------------------------------------------------------------------------


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in forward (exactly); its gradient times ``scale`` in backward (LSQ appendix)."""
    y = x * scale
    return x.detach() + (y - y.detach())


def round_pass(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` in forward (exactly); identity gradient in backward (LSQ appendix)."""
    return x.round().detach() + (x - x.detach())


class LSQQuantizer(nn.Module):
    """LSQ fake quantizer with a learned step ``step`` (a scalar nn.Parameter).

    Forward: x_q = round(clamp(x/s, -Q_N, Q_P)) s. Weights (``activation=False``) are signed:
    Q_N = 2^(bits-1), Q_P = 2^(bits-1) - 1, bits in 2..16. Activations are unsigned: Q_N = 0,
    Q_P = 2^bits - 1, bits in 1..16. Backward (the paper's): x gets the gradient where
    -Q_N < x/s < Q_P and zero outside; s gets -x/s + round(x/s) inside, -Q_N or Q_P outside, scaled
    by g = 1/sqrt(N Q_P), N = number of weights (activations: features per example). All tensor ops.

    The step is initialised to 2 mean|x| / sqrt(Q_P) by ``init_step(x)``, or on the first forward
    call if not done (an activation quantizer needs data for it). Loading a state_dict that holds
    the step counts as initialised.

    ``quantizer`` (weights only): another forward pass ``quantizer(x, step, bits) -> x_q`` whose
    VALUE is used instead of labkit's (notebook 04's student ``lsq_quantize``); None: labkit's. The
    gradients stay LSQ's, those of labkit's forward at the same x and s: the output is
    ``quantizer(x, s, bits) + (lsq - lsq.detach())``, so a correct ``quantizer`` trains exactly as
    labkit's does, and a wrong one trains a model whose forward pass is wrong.
    """

    def __init__(self, bits: int, activation: bool = False, quantizer=None):
        super().__init__()
        low = 1 if activation else 2
        check_int("bits", bits, low, MAX_BIT, f"an int in {low}..{MAX_BIT}"
                  + ("" if activation else " (signed weights need Q_P = 2^(bits-1)-1 >= 1)"))
        if quantizer is not None and (activation or not callable(quantizer)):
            raise TypeError(f"quantizer={quantizer!r}: allowed are None (labkit's LSQ forward pass) or, "
                            "for a weight quantizer (activation=False), a function quantizer(x, step, bits)")
        self.bits, self.activation, self.quantizer = bits, activation, quantizer
        self.q_n = 0 if activation else 2 ** (bits - 1)
        self.q_p = 2**bits - 1 if activation else 2 ** (bits - 1) - 1
        self.step = nn.Parameter(torch.tensor(1.0))
        self.initialized = False

    @torch.no_grad()
    def init_step(self, x: torch.Tensor) -> None:
        """Set the step to 2 mean|x| / sqrt(Q_P) (at least the smallest normal float, so never 0)."""
        s = 2 * x.detach().abs().mean() / math.sqrt(self.q_p)
        self.step.copy_(s.clamp_min(torch.finfo(s.dtype).tiny))
        self.initialized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            raise ValueError(f"x of shape {tuple(x.shape)} is empty: allowed is a tensor with at least one "
                             "element (LSQ's gradient scale divides by the count)")
        if not self.initialized:
            self.init_step(x)
        n = x[0].numel() if self.activation else x.numel()
        s = grad_scale(self.step, 1 / math.sqrt(n * self.q_p))
        lsq = round_pass(F.hardtanh(x / s, -self.q_n, self.q_p)) * s
        if self.quantizer is None:
            return lsq
        value = self.quantizer(x.detach(), self.step.detach(), self.bits)
        return value.detach() + (lsq - lsq.detach())  # the quantizer's value, LSQ's gradients

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.initialized = self.initialized or prefix + "step" in state_dict

    def extra_repr(self) -> str:
        name = getattr(self.quantizer, "__name__", "?")
        quantizer = "" if self.quantizer is None else f", quantizer={name}"
        return f"bits={self.bits}, activation={self.activation}{quantizer}"


class _LSQWeight:
    """Mixin for nn.Conv2d / nn.Linear: an LSQ weight quantizer and an optional LSQ input quantizer
    (state_dict: the plain layer's keys + ``weight_quantizer.step``, and ``input_quantizer.step``
    when ``act_bits`` is given). ``quantizer``: the weight quantizer's forward pass (``LSQQuantizer``)."""

    def __init__(self, *args, bits: int, act_bits: int | None = None, quantizer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quantizer = LSQQuantizer(bits, quantizer=quantizer)
        self.input_quantizer = nn.Identity() if act_bits is None else LSQQuantizer(act_bits, activation=True)


class LSQConv2d(_LSQWeight, nn.Conv2d):
    """nn.Conv2d with LSQ-quantized weights (and inputs, if asked)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)


class LSQLinear(_LSQWeight, nn.Linear):
    """nn.Linear with LSQ-quantized weights (and inputs, if asked)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the layers a quantized model quantizes, as in ``labkit.models``: every Conv2d and
    Linear, except those the model lists in ``float_layers`` (ResNet-20's ``head_conv`` and
    ``final_fc``: the handout keeps them float)."""
    keep_float = set(getattr(model, "float_layers", ()))
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and name not in keep_float]


def _to_lsq(layer: nn.Module, bits: int, act_bits, quantizer=None) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = LSQConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                        layer.padding_mode, bits=bits, act_bits=act_bits, quantizer=quantizer)
    else:
        new = LSQLinear(layer.in_features, layer.out_features, layer.bias is not None,
                        bits=bits, act_bits=act_bits, quantizer=quantizer)
    new.to(layer.weight.device, layer.weight.dtype).train(layer.training)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.weight_quantizer.init_step(new.weight)
    return new


def lsq_quantize_model(model: nn.Module, bits: int, layers=None,
                       quantize_activations: bool = False, quantizer=None) -> nn.Module:
    """A copy of ``model`` whose Conv2d/Linear ``layers`` (names; default ``quantizable_layers``)
    are LSQ layers with ``bits``-bit weights, copied from ``model`` (load the float checkpoint into
    ``model`` first); weight steps are initialised from them. With ``quantize_activations``, the
    input of every converted layer is quantized to ``bits`` unsigned bits too, except the model's
    first Conv2d/Linear, whose input is the (signed) image. ``quantizer(x, step, bits)``: the weight
    quantizers' forward pass (``LSQQuantizer``; None: labkit's). ``model`` itself is left unchanged."""
    check_int("bits", bits, 2, MAX_BIT)
    if not isinstance(quantize_activations, bool):
        raise TypeError(f"quantize_activations={quantize_activations!r}: allowed are True or False")
    convertible = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if layers is None:
        layers = quantizable_layers(model)
    if isinstance(layers, str):
        raise TypeError(f"layers={layers!r}: allowed is a list of layer names, not one string")
    unknown = [name for name in layers if name not in convertible]
    if unknown:
        raise ValueError(f"layers={unknown}: not Conv2d/Linear layers of the model; "
                         f"allowed are {convertible}")
    qmodel = copy.deepcopy(model)
    for name in layers:
        parent_name, _, child = name.rpartition(".")
        parent = qmodel.get_submodule(parent_name)
        act_bits = bits if quantize_activations and name != convertible[0] else None
        setattr(parent, child, _to_lsq(getattr(parent, child), bits, act_bits, quantizer))
    return qmodel


def lsq_report(model: nn.Module) -> dict[str, dict]:
    """For every LSQ layer of ``model``, what its forward pass really uses, computed by its own weight
    quantizer (so with its ``quantizer``): ``levels``, the number of distinct values of w_q;
    ``allowed``, 2^bits; ``on_grid``, whether every w_q / s is an integer in [-Q_N, Q_P] (within 1e-3,
    for the float rounding of the division)."""
    report = {}
    with torch.no_grad():
        for name, layer in model.named_modules():
            if not isinstance(layer, _LSQWeight):
                continue
            quantizer = layer.weight_quantizer
            wq = quantizer(layer.weight.detach()).detach()
            codes = wq / quantizer.step.detach()
            on_grid = bool(torch.isfinite(codes).all() and ((codes - codes.round()).abs() <= 1e-3).all()
                           and codes.min() >= -quantizer.q_n - 1e-3 and codes.max() <= quantizer.q_p + 1e-3)
            report[name] = {"levels": int(wq.unique().numel()), "allowed": 2**quantizer.bits,
                            "on_grid": on_grid}
    return report


def is_lsq_quantized(model: nn.Module) -> bool:
    """True when ``model`` has LSQ layers and each one's w_q is on its ``bits``-bit grid: w_q = k s with
    integers -Q_N <= k <= Q_P, so at most 2^bits values (``lsq_report``)."""
    report = lsq_report(model)
    return bool(report) and all(r["on_grid"] and r["levels"] <= r["allowed"] for r in report.values())
