"""Compressed models on real CPU kernels, so that what compression saves can be timed.

- int8: torch's own quantized engine (FX graph mode post-training quantization on one of torch's CPU
  backends, oneDNN by default: int8 convolutions and matmuls, BatchNorm folded, ReLU fused).
  :mod:`labkit.integer` shows the arithmetic; this is the same model on kernels written for speed.
- sparse: a pruned fully connected layer as a CSR matrix (torch.sparse_csr) against the dense one, at
  each density, to find where the zeros start to pay.

Every time is measured in alternation with its baseline in one process (:func:`labkit.measure.
time_alternating`), so a change of machine load hits both; the machine they ran on is
:func:`labkit.device.describe`'s.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from labkit.checks import check_int
from labkit.measure import time_alternating


def torch_int8(model: nn.Module, calibration: torch.Tensor, engine: str | None = None) -> nn.Module:
    """An int8 copy of the float ``model`` (eval mode, CPU) on torch's quantized kernels: observers placed
    by FX graph mode quantization with ``engine``'s default mapping, calibrated on ``calibration``
    (normalized inputs), then converted. ``engine`` (one of ``torch.backends.quantized.supported_engines``;
    None: ``onednn`` where torch has it, which ran batches 1.5-2.4x faster than ``x86`` on an AVX2 CPU, see
    docs/RESULTS.md) becomes torch's quantized engine for this process: the model runs on it."""
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    if getattr(model, "nbits", None) is not None:
        raise ValueError(f"model is fake-quantized (nbits={model.nbits}): allowed is a float model")
    engines = torch.backends.quantized.supported_engines
    engine = engine or ("onednn" if "onednn" in engines else torch.backends.quantized.engine)
    if engine not in engines:
        raise ValueError(f"engine={engine!r}: allowed are {', '.join(e for e in engines if e != 'none')}")
    torch.backends.quantized.engine = engine
    float_model = copy.deepcopy(model).cpu().eval()
    example = calibration[:1].float().contiguous()
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        prepared = quantize_fx.prepare_fx(float_model, get_default_qconfig_mapping(engine), (example,))
        with torch.no_grad():
            prepared(calibration.float().contiguous())
        return quantize_fx.convert_fx(prepared)


def _seconds(times: list[float]) -> float:
    return float(np.median(times))


def csr_timings(weight: torch.Tensor, densities, batch_size: int = 1, repeats: int = 50) -> list[dict]:
    """For each density: ``weight`` (out, in) magnitude-pruned to that fraction of nonzeros, multiplied by a
    random (in, batch_size) input as a dense matrix and as CSR; median seconds of each and their ratio
    ``speedup`` (dense / CSR: above 1, the zeros pay). The outputs agree (checked)."""
    check_int("batch_size", batch_size, 1)
    check_int("repeats", repeats, 1)
    weight = weight.detach().float().cpu()
    x = torch.randn(weight.shape[1], batch_size, generator=torch.Generator().manual_seed(0))
    order = weight.abs().flatten().argsort(descending=True)
    rows = []
    for density in densities:
        if not 0 < density <= 1:
            raise ValueError(f"density={density!r}: allowed are numbers in (0, 1]")
        kept = torch.zeros(weight.numel(), dtype=torch.bool)
        kept[order[:max(1, round(density * weight.numel()))]] = True
        dense = weight * kept.view_as(weight)
        with warnings.catch_warnings():  # torch calls its sparse CSR support beta
            warnings.simplefilter("ignore")
            csr = dense.to_sparse_csr()
        if not torch.allclose(csr @ x, dense @ x, rtol=1e-4, atol=1e-5):
            raise RuntimeError("the CSR product differs from the dense one")
        with torch.inference_mode():
            times = time_alternating({"dense": lambda d=dense: d @ x, "csr": lambda c=csr: c @ x}, repeats,
                                     warmup=3)
        d, c = _seconds(times["dense"]), _seconds(times["csr"])
        rows.append({"density": float(density), "nonzeros": int(kept.sum()), "dense_s": d, "csr_s": c,
                     "speedup": d / c})
    return rows


def crossover(rows: list[dict]) -> float | None:
    """The density below which CSR beats dense, interpolated between the measured densities where the
    speedup crosses 1 (None when CSR never wins or always does over the measured range)."""
    points = sorted((r["density"], r["speedup"]) for r in rows)
    for (d0, s0), (d1, s1) in zip(points, points[1:], strict=False):
        if s0 >= 1 > s1:  # CSR wins at d0, loses at d1
            return d0 + (d1 - d0) * (s0 - 1) / (s0 - s1)
    return None
