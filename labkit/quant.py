"""Fixed-point fake quantization: the handout's STE quantizer and quantized Conv2d / Linear layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_BIT = 16


def check_bit(bit, symmetric: bool = False) -> None:
    """Raise unless ``bit`` is None, 0 or an int in 1..16 (2..16 when symmetric)."""
    if bit is None:
        return
    if isinstance(bit, bool) or not isinstance(bit, int):
        raise TypeError(f"bit={bit!r}: allowed are None, 0 or an int in 1..{MAX_BIT}")
    if not 0 <= bit <= MAX_BIT:
        raise ValueError(f"bit={bit}: allowed are None, 0 or an int in 1..{MAX_BIT}")
    if symmetric and bit == 1:
        raise ValueError("bit=1 with symmetric=True: symmetric levels are k/(2^(bit-1)-1), which has no "
                         "level but 0 at 1 bit; use bit >= 2, or asymmetric 1-bit (levels min and max)")


def _fake_quant(w: torch.Tensor, bit, symmetric: bool) -> torch.Tensor:
    if bit is None:
        return w
    if bit == 0:
        return w * 0
    mask = w != 0  # pruned weights stay exactly zero
    tiny = torch.finfo(w.dtype).tiny
    if symmetric:
        scale = w.abs().max().clamp_min(tiny)
        step = 2 ** (bit - 1) - 1
        wq = torch.round(w / scale * step) / step * scale
    else:
        beta = w.min()
        alpha = (w.max() - beta).clamp_min(tiny)  # a constant tensor: ws = 0, wq = beta = w
        step = 2**bit - 1
        wq = torch.round((w - beta) / alpha * step) / step * alpha + beta
    return wq * mask


class STE(torch.autograd.Function):
    """Straight-through estimator: forward quantizes ``w`` to ``bit`` bits, backward passes the
    gradient to ``w`` unchanged (and unquantized)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
        check_bit(bit, symmetric)
        return _fake_quant(w, bit, symmetric)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None, None


def quantize(w: torch.Tensor, bit, symmetric: bool = False) -> torch.Tensor:
    """The STE forward as a plain function (no autograd)."""
    check_bit(bit, symmetric)
    if not torch.isfinite(w).all():
        raise ValueError("w holds NaN or Inf: quantization needs finite weights")
    with torch.no_grad():
        return _fake_quant(w, bit, symmetric)


class QConv2d(nn.Conv2d):
    """nn.Conv2d whose weight goes through the STE quantizer in forward (same state_dict keys)."""

    def __init__(self, *args, nbits=None, symmetric: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check_bit(nbits, symmetric)
        self.nbits, self.symmetric = nbits, symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, STE.apply(self.weight, self.nbits, self.symmetric), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nbits={self.nbits}, symmetric={self.symmetric}"


class QLinear(nn.Linear):
    """nn.Linear whose weight goes through the STE quantizer in forward (same state_dict keys)."""

    def __init__(self, *args, nbits=None, symmetric: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        check_bit(nbits, symmetric)
        self.nbits, self.symmetric = nbits, symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, STE.apply(self.weight, self.nbits, self.symmetric), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nbits={self.nbits}, symmetric={self.symmetric}"
