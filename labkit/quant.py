"""Fixed-point fake quantization: the handout's STE quantizer, quantized Conv2d / Linear layers, and LSQ.

Two ways to train a quantized network:

* ``STE`` (Lab 3): linear quantization with dynamic scaling. The scale comes from the weights
  themselves at every step (max - min, or max |w|); the gradient passes straight through.
  ``QConv2d`` / ``QLinear`` apply it to their weight.
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
    """Straight-through estimator: ``STE.apply(w, bit, symmetric=False)``.

    Forward: ``bit`` None -> ``w``; 0 -> zeros; otherwise linear quantization with dynamic scaling.
    Asymmetric: alpha = max(w) - min(w), beta = min(w), R = round((w - beta)/alpha (2^bit - 1)) /
    (2^bit - 1), w_q = alpha R + beta. Symmetric: R = round(w/max|w| (2^(bit-1) - 1)) / (2^(bit-1) - 1),
    w_q = R max|w|. Zeros of ``w`` (pruned weights) stay exactly zero. A constant tensor maps to
    itself, an all-zero one to zeros; a NaN/Inf in ``w`` makes all of ``w_q`` NaN (module docstring).
    Backward: the gradient reaches ``w`` unchanged.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
        check_bit(bit, symmetric)
        return _fake_quant(w, bit, symmetric)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None


def _check_weights(w, bit, symmetric) -> None:
    check_bit(bit, symmetric)
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"w={type(w).__name__} {getattr(w, 'dtype', '')}: allowed is a floating-point tensor")
    if not torch.isfinite(w).all():
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"w holds {bad} NaN/Inf values: quantization needs finite weights")


def quantize(w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
    """The STE forward as a plain function (no autograd); raises ValueError on NaN/Inf in ``w``."""
    _check_weights(w, bit, symmetric)
    with torch.no_grad():
        return _fake_quant(w, bit, symmetric)


def quantization_levels(w: torch.Tensor, bit: int, symmetric: bool = False) -> torch.Tensor:
    """The values ``quantize(w, bit, symmetric)`` can give a nonzero element of ``w``, ascending:
    2^bit levels from min(w) to max(w) (asymmetric), or 2^bit - 1 levels from -max|w| to max|w|
    through 0 (symmetric); ``bit`` in 1..16 (2..16 when symmetric). Pruned zeros also stay 0."""
    check_int("bit", bit, 1, MAX_BIT)
    _check_weights(w, bit, symmetric)
    x, alpha, beta, step = _scaling(w.detach(), bit, symmetric)
    k = torch.arange(-step if symmetric else 0, step + 1, dtype=x.dtype, device=x.device)
    return (k / step * alpha + beta).to(w.dtype)


def zeros_of(quantizer):
    """``quantizer(w, bit, symmetric)`` (an STE forward pass, e.g. a student's) as a function with the
    same arguments and name that returns where its output is exactly 0 (a bool tensor): the exact
    check that pruned zeros stay zero, next to a value check with a tolerance."""
    def zeros(w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
        return quantizer(w, bit, symmetric) == 0

    zeros.__name__ = getattr(quantizer, "__name__", "quantizer")
    return zeros


class _STEWeight:
    """Mixin for nn.Conv2d / nn.Linear: forward uses ``quantized_weight()`` (the STE of the weight);
    parameters and state_dict keys stay those of the plain layer."""

    def __init__(self, *args, nbits=None, symmetric: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check_bit(nbits, symmetric)
        self.nbits, self.symmetric = nbits, symmetric

    def quantized_weight(self) -> torch.Tensor:
        return STE.apply(self.weight, self.nbits, self.symmetric)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nbits={self.nbits}, symmetric={self.symmetric}"


class QConv2d(_STEWeight, nn.Conv2d):
    """nn.Conv2d whose weight goes through the STE quantizer in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QLinear(_STEWeight, nn.Linear):
    """nn.Linear whose weight goes through the STE quantizer in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


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
    """

    def __init__(self, bits: int, activation: bool = False):
        super().__init__()
        low = 1 if activation else 2
        check_int("bits", bits, low, MAX_BIT, f"an int in {low}..{MAX_BIT}"
                  + ("" if activation else " (signed weights need Q_P = 2^(bits-1)-1 >= 1)"))
        self.bits, self.activation = bits, activation
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
        if not self.initialized:
            self.init_step(x)
        n = x[0].numel() if self.activation else x.numel()
        s = grad_scale(self.step, 1 / math.sqrt(n * self.q_p))
        return round_pass(F.hardtanh(x / s, -self.q_n, self.q_p)) * s

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.initialized = self.initialized or prefix + "step" in state_dict

    def extra_repr(self) -> str:
        return f"bits={self.bits}, activation={self.activation}"


class _LSQWeight:
    """Mixin for nn.Conv2d / nn.Linear: an LSQ weight quantizer and an optional LSQ input quantizer
    (state_dict: the plain layer's keys + ``weight_quantizer.step``, and ``input_quantizer.step``
    when ``act_bits`` is given)."""

    def __init__(self, *args, bits: int, act_bits: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_quantizer = LSQQuantizer(bits)
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


def _to_lsq(layer: nn.Module, bits: int, act_bits) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = LSQConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                        layer.padding_mode, bits=bits, act_bits=act_bits)
    else:
        new = LSQLinear(layer.in_features, layer.out_features, layer.bias is not None,
                        bits=bits, act_bits=act_bits)
    new.to(layer.weight.device, layer.weight.dtype).train(layer.training)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.weight_quantizer.init_step(new.weight)
    return new


def lsq_quantize_model(model: nn.Module, bits: int, layers=None,
                       quantize_activations: bool = False) -> nn.Module:
    """A copy of ``model`` whose Conv2d/Linear ``layers`` (names; default ``quantizable_layers``)
    are LSQ layers with ``bits``-bit weights, copied from ``model`` (load the float checkpoint into
    ``model`` first); weight steps are initialised from them. With ``quantize_activations``, the
    input of every converted layer is quantized to ``bits`` unsigned bits too, except the model's
    first Conv2d/Linear, whose input is the (signed) image. ``model`` itself is left unchanged."""
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
        setattr(parent, child, _to_lsq(getattr(parent, child), bits, act_bits))
    return qmodel
