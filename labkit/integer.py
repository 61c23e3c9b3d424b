"""Integer-only inference (Jacob et al., CVPR 2018), the way an int8 accelerator runs a quantized network.

Activations are uint8 with a scale and a zero point per tensor (x = scale * (q - zero_point)), weights
int8 per output channel (symmetric, -127..127), biases int32 at scale s_x * s_w. A layer accumulates
(q_x - z_x) * q_w + bias in int32 and *requantizes*: the real multiplier M = s_x s_w / s_out becomes a
fixed-point multiplier m0 (an int in [2^30, 2^31)) and a right shift, so no float is touched between
layers; the logits are dequantized at the end. BatchNorm is folded into the conv before quantizing.

:func:`convert` builds an :class:`IntegerNet` from a float LeNet-5 or ResNet-20 and a calibration batch.
It runs three ways on the same scales: ``float`` (the BN-folded float model, which the calibration
observes), ``simulate`` (every tensor rounded to its grid in floating point: the fake-quantized model)
and ``integer`` (integer tensors only). Notebook 07's students write :func:`fixed_point_multiplier`,
:func:`requantize` and :func:`integer_linear`; :func:`convert` takes theirs through :class:`Kernels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from labkit.blanks import student_writes
from labkit.checks import check_number
from labkit.models import LeNet5, ResNetCIFAR

Q_MIN, Q_MAX = 0, 255  # uint8 activations
W_MAX = 127  # int8 weights, symmetric: -127..127 (the grid keeps -128 out, so it is symmetric)
ADD_BITS = 16  # fractional bits the residual add keeps before its last rounding


@dataclass(frozen=True)
class QParams:
    """A tensor's grid: real value = scale * (q - zero_point), q in 0..255."""

    scale: float
    zero_point: int


def activation_qparams(lo: float, hi: float) -> QParams:
    """The uint8 grid over [min(lo, 0), max(hi, 0)]: 0.0 lies exactly on it (zero padding, ReLU)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / (Q_MAX - Q_MIN) or 1.0
    return QParams(scale, int(min(max(round(-lo / scale), Q_MIN), Q_MAX)))


def quantize_activation(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """``x`` on the grid ``qp`` as uint8, rounded half up and saturated to 0..255."""
    return (torch.floor(x / qp.scale + 0.5) + qp.zero_point).clamp(Q_MIN, Q_MAX).to(torch.uint8)


def dequantize(q: torch.Tensor, qp: QParams) -> torch.Tensor:
    """The real values (float32) of grid values ``q``."""
    return (q.to(torch.float32) - qp.zero_point) * qp.scale


# ---- the students' three functions ----------------------------------------------------------------

@student_writes("07_deployment")
def fixed_point_multiplier(M: float) -> tuple[int, int]:
    """A real multiplier 0 < M < 2^30 as ``(m0, shift)``: m0 an int in [2^30, 2^31) with
    M ~= m0 * 2^-(31 + shift) (relative error at most 2^-31); ``shift`` may be negative (M >= 1)."""
    check_number("M", M, low=0)
    if not 0 < M < 2**30:
        raise ValueError(f"M={M!r}: allowed is a number with 0 < M < 2^30")
    fraction, exponent = math.frexp(M)  # M = fraction * 2^exponent, 0.5 <= fraction < 1
    m0 = round(fraction * 2**31)
    if m0 == 2**31:  # the fraction rounded up to 1
        m0, exponent = m0 // 2, exponent + 1
    return m0, -exponent


@student_writes("07_deployment")
def requantize(acc: torch.Tensor, m0, shift, zero_point: int, lo: int = Q_MIN, hi: int = Q_MAX
               ) -> torch.Tensor:
    """The int32 accumulators ``acc`` on the output grid: zero_point + round(acc * m0 * 2^-(31 + shift)),
    rounded half up (toward +inf), saturated to lo..hi, as int32. Integer arithmetic only: with
    n = 31 + shift, ``(acc * m0 + 2^(n-1)) >> n`` in int64. ``m0`` and ``shift`` are ints, or int64
    tensors that broadcast against ``acc`` (one per output channel)."""
    if acc.is_floating_point() or acc.dtype == torch.bool:
        raise TypeError(f"acc is {acc.dtype}: allowed is an integer tensor (the int32 accumulators)")
    n = 31 + torch.as_tensor(shift, dtype=torch.int64)
    if (n < 1).any():
        raise ValueError("shift: allowed is shift >= -30 (a multiplier below 2^30)")
    half = torch.ones((), dtype=torch.int64) << (n - 1)
    out = (acc.to(torch.int64) * torch.as_tensor(m0, dtype=torch.int64) + half) >> n
    return (out + zero_point).clamp(lo, hi).to(torch.int32)


@student_writes("07_deployment")
def integer_linear(q_x: torch.Tensor, x_zero_point: int, q_w: torch.Tensor, bias_q: torch.Tensor
                   ) -> torch.Tensor:
    """A fully connected layer's int32 accumulators: (q_x - x_zero_point) @ q_w^T + bias_q, for uint8
    inputs ``q_x`` (batch, in), int8 weights ``q_w`` (out, in) and int32 biases ``bias_q`` (out,).
    Exact integer arithmetic (int64 inside; every sum of these fits int32)."""
    acc = (q_x.to(torch.int64) - x_zero_point) @ q_w.to(torch.int64).T + bias_q.to(torch.int64)
    return acc.to(torch.int32)


@dataclass(frozen=True)
class Kernels:
    """The students' functions an :class:`IntegerNet` runs on: labkit's by default, or a student's."""

    fixed_point_multiplier: object = fixed_point_multiplier
    requantize: object = requantize
    integer_linear: object = integer_linear


def integer_conv2d(q_x: torch.Tensor, x_zero_point: int, q_w: torch.Tensor, bias_q: torch.Tensor,
                   stride: int = 1, padding: int = 0) -> torch.Tensor:
    """A conv's int32 accumulators, as :func:`integer_linear` for every output position (the input padded
    with its zero point, i.e. real 0).

    torch has no integer convolution on the CPU, so this one runs on float kernels where they are exact:
    the input x = q_x - z (in -255..255) is split as 16 hi + lo (|hi| <= 16, 0 <= lo < 16), and each part's
    float32 convolution sums integers below 2^24, which float32 holds exactly in any order; the two
    results combine in int64. A layer too wide for that (more than 8,256 products per output) runs in
    float64, exact for every int32 sum."""
    x = q_x.to(torch.int32) - x_zero_point
    bias = bias_q.to(torch.int64).view(1, -1, 1, 1)
    if q_w[0].numel() * 16 * W_MAX < 2**24:
        w = q_w.to(torch.float32)

        def conv(part):
            return F.conv2d(part.to(torch.float32), w, None, stride, padding).round().to(torch.int64)

        acc = 16 * conv(torch.div(x, 16, rounding_mode="floor")) + conv(x.remainder(16)) + bias
    else:
        acc = F.conv2d(x.to(torch.float64), q_w.to(torch.float64), None, stride, padding).round().to(
            torch.int64) + bias
    return acc.to(torch.int32)


def _fake_quantize(x: torch.Tensor, qp: QParams, lo: int = Q_MIN) -> torch.Tensor:
    """``x`` rounded to the grid as :func:`requantize` rounds (half up), saturated to lo..255, as reals."""
    q = (torch.floor(x / qp.scale + 0.5) + qp.zero_point).clamp(lo, Q_MAX)
    return (q - qp.zero_point) * qp.scale


# ---- the layers -------------------------------------------------------------------------------------

class _Observed:
    """A step whose output grid comes from the range of its float outputs on the calibration batch."""

    def __init__(self):
        self.lo, self.hi = math.inf, -math.inf

    def _observe(self, y: torch.Tensor) -> torch.Tensor:
        self.lo, self.hi = min(self.lo, float(y.min())), max(self.hi, float(y.max()))
        return y


class Affine(_Observed):
    """A conv or fully connected layer (BatchNorm folded in), optionally followed by ReLU. Once frozen on its
    input grid ``qin``: int8 weights ``q_w`` (per-channel scales ``w_scale``), int32 ``bias_q``, the output
    grid ``qout`` and one fixed-point multiplier (``m0``, ``shift``) per output channel."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1, padding: int = 0,
                 relu: bool = False):
        super().__init__()
        self.weight, self.bias = weight.detach().float(), bias.detach().float()
        self.stride, self.padding, self.relu = stride, padding, relu

    def _apply(self, x, weight, bias):
        if weight.dim() == 4:
            return F.conv2d(x, weight, bias, self.stride, self.padding)
        return F.linear(x, weight, bias)

    def float(self, x):
        y = self._apply(x, self.weight, self.bias)
        return self._observe(F.relu(y) if self.relu else y)

    def freeze(self, qin: QParams, kernels: Kernels) -> QParams:
        self.qin, self.qout = qin, activation_qparams(self.lo, self.hi)
        top = self.weight.abs().flatten(1).amax(1)
        self.w_scale = torch.where(top > 0, top / W_MAX, torch.ones_like(top)).double()
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        self.q_w = torch.round(self.weight / self.w_scale.view(shape)).clamp(-W_MAX, W_MAX).to(torch.int8)
        self.bias_q = torch.round(self.bias.double() / (qin.scale * self.w_scale)).to(torch.int32)
        pairs = [kernels.fixed_point_multiplier(float(m)) for m in qin.scale * self.w_scale / self.qout.scale]
        self.m0, self.shift = (torch.tensor(v, dtype=torch.int64) for v in zip(*pairs, strict=True))
        return self.qout

    def simulate(self, x):
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        weight = (self.q_w.double() * self.w_scale.view(shape)).float()
        bias = (self.bias_q.double() * self.qin.scale * self.w_scale).float()
        lo = self.qout.zero_point if self.relu else Q_MIN
        return _fake_quantize(self._apply(x, weight, bias), self.qout, lo)

    def integer(self, q, kernels: Kernels):
        if self.weight.dim() == 4:
            acc = integer_conv2d(q, self.qin.zero_point, self.q_w, self.bias_q, self.stride, self.padding)
            m0, shift = self.m0.view(-1, 1, 1), self.shift.view(-1, 1, 1)
        else:
            acc = kernels.integer_linear(q, self.qin.zero_point, self.q_w, self.bias_q)
            m0, shift = self.m0, self.shift
        lo = self.qout.zero_point if self.relu else Q_MIN
        return kernels.requantize(acc, m0, shift, self.qout.zero_point, lo, Q_MAX).to(torch.uint8)


class _Input(_Observed):
    """The network's input: real images on their own grid (the only float -> integer step)."""

    def float(self, x):
        return self._observe(x)

    def freeze(self, qin, kernels):
        self.qout = activation_qparams(self.lo, self.hi)
        return self.qout

    def simulate(self, x):
        return _fake_quantize(x, self.qout)

    def integer(self, x, kernels):
        return quantize_activation(x, self.qout)


class _Shape:
    """A step that moves values without changing them (max pooling, flattening): same grid out."""

    def __init__(self, fn):
        self.fn = fn

    def float(self, x):
        return self.fn(x)

    def freeze(self, qin, kernels):
        return qin

    def simulate(self, x):
        return self.fn(x)

    def integer(self, q, kernels):
        return self.fn(q)


class _GlobalAvgPool(_Observed):
    """Mean over the spatial positions: an integer sum, then a requantization by s_in / (n s_out)."""

    def float(self, x):
        return self._observe(x.mean((2, 3)))

    def freeze(self, qin, kernels):
        self.qin, self.qout = qin, activation_qparams(self.lo, self.hi)
        return self.qout

    def simulate(self, x):
        return _fake_quantize(x.mean((2, 3)), self.qout)

    def integer(self, q, kernels):
        n = q.shape[2] * q.shape[3]
        acc = q.to(torch.int32).sum((2, 3), dtype=torch.int32) - n * self.qin.zero_point
        m0, shift = kernels.fixed_point_multiplier(self.qin.scale / (n * self.qout.scale))
        return kernels.requantize(acc, m0, shift, self.qout.zero_point).to(torch.uint8)


class _Residual(_Observed):
    """A ResNet block: relu(conv2(conv1(x)) + shortcut(x)). The add brings both branches to the output
    grid with ADD_BITS fractional bits (two requantizations), sums them and rounds once more."""

    def __init__(self, conv1: Affine, conv2: Affine, shortcut: Affine | None):
        super().__init__()
        self.conv1, self.conv2, self.shortcut = conv1, conv2, shortcut

    def float(self, x):
        a = self.conv2.float(self.conv1.float(x))
        return self._observe(F.relu(a + (x if self.shortcut is None else self.shortcut.float(x))))

    def freeze(self, qin, kernels):
        qa = self.conv2.freeze(self.conv1.freeze(qin, kernels), kernels)
        qb = qin if self.shortcut is None else self.shortcut.freeze(qin, kernels)
        self.qa, self.qb, self.qout = qa, qb, activation_qparams(self.lo, self.hi)
        self.mult = [kernels.fixed_point_multiplier(q.scale / self.qout.scale * 2**ADD_BITS)
                     for q in (qa, qb)]
        return self.qout

    def simulate(self, x):
        a = self.conv2.simulate(self.conv1.simulate(x))
        b = x if self.shortcut is None else self.shortcut.simulate(x)
        return _fake_quantize(a + b, self.qout, self.qout.zero_point)

    def integer(self, q, kernels):
        a = self.conv2.integer(self.conv1.integer(q, kernels), kernels)
        b = q if self.shortcut is None else self.shortcut.integer(q, kernels)
        wide = (-(2**31), 2**31 - 1)
        terms = [kernels.requantize(t.to(torch.int32) - p.zero_point, *m, 0, *wide)
                 for t, p, m in ((a, self.qa, self.mult[0]), (b, self.qb, self.mult[1]))]
        total = terms[0].to(torch.int64) + terms[1]
        out = ((total + 2 ** (ADD_BITS - 1)) >> ADD_BITS) + self.qout.zero_point
        return out.clamp(self.qout.zero_point, Q_MAX).to(torch.uint8)


# ---- the network ------------------------------------------------------------------------------------

class IntegerNet:
    """A float network as a chain of integer steps; see the module docstring for its three forward passes.
    Built by :func:`convert` from ``(name, step)`` pairs; ``layers`` holds the named ones (the model's
    layer names: ``layers["fc1"]`` is an :class:`Affine`), ``output`` is the logits' grid."""

    def __init__(self, steps: list, calibration: torch.Tensor, kernels: Kernels):
        self.kernels = kernels
        self.steps = [step for _, step in steps]
        self.layers = {name: step for name, step in steps if name}  # the model's layer names
        with torch.no_grad():
            self.float(calibration)
        qp = None
        for step in self.steps:
            qp = step.freeze(qp, kernels)
        self.output = qp

    def float(self, x: torch.Tensor) -> torch.Tensor:
        """The BN-folded float network's logits (each call widens the observed ranges until frozen)."""
        for step in self.steps:
            x = step.float(x)
        return x

    @torch.no_grad()
    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quantized network's logits: every tensor on its grid, computed in floating point."""
        for step in self.steps:
            x = step.simulate(x)
        return x

    @torch.no_grad()
    def integer(self, x: torch.Tensor) -> torch.Tensor:
        """The logits computed with integer tensors only between the input and the dequantized output."""
        for step in self.steps:
            x = step.integer(x, self.kernels)
        return dequantize(x, self.output)


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the conv that equals bn(conv(x)) in eval mode: each output channel scaled by
    gamma / sqrt(var + eps), the bias shifted to beta + (b - mean) gamma / sqrt(var + eps)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias + (bias - bn.running_mean) * scale


def _conv_bn(conv, bn, relu):
    weight, bias = fold_bn(conv, bn)
    return Affine(weight, bias, conv.stride[0], conv.padding[0], relu)


def _linear(layer: nn.Linear, relu: bool) -> Affine:
    return Affine(layer.weight, layer.bias, relu=relu)


def _lenet5(m: LeNet5) -> list:
    pool = _Shape(lambda x: F.max_pool2d(x, 2))
    return [("", _Input()), ("conv1", Affine(m.conv1.weight, m.conv1.bias, 1, 2, True)), ("", pool),
            ("conv2", Affine(m.conv2.weight, m.conv2.bias, 1, 0, True)), ("", pool),
            ("", _Shape(lambda x: x.flatten(1))), ("fc1", _linear(m.fc1, True)),
            ("fc2", _linear(m.fc2, True)), ("fc3", _linear(m.fc3, False))]


def _resnet(m: ResNetCIFAR) -> list:
    blocks = [(f"body_op.{i}", _Residual(_conv_bn(b.conv1, b.bn1, True), _conv_bn(b.conv2, b.bn2, False),
                                         None if isinstance(b.id_mapping, nn.Identity)
                                         else _conv_bn(b.id_mapping[0], b.id_mapping[1], False)))
              for i, b in enumerate(m.body_op)]
    return [("", _Input()), ("head_conv", _conv_bn(m.head_conv, m.head_bn, True)), *blocks,
            ("", _GlobalAvgPool()), ("final_fc", _linear(m.final_fc, False))]


def convert(model: nn.Module, calibration: torch.Tensor, kernels: Kernels = Kernels()) -> IntegerNet:
    """The integer version of a float (not fake-quantized) LeNet-5 or ResNet-20 in eval mode, with the
    activation grids calibrated on ``calibration`` (a batch of normalized inputs, e.g. 512 training
    images), running on ``kernels`` (its multipliers are computed with them too). Pruned zeros stay
    exactly zero in int8."""
    if getattr(model, "nbits", None) is not None:
        raise ValueError(f"model is fake-quantized (nbits={model.nbits}): allowed is a float model, which "
                         "convert quantizes itself")
    build = {LeNet5: _lenet5, ResNetCIFAR: _resnet}.get(type(model))
    if build is None:
        raise TypeError(f"model={type(model).__name__}: allowed are LeNet5 and ResNetCIFAR")
    if type(model) is LeNet5 and calibration.shape[-1] != 28:
        raise ValueError(f"calibration images are {tuple(calibration.shape[-2:])}: LeNet-5 runs integer on "
                         "28x28 inputs")
    with torch.no_grad():
        return IntegerNet(build(model.eval()), calibration.float(), kernels)
